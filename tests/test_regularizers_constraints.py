"""Weight penalties (values, gradients vs central differences) and constraints (norms after applying)."""

import numpy as np
import pytest

from layerforge.engine.constraints import apply_constraint, constrained
from layerforge.engine.regularizers import has_penalty, penalty, penalty_grad

# --------------------------------------------------------------------------- regularizers


def test_penalty_values():
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert penalty({"l1": 0.1, "l2": 0.0}, w) == pytest.approx(0.1 * 3.5)
    assert penalty({"l1": 0.0, "l2": 0.2}, w) == pytest.approx(0.2 * 5.25)
    assert penalty({"l1": 0.1, "l2": 0.2}, w) == pytest.approx(0.35 + 1.05)
    assert penalty(None, w) == 0.0 and not has_penalty(None) and has_penalty({"l2": 1e-4})
    assert penalty("l2", w) == pytest.approx(0.01 * 5.25)  # bare names take the Keras default 0.01
    assert penalty({"l2": 0.1}, w.astype(np.float32)) == pytest.approx(0.525, rel=1e-6)


@pytest.mark.parametrize("spec", [{"l1": 0.3, "l2": 0.0}, {"l1": 0.0, "l2": 0.7}, {"l1": 0.2, "l2": 0.05}])
def test_penalty_grad_central_differences(spec):
    rng = np.random.default_rng(0)
    w = rng.choice([-1, 1], (3, 4)) * rng.uniform(0.1, 2.0, (3, 4))  # no zeros: |w| kink
    g = penalty_grad(spec, w)
    h = 1e-6
    num = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        wp, wm = w.copy(), w.copy()
        wp[idx] += h
        wm[idx] -= h
        num[idx] = (penalty(spec, wp) - penalty(spec, wm)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def test_penalty_grad_dtype_and_zero_subgradient():
    w = np.array([0.0, 2.0, -1.0], dtype=np.float32)
    g = penalty_grad({"l1": 0.5, "l2": 0.25}, w)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, [0.0, 0.5 + 1.0, -0.5 - 0.5])
    assert not penalty_grad(None, w).any()


# --------------------------------------------------------------------------- constraints


def _norms(w, axis):
    return np.sqrt((w ** 2).sum(axis=axis))


def test_max_norm_dense_kernel():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 4))
    w[:, 0] *= 0.01  # a column below the limit stays unchanged
    before = w.copy()
    apply_constraint({"type": "max_norm", "max_value": 1.5}, w)
    n = _norms(w, 0)
    assert np.all(n <= 1.5 + 1e-6)
    np.testing.assert_allclose(w[:, 0], before[:, 0] * _norms(before, 0)[0] / (1e-7 + _norms(before, 0)[0]))
    big = _norms(before, 0) > 1.5
    np.testing.assert_allclose(n[big], 1.5, rtol=1e-6)
    # Keras default max_value=2, axis=0; a bare name works
    w2 = rng.normal(size=(6, 3)) * 3
    apply_constraint("max_norm", w2)
    assert np.all(_norms(w2, 0) <= 2.0 + 1e-6)


def test_axis_list_for_conv_kernel_and_axis_1():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 3, 2, 4)) * 2
    apply_constraint({"type": "max_norm", "max_value": 1.0, "axis": [0, 1, 2]}, w)
    np.testing.assert_allclose(_norms(w, (0, 1, 2)), 1.0, rtol=1e-6)
    v = rng.normal(size=(4, 5))
    apply_constraint({"type": "unit_norm", "axis": 1}, v)
    np.testing.assert_allclose(_norms(v, 1), 1.0, rtol=1e-6)
    u = rng.normal(size=(4, 5))
    apply_constraint({"type": "unit_norm", "axis": -1}, u)
    np.testing.assert_allclose(_norms(u, 1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        apply_constraint({"type": "unit_norm", "axis": 2}, u)


def test_unit_norm_and_non_neg():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    apply_constraint("unit_norm", w)
    assert w.dtype == np.float32
    np.testing.assert_allclose(_norms(w, 0), 1.0, rtol=1e-5)
    x = np.array([[-1.0, 0.0, 2.0], [3.0, -0.5, -0.0]])
    apply_constraint("non_neg", x)
    assert x.tolist() == [[0.0, 0.0, 2.0], [3.0, 0.0, 0.0]]
    apply_constraint(None, x)  # no constraint: untouched
    assert x.tolist() == [[0.0, 0.0, 2.0], [3.0, 0.0, 0.0]]


def test_min_max_norm():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(5, 6))
    w[:, :2] *= 0.05  # small columns get scaled up to min_value
    w[:, 2:4] *= 10.0  # large ones down to max_value
    before = w.copy()
    apply_constraint({"type": "min_max_norm", "min_value": 0.5, "max_value": 2.0}, w)
    n = _norms(w, 0)
    assert np.all(n >= 0.5 - 1e-6) and np.all(n <= 2.0 + 1e-6)
    n0 = _norms(before, 0)
    w_half = constrained({"type": "min_max_norm", "min_value": 0.5, "max_value": 2.0, "rate": 0.5}, before)
    np.testing.assert_allclose(_norms(w_half, 0), (0.5 * np.clip(n0, 0.5, 2.0) + 0.5 * n0) * n0 / (1e-7 + n0),
                               rtol=1e-9)
    np.testing.assert_array_equal(before, constrained(None, before))


def test_keras1_names_and_args():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(4, 3)) * 3
    a, b = w.copy(), w.copy()
    apply_constraint({"type": "maxnorm", "m": 1.0}, a)
    apply_constraint({"type": "max_norm", "max_value": 1.0}, b)
    np.testing.assert_array_equal(a, b)
