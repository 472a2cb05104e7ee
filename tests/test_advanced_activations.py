"""Advanced activations against plain reference formulas, Keras 1 names, shape errors and init quirks."""

import math

import numpy as np
import pytest

from layerforge.config.model import parse_layer
from layerforge.config.source import SourceMap
from layerforge.errors import ConfigError, ShapeError
from layerforge.layers import REGISTRY, load_all
from layerforge.testing import build_layer, check_layer_gradients, random_input

load_all()


def _parse(cfg):
    problems = []
    out = parse_layer(dict(cfg), (), SourceMap(), problems)
    return out, problems


def _run(cfg, shape, x, params=None, dtype=np.float64):
    built = build_layer(cfg, shape, dtype=dtype)
    if params:
        built.params.update({k: np.asarray(v, dtype=dtype).reshape(built.params[k].shape) for k, v in params.items()})
    y, cache = built.layer.forward(built.params, x, training=True, rng=np.random.default_rng(0))
    return built, y, cache


def test_leaky_relu_formula_and_keras1_alpha():
    x = np.random.default_rng(0).standard_normal((3, 7))
    x[0, 0] = 0.0
    _, y, _ = _run({"type": "LeakyReLU", "negative_slope": 0.1}, (7,), x)
    ref = np.array([[v if v >= 0 else 0.1 * v for v in row] for row in x])
    np.testing.assert_allclose(y, ref)
    _, y_default, _ = _run({"type": "LeakyReLU"}, (7,), x)
    np.testing.assert_allclose(y_default, np.where(x >= 0, x, 0.3 * x))
    old, p1 = _parse({"type": "LeakyReLU", "alpha": 0.1})
    new, p2 = _parse({"type": "LeakyReLU", "negative_slope": 0.1})
    assert not p1 and not p2 and old == new
    _, problems = _parse({"type": "LeakyReLU", "negative_slope": -0.5})
    assert problems


def test_prelu_shared_axes_against_loop():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5))
    alpha = rng.uniform(-1, 1, (1, 4, 1))
    built, y, _ = _run({"type": "PReLU", "shared_axes": [1, 3]}, (3, 4, 5), x, {"alpha": alpha})
    assert built.params["alpha"].shape == (1, 4, 1)
    ref = np.empty_like(x)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                for k in range(5):
                    v = x[b, i, j, k]
                    ref[b, i, j, k] = v if v > 0 else alpha[0, j, 0] * v
    np.testing.assert_allclose(y, ref)
    check_layer_gradients(built, x)


def test_prelu_keras1_init_and_param_counts():
    old, p1 = _parse({"type": "PReLU", "init": "zero"})
    new, p2 = _parse({"type": "PReLU", "alpha_initializer": "zeros"})
    assert not p1 and not p2 and old == new
    layer = build_layer({"type": "PReLU", "shared_axes": [1, 2]}, (26, 26, 32)).layer
    (spec,) = layer.param_specs((26, 26, 32))
    assert spec.name == "alpha" and spec.shape == (1, 1, 32)
    assert build_layer({"type": "PReLU", "shared_axes": 2}, (4, 3)).params["alpha"].shape == (4, 1)


def test_prelu_shape_errors():
    with pytest.raises(ShapeError, match="shared_axes 3 does not exist"):
        build_layer({"type": "PReLU", "shared_axes": [3]}, (4, 5))
    with pytest.raises(ShapeError) as info:
        build_layer({"type": "PReLU"}, (None, 5))
    assert "variable length" in str(info.value) or "variable length" in info.value.problems[0].message
    assert "shared_axes: [1]" in (info.value.problems[0].hint or "")
    _, problems = _parse({"type": "PReLU", "shared_axes": [0]})
    assert problems and "from 1" in problems[0].message


def test_elu_formula():
    x = np.random.default_rng(2).standard_normal((4, 5))
    _, y, _ = _run({"type": "ELU", "alpha": 0.7}, (5,), x)
    ref = np.array([[v if v > 0 else 0.7 * (math.exp(v) - 1) for v in row] for row in x])
    np.testing.assert_allclose(y, ref, rtol=1e-12)


def test_thresholded_relu_strict_and_gradient():
    x = np.array([[-1.0, 0.5, 1.0, 1.0 + 1e-9, 3.0]])
    built, y, cache = _run({"type": "ThresholdedReLU"}, (5,), x)
    np.testing.assert_array_equal(y, [[0.0, 0.0, 0.0, 1.0 + 1e-9, 3.0]])  # x == theta gives 0 (strict)
    dx, grads = built.layer.backward(built.params, np.full_like(x, 2.0), cache)
    np.testing.assert_array_equal(dx, [[0, 0, 0, 2.0, 2.0]])
    assert grads == {}


def test_thresholded_relu_examples_avoid_the_jump():
    """The generic gradient check replays these inputs: no sample may sit within 1e-4 of theta."""
    for index, ex in enumerate(REGISTRY["ThresholdedReLU"].examples):
        x = random_input(ex.input_shape, ex.batch_size or 2, np.random.default_rng(42 + index))
        assert np.abs(x - ex.config.get("theta", 1.0)).min() > 1e-4


