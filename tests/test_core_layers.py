"""Core layers (Activation ... MaxoutDense) against plain numpy references, Keras 1 names, quirks and errors."""

import numpy as np
import pytest

from layerforge.errors import ConfigError, ShapeError
from layerforge.testing import build_layer, check_layer_gradients


def _cfg(config, shape=(4,)):
    return build_layer(config, shape).layer.config


# ---------------------------------------------------------------------------------------------- Keras 1 names

@pytest.mark.parametrize("old,new,shape", [
    ({"type": "Dropout", "p": 0.3}, {"type": "Dropout", "rate": 0.3}, (4,)),
    ({"type": "MaxoutDense", "output_dim": 5, "init": "he_normal", "W_regularizer": "l2", "bias": False},
     {"type": "MaxoutDense", "units": 5, "kernel_initializer": "he_normal", "kernel_regularizer": {"l2": 0.01},
      "use_bias": False}, (4,)),
    ({"type": "Highway", "init": "glorot_normal", "W_constraint": "maxnorm", "b_regularizer": "l1",
      "transform_bias": -2},
     {"type": "Highway", "kernel_initializer": "glorot_normal", "kernel_constraint": "max_norm",
      "bias_regularizer": "l1"}, (4,)),
    ({"type": "Flatten", "dim_ordering": "th"}, {"type": "Flatten", "data_format": "channels_first"}, (2, 3)),
])
def test_keras1_names_equal_modern(old, new, shape):
    assert _cfg(old, shape) == _cfg(new, shape)


def test_input_dim_becomes_input_shape():
    cfg = _cfg({"type": "Highway", "input_dim": 7}, (7,))
    assert cfg.input_shape == [7]
    assert _cfg({"type": "MaxoutDense", "output_dim": 2, "input_dim": 3}, (3,)).input_shape == [3]


def test_config_errors():
    with pytest.raises(ConfigError, match="less than 1"):
        _cfg({"type": "Dropout", "rate": 1.0})
    with pytest.raises(ConfigError, match="at most one -1"):
        _cfg({"type": "Reshape", "target_shape": [-1, -1]})
    with pytest.raises(ConfigError, match="permutation of 1..2"):
        _cfg({"type": "Permute", "dims": [0, 1]}, (2, 2))
    with pytest.raises(ConfigError, match="unknown activation"):
        _cfg({"type": "Activation", "activation": "rleu"})


# ---------------------------------------------------------------------------------------------- Activation

def test_activation_forward_and_mask():
    b = build_layer({"type": "Activation", "activation": "softmax"}, (3, 4))
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    y, _ = b.layer.forward({}, x)
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True))
    mask = np.array([[True, False, True], [True, True, False]])
    assert b.layer.compute_mask(x, mask) is mask


# ---------------------------------------------------------------------------------------------- Dropout

