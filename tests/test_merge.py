"""Merge (and its Keras 2/3 aliases) against plain numpy references; configs, masks and error messages."""

import numpy as np
import pytest

from layerforge.errors import ConfigError, ShapeError
from layerforge.testing import build_layer, check_layer_gradients

RNG = np.random.default_rng(0)


def _build(config, shapes):
    return build_layer(config, [tuple(s) for s in shapes])


def _dot_ref(x, y, a1, a2):
    """Batched tensor dot with explicit loops (a1, a2 index the non-batch axes)."""
    xs, ys = x.shape[1:], y.shape[1:]
    xr = [d for i, d in enumerate(xs) if i != a1]
    yr = [d for i, d in enumerate(ys) if i != a2]
    out = np.zeros((x.shape[0], *xr, *yr))
    for b in range(x.shape[0]):
        for i in np.ndindex(*xr):
            for j in np.ndindex(*yr):
                total = 0.0
                for k in range(xs[a1]):
                    xi = list(i)
                    xi.insert(a1, k)
                    yj = list(j)
                    yj.insert(a2, k)
                    total += x[(b, *xi)] * y[(b, *yj)]
                out[(b, *i, *j)] = total
    return out if out.ndim > 1 else out[:, None]


def _cos_ref(x, y, a1, a2):
    d = _dot_ref(x, y, a1, a2)
    nx = np.sqrt((x * x).sum(axis=a1 + 1))
    ny = np.sqrt((y * y).sum(axis=a2 + 1))
    out = np.empty_like(d)
    for b in range(x.shape[0]):
        for i in np.ndindex(*nx.shape[1:]):
            for j in np.ndindex(*ny.shape[1:]):
                idx = (b, *i, *j) if (i or j) else (b, 0)
                out[idx] = d[idx] / max(nx[(b, *i)] * ny[(b, *j)], 1e-7)
    return out


# ---------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("alias,mode", [("Add", "sum"), ("Subtract", "subtract"), ("Multiply", "mul"),
                                        ("Average", "ave"), ("Maximum", "max"), ("Minimum", "min"),
                                        ("Concatenate", "concat"), ("Dot", "dot")])
def test_alias_presets(alias, mode):
    cfg = _build({"type": alias}, [(3,), (3,)]).layer.config
    assert cfg.type == "Merge" and cfg.mode == mode
    assert cfg == _build({"type": "Merge", "mode": mode}, [(3,), (3,)]).layer.config


def test_keras3_argument_names():
    cfg = _build({"type": "Concatenate", "axis": 1}, [(2, 3), (4, 3)]).layer.config
    assert (cfg.mode, cfg.concat_axis) == ("concat", 1)
    cfg = _build({"type": "Dot", "axes": [2, 1], "normalize": True}, [(3, 4), (4, 2)]).layer.config
    assert (cfg.mode, cfg.dot_axes) == ("cos", (2, 1))
    cfg = _build({"type": "Dot", "axes": 1, "normalize": False}, [(4,), (4,)]).layer.config
    assert (cfg.mode, cfg.dot_axes) == ("dot", 1)
    assert _build({"type": "Merge", "mode": "dot", "normalize": True}, [(4,), (4,)]).layer.config.mode == "cos"
    assert _build({"type": "Merge", "mode": "Concatenate"}, [(4,), (4,)]).layer.config.mode == "concat"
    # the public (saved) form is the canonical Merge
    dumped = _build({"type": "Dot", "normalize": True}, [(4,), (4,)]).layer.config.public_dict()
    assert dumped == {"type": "Merge", "mode": "cos", "concat_axis": -1, "dot_axes": -1}