def test_parametric_softplus_formula_stable_and_constants():
    x = np.random.default_rng(3).standard_normal((3, 2, 4)) * 3
    x[0, 0, 0] = 500.0  # exp(beta*x) would overflow
    x[0, 0, 1] = -500.0
    built = build_layer({"type": "ParametricSoftplus", "shared_axes": [1]}, (2, 4))
    assert built.params["alphas"].shape == (1, 4) and np.all(built.params["alphas"] == 0.2)
    assert np.all(built.params["betas"] == 5.0)
    rng = np.random.default_rng(4)
    built.params["alphas"] = rng.uniform(0.1, 1, (1, 4))
    built.params["betas"] = rng.uniform(0.5, 3, (1, 4))
    y, _ = built.layer.forward(built.params, x)
    a, b = built.params["alphas"], built.params["betas"]
    ref = np.empty_like(x)
    for i in np.ndindex(*x.shape):
        z = b[0, i[2]] * x[i]
        ref[i] = a[0, i[2]] * (z + math.log1p(math.exp(-z)) if z > 30 else math.log1p(math.exp(z)))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-300)
    # default f(0) = 0.2 * ln 2
    y0, _ = build_layer({"type": "ParametricSoftplus"}, (3,)).layer.forward(
        {"alphas": np.full(3, 0.2), "betas": np.full(3, 5.0)}, np.zeros((1, 3)))
    np.testing.assert_allclose(y0, 0.2 * math.log(2))


def _srelu_keras1(x, tl, al, tr_off, ar):
    """Keras 1: t_left + relu(x - t_left, alpha=a_left, max_value=t_r - t_left) + a_right * relu(x - t_r)."""
    tr = tl + abs(tr_off)
    v = x - tl
    inner = min(max(v, 0.0), tr - tl) - al * max(-v, 0.0)
    return tl + inner + ar * max(x - tr, 0.0)


def test_srelu_against_keras1_formula():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 2)) * 2
    p = {"t_left": rng.uniform(-1, 0, (1, 2)), "a_left": rng.uniform(-0.5, 0.5, (1, 2)),
         "t_right": rng.uniform(-1.5, 1.5, (1, 2)), "a_right": rng.uniform(0.2, 2, (1, 2))}
    built, y, _ = _run({"type": "SReLU", "shared_axes": 1}, (4, 2), x, p)
    ref = np.empty_like(x)
    for i in np.ndindex(*x.shape):
        c = i[2]
        ref[i] = _srelu_keras1(x[i], p["t_left"][0, c], p["a_left"][0, c], p["t_right"][0, c], p["a_right"][0, c])
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    check_layer_gradients(built, x)


def test_srelu_keras1_names_order_and_fans():
    old, p1 = _parse({"type": "SReLU", "t_left_init": "zero", "a_left_init": "glorot_uniform",
                      "t_right_init": "glorot_uniform", "a_right_init": "one"})
    new, p2 = _parse({"type": "SReLU"})
    assert not p1 and not p2 and old == new
    built = build_layer({"type": "SReLU"}, (64,), seed=3)
    specs = built.layer.param_specs((64,))
    assert [s.name for s in specs] == ["t_left", "a_left", "t_right", "a_right"]
    assert specs[2].fan == (8.0, 8.0)  # Keras 1: sqrt(64) for a 1D shape
    limit = math.sqrt(6 / 16)  # glorot_uniform with fan_in = fan_out = 8
    for name in ("a_left", "t_right"):
        w = built.params[name]
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.8 * limit
    assert np.all(built.params["t_left"] == 0) and np.all(built.params["a_right"] == 1)
    # 2D parameter shapes use (rows, cols) as Keras 1 did; 3D use sqrt(prod)
    assert build_layer({"type": "SReLU"}, (3, 4)).layer.param_specs((3, 4))[1].fan == (3.0, 4.0)
    assert build_layer({"type": "SReLU"}, (2, 2, 4)).layer.param_specs((2, 2, 4))[1].fan == (4.0, 4.0)


@pytest.mark.parametrize("cfg", [{"type": "LeakyReLU"}, {"type": "PReLU"}, {"type": "ELU"},
                                 {"type": "ThresholdedReLU"}, {"type": "ParametricSoftplus"}, {"type": "SReLU"}])
def test_float32_in_float32_out_and_mask_passes(cfg):
    built = build_layer(cfg, (3, 4), dtype=np.float32)
    x = np.random.default_rng(6).standard_normal((2, 3, 4)).astype(np.float32)
    y, cache = built.layer.forward(built.params, x)
    assert y.dtype == np.float32
    dx, grads = built.layer.backward(built.params, np.ones_like(y), cache)
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    mask = np.array([[True, False, True], [True, True, False]])
    assert built.layer.compute_mask(x, mask) is mask


def test_unknown_parameter_is_reported():
    with pytest.raises(ConfigError):
        build_layer({"type": "ELU", "theta": 1.0}, (3,))
