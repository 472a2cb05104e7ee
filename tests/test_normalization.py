"""BatchNormalization against the closed-form formulas (batch and moving statistics, any axis, masks)."""

import numpy as np
import pytest

from layerforge.config.model import parse_layer
from layerforge.config.source import SourceMap
from layerforge.errors import ConfigError, ShapeError
from layerforge.testing import build_layer, check_layer_gradients

EPS = 1e-3


def _parse(cfg):
    problems = []
    out = parse_layer(dict(cfg), (), SourceMap(), problems)
    return out, problems


def _built(cfg, shape, dtype=np.float64, seed=0):
    built = build_layer(cfg, shape, dtype=dtype)
    rng = np.random.default_rng(seed)
    for k, v in built.params.items():
        built.params[k] = rng.uniform(0.5, 1.5, v.shape).astype(dtype)
    built.layer.state["moving_mean"] = rng.standard_normal(built.layer.state["moving_mean"].shape).astype(dtype)
    built.layer.state["moving_variance"] = rng.uniform(0.5, 2, built.layer.state["moving_mean"].shape).astype(dtype)
    return built


def _reference(x, gamma, beta, axis, mean=None, var=None, eps=EPS):
    """Plain numpy BN over every axis but ``axis``; batch statistics unless given."""
    axis = axis % x.ndim
    red = tuple(i for i in range(x.ndim) if i != axis)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    if mean is None:
        mean = x.mean(axis=red)
        var = ((x - mean.reshape(shape)) ** 2).mean(axis=red)  # biased
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)
    return y, mean, var


@pytest.mark.parametrize("shape,axis", [((5,), -1), ((3, 4, 2), -1), ((2, 3, 4), 1), ((3, 4), -2), ((3, 4, 2), 2)])
def test_training_forward_and_moving_update(shape, axis):
    built = _built({"type": "BatchNormalization", "axis": axis, "momentum": 0.9}, shape)
    layer, p = built.layer, built.params
    rng = np.random.default_rng(1)
    mm0, mv0 = layer.state["moving_mean"].copy(), layer.state["moving_variance"].copy()
    x1 = rng.standard_normal((4,) + shape) * 2 + 1
    x2 = rng.standard_normal((4,) + shape) * 0.5 - 3
    y1, _ = layer.forward(p, x1, training=True)
    ref1, m1, v1 = _reference(x1, p["gamma"], p["beta"], axis)
    np.testing.assert_allclose(y1, ref1, rtol=1e-10, atol=1e-10)
    y2, _ = layer.forward(p, x2, training=True)
    ref2, m2, v2 = _reference(x2, p["gamma"], p["beta"], axis)
    np.testing.assert_allclose(y2, ref2, rtol=1e-10, atol=1e-10)
    # two momentum steps, biased variance, no bias correction
    np.testing.assert_allclose(layer.state["moving_mean"], 0.9 * (0.9 * mm0 + 0.1 * m1) + 0.1 * m2, rtol=1e-12)
    np.testing.assert_allclose(layer.state["moving_variance"], 0.9 * (0.9 * mv0 + 0.1 * v1) + 0.1 * v2, rtol=1e-12)


def test_inference_uses_moving_statistics_and_leaves_them():
    built = _built({"type": "BatchNormalization", "epsilon": 0.01}, (3, 4))
    layer, p = built.layer, built.params
    mm, mv = layer.state["moving_mean"].copy(), layer.state["moving_variance"].copy()
    x = np.random.default_rng(2).standard_normal((5, 3, 4))
    y, _ = layer.forward(p, x, training=False)
    np.testing.assert_allclose(y, p["gamma"] * (x - mm) / np.sqrt(mv + 0.01) + p["beta"], rtol=1e-12)
    np.testing.assert_array_equal(layer.state["moving_mean"], mm)
    np.testing.assert_array_equal(layer.state["moving_variance"], mv)


def test_frozen_layer_runs_in_inference_mode():
    built = _built({"type": "BatchNormalization", "trainable": False}, (4,))
    layer, p = built.layer, built.params
    mm = layer.state["moving_mean"].copy()
    x = np.random.default_rng(3).standard_normal((6, 4))
    y, _ = layer.forward(p, x, training=True)
    ref, _, _ = _reference(x, p["gamma"], p["beta"], -1, mm, layer.state["moving_variance"])
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    np.testing.assert_array_equal(layer.state["moving_mean"], mm)


def test_channels_first_equals_transposed_channels_last():
    rng = np.random.default_rng(4)
    x_first = rng.standard_normal((3, 5, 4, 2))  # (B, C, H, W)
    first = _built({"type": "BatchNormalization", "axis": 1}, (5, 4, 2), seed=7)
    last = _built({"type": "BatchNormalization", "axis": -1}, (4, 2, 5), seed=7)
    assert first.params["gamma"].shape == last.params["gamma"].shape == (5,)
    dy_first = rng.standard_normal(x_first.shape)
    for training in (True, False):
        y_first, c_first = first.layer.forward(first.params, x_first, training=training)
        y_last, c_last = last.layer.forward(last.params, x_first.transpose(0, 2, 3, 1), training=training)
        np.testing.assert_allclose(y_first, y_last.transpose(0, 3, 1, 2), rtol=1e-12, atol=1e-12)
        dx_first, g_first = first.layer.backward(first.params, dy_first, c_first)
        dx_last, g_last = last.layer.backward(last.params, dy_first.transpose(0, 2, 3, 1), c_last)
        np.testing.assert_allclose(dx_first, dx_last.transpose(0, 3, 1, 2), rtol=1e-10, atol=1e-12)
        for k in g_first:
            np.testing.assert_allclose(g_first[k], g_last[k], rtol=1e-10)
    np.testing.assert_allclose(first.layer.state["moving_variance"], last.layer.state["moving_variance"])