@pytest.mark.parametrize("config,message", [
    ({"type": "Add", "mode": "mul"}, "type Add fixes mode='sum'"),
    ({"type": "Add", "normalize": True}, "normalize: true applies to Dot"),
    ({"type": "Concatenate", "axis": 1, "concat_axis": 1}, "mean the same parameter"),
    ({"type": "Merge", "mode": "concat", "concat_axis": 0}, "batch axis"),
    ({"type": "Dot", "axes": [0, 1]}, "batch axis"),
    ({"type": "Merge", "mode": "sum", "output_shape": [3]}, "Lambda"),
    ({"type": "Merge", "mode": "concat", "node_indices": [0, 0]}, "name:k"),
    ({"type": "Merge", "mode": "lambda x: x[0]"}, "unknown merge mode"),
    ({"type": "Merge", "mode": "cat"}, "did you mean"),
])
def test_config_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        _build(config, [(3,), (3,)])


# ---------------------------------------------------------------------------------------------- shapes

def test_reference_shapes():
    two = [(32,), (32,)]
    assert _build({"type": "Merge", "mode": "concat"}, two).output_shape == (64,)
    for mode in ("sum", "mul", "ave", "max"):
        assert _build({"type": "Merge", "mode": mode}, two).output_shape == (32,)
    for axes in (1, -1):
        assert _build({"type": "Merge", "mode": "dot", "dot_axes": axes}, two).output_shape == (1,)
    assert _build({"type": "Merge", "mode": "cos"}, two).output_shape == (1,)
    assert _build({"type": "Dot", "axes": [2, 2]}, [(10, 8), (7, 8)]).output_shape == (10, 7)
    assert _build({"type": "Concatenate", "axis": 1}, [(None, 3), (4, 3)]).output_shape == (None, 3)
    assert _build({"type": "Add"}, [(None, 3), (4, 3)]).output_shape == (4, 3)


def test_shape_errors_name_every_input():
    with pytest.raises(ShapeError, match=r"\[\(None, 32\), \(None, 16\)\].*identical input shapes"):
        _build({"type": "Add"}, [(32,), (16,)])
    with pytest.raises(ShapeError, match=r"\[\(None, 4, 3\), \(None, 5, 2\)\].*axis 1 differs"):
        _build({"type": "Concatenate"}, [(4, 3), (5, 2)])
    with pytest.raises(ShapeError, match="same rank"):
        _build({"type": "Concatenate"}, [(4, 3), (5,)])
    with pytest.raises(ShapeError, match=r"\[\(None, 3, 4\), \(None, 5\)\].*size 4.*size 5"):
        _build({"type": "Dot", "axes": -1}, [(3, 4), (5,)])
    with pytest.raises(ShapeError, match="exactly 2 inputs, got 3"):
        _build({"type": "Subtract"}, [(3,), (3,), (3,)])
    with pytest.raises(ShapeError, match="exactly 2 inputs"):
        _build({"type": "Dot"}, [(3,), (3,), (3,)])
    with pytest.raises(ShapeError, match="at least 2 inputs, got 1"):
        _build({"type": "Add"}, [(3,)])
    with pytest.raises(ShapeError, match="concat_axis 3 does not exist"):
        _build({"type": "Concatenate", "axis": 3}, [(2, 3), (2, 3)])
    with pytest.raises(ShapeError, match="axis 3 does not exist"):
        _build({"type": "Dot", "axes": 3}, [(2, 3), (2, 3)])


# ---------------------------------------------------------------------------------------------- forward

@pytest.mark.parametrize("axes,shapes,a", [
    ([2, 2], [(3, 4), (5, 4)], (1, 1)),
    ([1, 2], [(3, 4), (2, 3)], (0, 1)),
    ([2, 1], [(3, 4), (4, 2)], (1, 0)),
    (-1, [(3, 4), (2, 4)], (1, 1)),
    (1, [(3, 4), (3, 2)], (0, 0)),
    ([1, 1], [(3,), (3, 2)], (0, 0)),
    (-1, [(5,), (5,)], (0, 0)),
    ([3, 1], [(2, 3, 4), (4, 2)], (2, 0)),
])
@pytest.mark.parametrize("mode", ["dot", "cos"])
def test_dot_and_cos_against_loops(mode, axes, shapes, a):
    b = _build({"type": "Merge", "mode": mode, "dot_axes": axes}, shapes)
    x = [RNG.standard_normal((2, *s)) for s in shapes]
    y, _ = b.layer.forward({}, x)
    ref = (_dot_ref if mode == "dot" else _cos_ref)(x[0], x[1], *a)
    assert y.shape == (2, *b.output_shape)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    check_layer_gradients(b, x)