def test_dropout_statistics_and_inference():
    b = build_layer({"type": "Dropout", "rate": 0.3}, (400,))
    x = np.ones((100, 400), dtype=np.float32)
    y, _ = b.layer.forward({}, x, training=True, rng=np.random.default_rng(1))
    assert y.dtype == np.float32
    zero_frac = float((y == 0).mean())
    assert abs(zero_frac - 0.3) < 0.02
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7], rtol=1e-6)
    assert abs(float(y.mean()) - 1.0) < 0.03  # inverted dropout keeps the mean
    y_inf, _ = b.layer.forward({}, x, training=False, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(y_inf, x)
    b0 = build_layer({"type": "Dropout", "rate": 0.0}, (400,))
    y0, _ = b0.layer.forward({}, x, training=True, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(y0, x)


def test_dropout_same_rng_same_mask_and_backward():
    b = build_layer({"type": "Dropout", "rate": 0.5}, (6,))
    x = np.random.default_rng(0).standard_normal((3, 6))
    y1, c1 = b.layer.forward({}, x, training=True, rng=np.random.default_rng(7))
    y2, _ = b.layer.forward({}, x, training=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(y1, y2)
    dx, grads = b.layer.backward({}, np.ones_like(x), c1)
    assert grads == {}
    np.testing.assert_array_equal(dx != 0, y1 != 0)


def test_dropout_kernel_against_numpy_reference():
    from layerforge.kernels.elementwise import dropout

    def splitmix64(z):  # numpy's uint64 arithmetic wraps as the kernel's does
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    x = np.random.default_rng(0).standard_normal((7, 5, 3))
    key, rate = 2**63 + 12345, 0.3
    y, scale = dropout(x, rate, key)
    with np.errstate(over="ignore"):
        i = np.arange(x.size, dtype=np.uint64)
        bits = splitmix64(np.uint64(key) + i * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    expected = np.where(bits >= np.uint64(np.ceil(rate * 2**32)), 1 / (1 - rate), 0.0).reshape(x.shape)
    np.testing.assert_array_equal(scale, expected)
    np.testing.assert_array_equal(y, x * expected)
    _, other = dropout(x, rate, key + 1)
    assert not np.array_equal(other, scale)
    _, many = dropout(np.ones(200_000, dtype=np.float32), rate, 99)
    assert many.dtype == np.float32 and abs(float((many == 0).mean()) - rate) < 0.005


def test_dropout_noise_shape_broadcast():
    b = build_layer({"type": "Dropout", "rate": 0.5, "noise_shape": [None, 1, None]}, (5, 8))
    x = np.ones((4, 5, 8))
    y, _ = b.layer.forward({}, x, training=True, rng=np.random.default_rng(3))
    # one draw per (sample, feature), shared by every step
    assert np.all(y == y[:, :1, :])
    assert 0 < (y == 0).mean() < 1
    b2 = build_layer({"type": "Dropout", "rate": 0.5, "noise_shape": [1, None, 1]}, (5, 8))
    y2, _ = b2.layer.forward({}, x, training=True, rng=np.random.default_rng(3))
    assert np.all(y2 == y2[:1, :, :1])


def test_dropout_noise_shape_errors():
    with pytest.raises(ShapeError, match=r"noise_shape \[None, 1\] has 2 entries but the input has 3 axes"):
        build_layer({"type": "Dropout", "rate": 0.5, "noise_shape": [None, 1]}, (5, 8))
    with pytest.raises(ShapeError, match="neither 1 nor the input's size 8"):
        build_layer({"type": "Dropout", "rate": 0.5, "noise_shape": [None, 1, 3]}, (5, 8))


# ---------------------------------------------------------------------------------------------- Flatten

def test_flatten_orders():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))  # channels_first: C=3, H=4, W=5
    last = build_layer({"type": "Flatten"}, (3, 4, 5)).layer
    y, _ = last.forward({}, x)
    np.testing.assert_array_equal(y, x.reshape(2, 60))
    first = build_layer({"type": "Flatten", "data_format": "channels_first"}, (3, 4, 5))
    assert first.output_shape == (60,)
    y, cache = first.layer.forward({}, x)
    ref = np.array([[x[b, c, h, w] for h in range(4) for w in range(5) for c in range(3)] for b in range(2)])
    np.testing.assert_array_equal(y, ref)
    dx, _ = first.layer.backward({}, y, cache)
    np.testing.assert_array_equal(dx, x)
    check_layer_gradients(first, x)
    assert build_layer({"type": "Flatten"}, (None, 4)).output_shape == (None,)
    assert build_layer({"type": "Flatten"}, ()).output_shape == (1,)


# ---------------------------------------------------------------------------------------------- Reshape

def test_reshape_infers_minus_one():
    b = build_layer({"type": "Reshape", "target_shape": [2, -1, 3]}, (4, 6))
    assert b.output_shape == (2, 4, 3)
    x = np.arange(48.0).reshape(2, 4, 6)
    y, cache = b.layer.forward({}, x)
    np.testing.assert_array_equal(y, x.reshape(2, 2, 4, 3))
    dx, _ = b.layer.backward({}, y, cache)
    assert dx.shape == x.shape
    assert build_layer({"type": "Reshape", "target_shape": [-1, 2]}, (None, 4)).output_shape == (None, 2)


def test_reshape_errors_name_shapes():
    with pytest.raises(ShapeError, match=r"input shape \(None, 3, 4\).*target_shape \(5, 2\) has 10 elements "
                                         r"but the input has 12"):
        build_layer({"type": "Reshape", "target_shape": [5, 2]}, (3, 4))
    with pytest.raises(ShapeError, match="12 is not a multiple of 5"):
        build_layer({"type": "Reshape", "target_shape": [-1, 5]}, (12,))


# ---------------------------------------------------------------------------------------------- Permute, RepeatVector

def test_permute_forward_backward():
    b = build_layer({"type": "Permute", "dims": [3, 1, 2]}, (2, 3, 4))
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 4))
    y, cache = b.layer.forward({}, x)
    assert y.shape == (2, 4, 2, 3)
    for i in range(2):
        for j in range(3):
            for k in range(4):
                assert y[0, k, i, j] == x[0, i, j, k]
    dx, _ = b.layer.backward({}, y, cache)
    np.testing.assert_array_equal(dx, x)
    with pytest.raises(ShapeError, match="permutes 3 axes but the input has 2"):
        build_layer({"type": "Permute", "dims": [3, 1, 2]}, (2, 3))