def test_list_axis_keeps_several_axes():
    built = _built({"type": "BatchNormalization", "axis": [1, 3], "momentum": 0.5}, (3, 2, 4))
    assert built.params["gamma"].shape == (3, 4)
    x = np.random.default_rng(5).standard_normal((4, 3, 2, 4))
    y, _ = built.layer.forward(built.params, x, training=True)
    mean = x.mean(axis=(0, 2), keepdims=True)
    var = x.var(axis=(0, 2), keepdims=True)
    g = built.params["gamma"][None, :, None, :]
    b = built.params["beta"][None, :, None, :]
    np.testing.assert_allclose(y, g * (x - mean) / np.sqrt(var + EPS) + b, rtol=1e-10, atol=1e-12)


def test_masked_statistics_follow_keras3():
    built = _built({"type": "BatchNormalization", "momentum": 0.0}, (5, 3))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 3))
    mask = np.array([[True, True, False, True, False], [True, False, False, True, True]])
    y, _ = built.layer.forward(built.params, x, training=True, mask=mask)
    valid = x[mask]  # (n_valid, 3)
    ref, mean, var = _reference(x, built.params["gamma"], built.params["beta"], -1, valid.mean(0), valid.var(0))
    np.testing.assert_allclose(y, ref, rtol=1e-10)  # every position normalised with the unmasked statistics
    np.testing.assert_allclose(built.layer.state["moving_mean"], mean, rtol=1e-12)  # momentum 0: batch stats
    np.testing.assert_allclose(built.layer.state["moving_variance"], var, rtol=1e-12)
    assert built.layer.compute_mask(x, mask) is mask
    check_layer_gradients(_built({"type": "BatchNormalization"}, (5, 3)), x, mask=mask)


def test_center_scale_off_and_weight_order():
    layer = build_layer({"type": "BatchNormalization"}, (26, 26, 32)).layer
    specs = layer.param_specs((26, 26, 32))
    assert [(s.name, s.trainable) for s in specs] == [("gamma", True), ("beta", True), ("moving_mean", False),
                                                     ("moving_variance", False)]
    assert sum(s.size for s in specs) == 128
    plain = build_layer({"type": "BatchNormalization", "center": False, "scale": False}, (4,))
    assert plain.params == {}
    x = np.random.default_rng(7).standard_normal((6, 4))
    y, _ = plain.layer.forward({}, x, training=True)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + EPS), rtol=1e-12)


def test_float32_stays_float32():
    built = _built({"type": "BatchNormalization", "axis": 1}, (3, 4), dtype=np.float32)
    x = np.random.default_rng(8).standard_normal((2, 3, 4)).astype(np.float32)
    for training in (True, False):
        y, cache = built.layer.forward(built.params, x, training=training)
        dx, grads = built.layer.backward(built.params, np.ones_like(y), cache)
        assert y.dtype == dx.dtype == np.float32
        assert all(g.dtype == np.float32 for g in grads.values())
        assert built.layer.state["moving_mean"].dtype == np.float32


def test_keras1_names_equal_modern_config():
    old, p1 = _parse({"type": "BatchNormalization", "beta_init": "zero", "gamma_init": "one", "mode": 0,
                      "epsilon": 1e-3, "axis": 1})
    new, p2 = _parse({"type": "BatchNormalization", "beta_initializer": "zeros", "gamma_initializer": "ones",
                      "axis": 1})
    assert not p1 and not p2 and old == new
    assert "mode" not in new.public_dict()


@pytest.mark.parametrize("mode", [1, 2])
def test_removed_modes_are_rejected_with_reason(mode):
    _, problems = _parse({"type": "BatchNormalization", "mode": mode})
    assert problems
    text = problems[0].message
    assert f"mode {mode}" in text and "removed in Keras 2" in text and "mode 0" in text


def test_bad_axes():
    _, problems = _parse({"type": "BatchNormalization", "axis": 0})
    assert problems and "batch axis" in problems[0].message
    with pytest.raises(ShapeError, match="axis 3 does not exist"):
        build_layer({"type": "BatchNormalization", "axis": 3}, (4, 5))
    with pytest.raises(ShapeError, match="axis -3 does not exist"):
        build_layer({"type": "BatchNormalization", "axis": -3}, (4, 5))
    with pytest.raises(ShapeError, match="known size"):
        build_layer({"type": "BatchNormalization", "axis": 1}, (None, 5))
    with pytest.raises(ShapeError, match="same axis twice"):
        build_layer({"type": "BatchNormalization", "axis": [2, -1]}, (4, 5))
    with pytest.raises(ConfigError):
        build_layer({"type": "BatchNormalization", "momentum": 1.5}, (4,))