def test_cos_keras1_formula_2d_and_zero_vector():
    b = _build({"type": "Merge", "mode": "cos"}, [(3,), (3,)])
    x = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    y = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    out, _ = b.layer.forward({}, [x, y])
    np.testing.assert_allclose(out, [[2.0 / (3.0 * 2.0)], [0.0]])
    f32, _ = b.layer.forward({}, [x.astype(np.float32), y.astype(np.float32)])
    assert f32.dtype == np.float32 and f32.shape == (2, 1)


def test_concat_axis_1_and_minus_1():
    x1, x2 = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 3, 5))
    b = _build({"type": "Merge", "mode": "concat"}, [(3, 4), (3, 5)])
    y, _ = b.layer.forward({}, [x1, x2])
    ref = np.empty((2, 3, 9))
    ref[:, :, :4], ref[:, :, 4:] = x1, x2
    np.testing.assert_array_equal(y, ref)
    x3 = RNG.standard_normal((2, 2, 4))
    b = _build({"type": "Concatenate", "axis": 1}, [(3, 4), (2, 4)])
    assert b.output_shape == (5, 4)
    y, cache = b.layer.forward({}, [x1, x3])
    ref = np.empty((2, 5, 4))
    ref[:, :3], ref[:, 3:] = x1, x3
    np.testing.assert_array_equal(y, ref)
    dx, _ = b.layer.backward({}, y, cache)
    np.testing.assert_array_equal(dx[0], x1)
    np.testing.assert_array_equal(dx[1], x3)
    # axis 1 and -2 are the same axis for 3D inputs
    b2 = _build({"type": "Concatenate", "axis": -2}, [(3, 4), (2, 4)])
    np.testing.assert_array_equal(b2.layer.forward({}, [x1, x3])[0], y)


def test_elementwise_modes_against_numpy():
    xs = [RNG.standard_normal((2, 3, 4)) for _ in range(3)]
    refs = {"sum": xs[0] + xs[1] + xs[2], "mul": xs[0] * xs[1] * xs[2], "ave": (xs[0] + xs[1] + xs[2]) / 3,
            "max": np.maximum(np.maximum(xs[0], xs[1]), xs[2]), "min": np.minimum(np.minimum(xs[0], xs[1]), xs[2])}
    for mode, ref in refs.items():
        b = _build({"type": "Merge", "mode": mode}, [(3, 4)] * 3)
        y, _ = b.layer.forward({}, xs)
        np.testing.assert_allclose(y, ref, rtol=1e-12)
        for v in xs:  # inputs untouched
            assert v.flags.writeable
    b = _build({"type": "Subtract"}, [(3, 4)] * 2)
    np.testing.assert_array_equal(b.layer.forward({}, xs[:2])[0], xs[0] - xs[1])


def test_inputs_not_modified():
    xs = [RNG.standard_normal((2, 3)) for _ in range(3)]
    copies = [v.copy() for v in xs]
    for mode in ("sum", "ave", "mul", "max"):
        b = _build({"type": "Merge", "mode": mode}, [(3,)] * 3)
        y, cache = b.layer.forward({}, xs)
        b.layer.backward({}, np.ones_like(y), cache)
        for v, c in zip(xs, copies, strict=True):
            np.testing.assert_array_equal(v, c)