def test_repeat_vector():
    b = build_layer({"type": "RepeatVector", "n": 3}, (4,))
    x = np.random.default_rng(0).standard_normal((2, 4))
    y, cache = b.layer.forward({}, x)
    for t in range(3):
        np.testing.assert_array_equal(y[:, t], x)
    dx, _ = b.layer.backward({}, np.ones_like(y), cache)
    np.testing.assert_array_equal(dx, np.full_like(x, 3.0))
    with pytest.raises(ShapeError, match=r"(?s)\(None, 4, 2\).*Flatten"):
        build_layer({"type": "RepeatVector", "n": 3}, (4, 2))


# ---------------------------------------------------------------------------------------------- ActivityRegularization

def test_activity_regularization_penalty():
    layer = build_layer({"type": "ActivityRegularization", "l1": 0.1, "l2": 0.2}, (3,)).layer
    assert layer.activity_penalty() == {"l1": 0.1, "l2": 0.2}
    assert build_layer({"type": "ActivityRegularization"}, (3,)).layer.activity_penalty() is None
    x = np.ones((2, 3))
    y, _ = layer.forward({}, x)
    np.testing.assert_array_equal(y, x)


# ---------------------------------------------------------------------------------------------- Masking

@pytest.mark.parametrize("mask_value", [0.0, -1.0, 2.5])
def test_masking(mask_value):
    b = build_layer({"type": "Masking", "mask_value": mask_value}, (5, 3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3))
    x[0, 1, :] = mask_value  # fully masked step
    x[1, 3, :] = mask_value
    x[1, 0, 0] = mask_value  # only one feature equal: not masked
    x[0, 4, 1:] = mask_value
    mask = b.layer.compute_mask(x, None)
    ref = np.array([[any(x[i, t, f] != mask_value for f in range(3)) for t in range(5)] for i in range(2)])
    np.testing.assert_array_equal(mask, ref)
    assert mask.tolist() == [[True, False, True, True, True], [True, True, True, False, True]]
    y, cache = b.layer.forward({}, x)
    np.testing.assert_array_equal(y, x * ref[..., None])
    assert np.all(y[0, 1] == 0) and np.all(y[1, 3] == 0)
    # an incoming mask is replaced by the new one
    np.testing.assert_array_equal(b.layer.compute_mask(x, np.zeros((2, 5), bool)), ref)
    dx, _ = b.layer.backward({}, np.ones_like(x), cache)
    np.testing.assert_array_equal(dx, np.broadcast_to(ref[..., None], x.shape))


def test_masking_needs_steps():
    with pytest.raises(ShapeError, match=r"\(None, 6\).*3D input"):
        build_layer({"type": "Masking"}, (6,))


# ---------------------------------------------------------------------------------------------- Highway

