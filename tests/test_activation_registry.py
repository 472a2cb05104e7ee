"""The activation registry (layerforge/activations.py) is the one vocabulary: the YAML type, the schema and the fused
paths derive from it, and each entry's numpy derivative and fused kernels agree with its numpy forward."""

from __future__ import annotations

import numpy as np
import pytest

from layerforge import activations as A
from layerforge.layers import fields

NAMES = sorted(A.ACTIVATIONS)


def test_the_yaml_type_and_schema_are_the_registry():
    assert fields.ACTIVATIONS == set(A.ACTIVATIONS) and fields.ACTIVATION_ALIASES == A.ALIASES
    from pydantic import TypeAdapter

    adapter = TypeAdapter(fields.ActivationName)
    assert [adapter.validate_python(n.upper()) for n in NAMES] == NAMES
    assert {alias: adapter.validate_python(alias) for alias in A.ALIASES} == A.ALIASES
    assert adapter.json_schema()["anyOf"][0]["enum"] == NAMES


def test_recurrent_layers_and_kernels_use_the_registry_codes():
    from layerforge.kernels import recurrent as K
    from layerforge.layers import recurrent as R

    assert R.ACTIVATION_CODES == A.RECURRENT_CODES
    assert (K.LINEAR, K.TANH, K.SIGMOID, K.RELU, K.LEAKY_RELU) == tuple(
        A.RECURRENT_CODES[n] for n in ("linear", "tanh", "sigmoid", "relu", "leaky_relu"))
    assert len(set(A.RECURRENT_CODES.values())) == len(A.RECURRENT_CODES)
    from layerforge.kernels import conv_lstm
    from layerforge.layers import conv_recurrent

    assert conv_lstm.ACTIVATION_CODES == {
        "linear": 0, "tanh": 1, "sigmoid": 2, "hard_sigmoid": 3, "hard_sigmoid_keras1": 4, "relu": 5}  # _act's
    assert set(conv_recurrent._SUPPORTED) == set(conv_lstm.ACTIVATION_CODES)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_central_differences(name):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, 5)) * 2
    z[np.abs(z) < 0.05] += 0.2  # away from kinks (relu, leaky_relu) and the hard_sigmoid corners
    z[np.abs(np.abs(z) - 3) < 0.05] += 0.2
    z[np.abs(np.abs(z) - 2.5) < 0.05] += 0.2
    dy = rng.standard_normal(z.shape)
    y = A.activate(name, z)
    entry = A.ACTIVATIONS[name]
    dz = A.activate_backward(name, None if entry.needs_only_output else z, y, dy)
    eps = 1e-6
    numeric = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += eps
        zm[i] -= eps
        numeric[i] = ((A.activate(name, zp) - A.activate(name, zm)) * dy).sum() / (2 * eps)
    np.testing.assert_allclose(dz, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(A.DENSE_FUSED))
def test_fused_dense_epilogue_matches_the_numpy_forward_and_derivative(name):
    from layerforge.kernels import elementwise as E

    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 6))
    b = rng.standard_normal(6)
    fused = z.copy()
    E.bias_act(fused, b, True, A.DENSE_FUSED[name], 1.0)
    y = A.activate(name, z + b)
    np.testing.assert_allclose(fused, y, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(z.shape)
    dz, db = np.empty_like(y), np.empty(6)
    E.act_backward_bias(dy, y, A.DENSE_FUSED[name], dz, db, True, 1.0)
    want = A.activate_backward(name, None, y, dy)
    np.testing.assert_allclose(dz, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, want.sum(axis=0), rtol=1e-12, atol=1e-12)


def test_unknown_activation_is_a_value_error():
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        A.activate("nope", np.zeros(2))