def test_max_min_route_gradient_to_winner():
    x1 = np.array([[1.0, 5.0, -2.0]])
    x2 = np.array([[3.0, 4.0, -1.0]])
    dy = np.array([[10.0, 20.0, 30.0]])
    b = _build({"type": "Maximum"}, [(3,), (3,)])
    _, cache = b.layer.forward({}, [x1, x2])
    dx, _ = b.layer.backward({}, dy, cache)
    np.testing.assert_array_equal(dx[0], [[0, 20, 0]])
    np.testing.assert_array_equal(dx[1], [[10, 0, 30]])
    b = _build({"type": "Minimum"}, [(3,), (3,)])
    _, cache = b.layer.forward({}, [x1, x2])
    dx, _ = b.layer.backward({}, dy, cache)
    np.testing.assert_array_equal(dx[0], [[10, 0, 30]])
    np.testing.assert_array_equal(dx[1], [[0, 20, 0]])


def test_mul_gradient_with_zero():
    xs = [np.array([[0.0, 2.0]]), np.array([[3.0, 0.0]]), np.array([[4.0, 5.0]])]
    b = _build({"type": "Multiply"}, [(2,)] * 3)
    _, cache = b.layer.forward({}, xs)
    dx, _ = b.layer.backward({}, np.ones((1, 2)), cache)
    np.testing.assert_array_equal(dx[0], [[12.0, 0.0]])
    np.testing.assert_array_equal(dx[1], [[0.0, 10.0]])
    np.testing.assert_array_equal(dx[2], [[0.0, 0.0]])


# ---------------------------------------------------------------------------------------------- masks

def test_masks():
    x = [np.zeros((2, 3, 4)), np.zeros((2, 3, 4))]
    m1 = np.array([[True, True, False], [True, False, True]])
    m2 = np.array([[True, False, True], [True, True, True]])
    both = m1 & m2
    for mode in ("sum", "mul", "ave", "max", "min", "subtract"):
        layer = _build({"type": "Merge", "mode": mode}, [(3, 4)] * 2).layer
        np.testing.assert_array_equal(layer.compute_mask(x, [m1, m2]), both)
        np.testing.assert_array_equal(layer.compute_mask(x, [None, m2]), m2)
        assert layer.compute_mask(x, [None, None]) is None
        assert layer.compute_mask(x, None) is None
    for mode in ("dot", "cos"):
        layer = _build({"type": "Merge", "mode": mode, "dot_axes": 2}, [(3, 4)] * 2).layer
        assert layer.compute_mask(x, [m1, m2]) is None
    # concat on the feature axis (Keras 3): a step is valid if any input marks it valid
    # (a missing mask counts as all true)
    layer = _build({"type": "Concatenate"}, [(3, 4), (3, 4)]).layer
    np.testing.assert_array_equal(layer.compute_mask(x, [m1, m2]), m1 | m2)
    np.testing.assert_array_equal(layer.compute_mask(x, [m1, None]), np.ones_like(m1))
    # concat on the time axis: the masks are joined
    xt = [np.zeros((2, 3, 4)), np.zeros((2, 2, 4))]
    m3 = np.array([[False, True], [True, False]])
    layer = _build({"type": "Concatenate", "axis": 1}, [(3, 4), (2, 4)]).layer
    np.testing.assert_array_equal(layer.compute_mask(xt, [m1, m3]), np.concatenate([m1, m3], axis=1))
    np.testing.assert_array_equal(layer.compute_mask(xt, [None, m3]),
                                  np.concatenate([np.ones((2, 3), bool), m3], axis=1))


def test_flops():
    two = [(32,), (32,)]
    assert _build({"type": "Add"}, two).layer.flops(two, (32,)) == 32
    assert _build({"type": "Average"}, [(32,)] * 3).layer.flops([(32,)] * 3, (32,)) == 96
    assert _build({"type": "Dot"}, two).layer.flops(two, (1,)) == 32
    assert _build({"type": "Dot", "axes": 2}, [(3, 4), (5, 4)]).layer.flops([(3, 4), (5, 4)], (3, 5)) == 60
    assert _build({"type": "Concatenate"}, two).layer.flops(two, (64,)) == 0