def test_highway_weights_and_formula():
    b = build_layer({"type": "Highway", "activation": "relu"}, (5,))
    specs = b.layer.param_specs((5,))
    assert [s.name for s in specs] == ["kernel", "carry_kernel", "bias", "carry_bias"]
    assert [s.regularizer is None and s.constraint is None for s in specs] == [True] * 4
    np.testing.assert_array_equal(b.params["carry_bias"], np.ones(5))  # Keras 1: b_carry starts at 1
    np.testing.assert_array_equal(b.params["bias"], np.zeros(5))
    rng = np.random.default_rng(0)
    p = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in b.params.items()}
    x = rng.standard_normal((3, 5))
    y, _ = b.layer.forward(p, x)
    for i in range(3):
        t = 1 / (1 + np.exp(-(x[i] @ p["carry_kernel"] + p["carry_bias"])))
        h = np.maximum(x[i] @ p["kernel"] + p["bias"], 0)
        np.testing.assert_allclose(y[i], t * h + (1 - t) * x[i], rtol=1e-12)
    # at init with zero weights the gate is sigmoid(1) ~ 0.73
    zero = {k: np.zeros_like(v) if "kernel" in k else v for k, v in b.params.items()}
    y0, _ = b.layer.forward(zero, x)
    np.testing.assert_allclose(y0, (1 - 1 / (1 + np.exp(-1))) * x)
    check_layer_gradients(b, x)


def test_highway_regularizer_only_on_kernel_and_bias():
    specs = build_layer({"type": "Highway", "W_regularizer": "l2", "b_regularizer": "l1"}, (3,)).layer.param_specs((3,))
    reg = {s.name: s.regularizer for s in specs}
    assert reg["kernel"] and reg["bias"] and reg["carry_kernel"] is None and reg["carry_bias"] is None


def test_highway_needs_2d():
    with pytest.raises(ShapeError, match=r"\(None, 4, 3\).*2D input"):
        build_layer({"type": "Highway"}, (4, 3))


# ---------------------------------------------------------------------------------------------- MaxoutDense

def test_maxout_forward_reference_and_argmax_gradient():
    b = build_layer({"type": "MaxoutDense", "units": 3, "nb_feature": 4}, (5,))
    rng = np.random.default_rng(1)
    p = {"kernel": rng.standard_normal((4, 5, 3)), "bias": rng.standard_normal((4, 3))}
    x = rng.standard_normal((6, 5))
    y, cache = b.layer.forward(p, x)
    ref = np.empty((6, 3))
    win = np.empty((6, 3), int)
    for i in range(6):
        for j in range(3):
            z = [sum(x[i, a] * p["kernel"][k, a, j] for a in range(5)) + p["bias"][k, j] for k in range(4)]
            ref[i, j] = max(z)
            win[i, j] = int(np.argmax(z))
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    dy = rng.standard_normal((6, 3))
    dx, grads = b.layer.backward(p, dy, cache)
    gb = np.zeros((4, 3))
    gw = np.zeros((4, 5, 3))
    for i in range(6):
        for j in range(3):
            gb[win[i, j], j] += dy[i, j]
            gw[win[i, j], :, j] += dy[i, j] * x[i]
    np.testing.assert_allclose(grads["bias"], gb, rtol=1e-12)
    np.testing.assert_allclose(grads["kernel"], gw, rtol=1e-12)
    b.params.update(p)
    check_layer_gradients(b, x)


def test_maxout_keras1_glorot_fans():
    b = build_layer({"type": "MaxoutDense", "units": 10, "nb_feature": 4}, (20,))
    limit = np.sqrt(6 / (2 * np.sqrt(4 * 20 * 10)))  # Keras 1: fan_in = fan_out = sqrt(prod(shape))
    w = b.params["kernel"]
    assert w.shape == (4, 20, 10) and np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit


def test_maxout_needs_2d():
    with pytest.raises(ShapeError, match=r"\(None, 4, 3\).*2D input"):
        build_layer({"type": "MaxoutDense", "units": 2}, (4, 3))
