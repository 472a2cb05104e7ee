"""Pooling layers against plain-numpy loop references (tiny shapes)."""

import itertools
import math

import numpy as np
import pytest

from layerforge.errors import ConfigError, ShapeError
from layerforge.testing import build_layer, check_layer_gradients


def _ref_pool(x, pool, strides, padding, mode):
    """Loop reference on channels_last x (B, *spatial, C); TF 'same' placement, real cells only."""
    spatial = x.shape[1:-1]
    outs, pads = [], []
    for length, k, s in zip(spatial, pool, strides, strict=True):
        if padding == "same":
            n = math.ceil(length / s)
            pads.append(max((n - 1) * s + k - length, 0) // 2)
        else:
            n = (length - k) // s + 1
            pads.append(0)
        outs.append(n)
    y = np.zeros((x.shape[0], *outs, x.shape[-1]))
    dx_from = {}
    for o in itertools.product(*(range(n) for n in outs)):
        ranges = []
        for i, k, s, p, length in zip(o, pool, strides, pads, spatial, strict=True):
            lo = i * s - p
            ranges.append(range(max(lo, 0), min(lo + k, length)))
        cells = list(itertools.product(*ranges))
        vals = np.stack([x[(slice(None), *c, slice(None))] for c in cells], axis=1)  # (B, n, C)
        if mode == "max":
            y[(slice(None), *o, slice(None))] = vals.max(axis=1)
            dx_from[o] = (cells, vals.argmax(axis=1))
        else:
            y[(slice(None), *o, slice(None))] = vals.mean(axis=1)
            dx_from[o] = (cells, None)
    return y, dx_from


def _ref_backward(x_shape, dy, dx_from, mode):
    dx = np.zeros(x_shape)
    for o, (cells, arg) in dx_from.items():
        g = dy[(slice(None), *o, slice(None))]  # (B, C)
        if mode == "max":
            for b in range(x_shape[0]):
                for c in range(x_shape[-1]):
                    dx[(b, *cells[arg[b, c]], c)] += g[b, c]
        else:
            for cell in cells:
                dx[(slice(None), *cell, slice(None))] += g / len(cells)
    return dx


CASES = [
    ("MaxPooling1D", (7, 3), 3, 2, "valid"),
    ("MaxPooling1D", (7, 3), 3, 2, "same"),
    ("MaxPooling1D", (6, 2), 2, 3, "same"),
    ("AveragePooling1D", (7, 2), 4, 3, "same"),
    ("AveragePooling1D", (9, 2), 2, 1, "valid"),
    ("MaxPooling2D", (7, 5, 2), (3, 2), (2, 1), "same"),
    ("MaxPooling2D", (7, 6, 3), (2, 2), (3, 2), "valid"),
    ("AveragePooling2D", (5, 7, 2), (2, 3), (2, 2), "same"),
    ("AveragePooling2D", (6, 5, 1), (3, 3), (1, 2), "valid"),
    ("MaxPooling3D", (5, 4, 3, 2), (2, 3, 2), (2, 1, 2), "same"),
    ("AveragePooling3D", (5, 4, 5, 1), (3, 2, 2), (2, 2, 3), "same"),
    ("AveragePooling3D", (4, 5, 3, 2), (2, 2, 2), (1, 2, 1), "valid"),
]


@pytest.mark.parametrize("type_name,shape,pool,strides,padding", CASES)
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_pooling_matches_loop_reference(type_name, shape, pool, strides, padding, fmt):
    rank = len(shape) - 1
    pool = (pool,) * rank if isinstance(pool, int) else pool
    strides = (strides,) * rank if isinstance(strides, int) else strides
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape))
    mode = "max" if type_name.startswith("Max") else "avg"
    want, dx_from = _ref_pool(x, pool, strides, padding, mode)
    dy = rng.standard_normal(want.shape)
    want_dx = _ref_backward(x.shape, dy, dx_from, mode)
    if fmt == "channels_first":
        x, want = np.moveaxis(x, -1, 1), np.moveaxis(want, -1, 1)
        dy, want_dx = np.moveaxis(dy, -1, 1), np.moveaxis(want_dx, -1, 1)
    cfg = {"type": type_name, "pool_size": list(pool), "strides": list(strides), "padding": padding,
           "data_format": fmt}
    built = build_layer(cfg, x.shape[1:])
    y, cache = built.layer.forward({}, x)
    assert tuple(built.output_shape) == y.shape[1:]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    dx, grads = built.layer.backward({}, dy, cache)
    assert grads == {}
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-12)


def test_average_same_counts_only_real_cells():
    built = build_layer({"type": "AveragePooling1D", "pool_size": 2, "padding": "same"}, (5, 1))
    x = np.arange(1, 6, dtype=np.float64).reshape(1, 5, 1)
    y, _ = built.layer.forward({}, x)
    np.testing.assert_allclose(y[0, :, 0], [1.5, 3.5, 5.0])


def test_same_padding_odd_cell_goes_at_the_end():
    # L=3, k=2, s=1: pad_total 1 -> 0 before, 1 after: windows [0,1], [1,2], [2]
    built = build_layer({"type": "MaxPooling1D", "pool_size": 2, "strides": 1, "padding": "same"}, (3, 1))
    x = np.array([[[3.0], [1.0], [-2.0]]])
    y, _ = built.layer.forward({}, x)
    np.testing.assert_allclose(y[0, :, 0], [3.0, 1.0, -2.0])  # padded cells never win, even against negatives


def test_max_pool_tie_goes_to_first_maximum():
    built = build_layer({"type": "MaxPooling1D", "pool_size": 3}, (3, 1))
    x = np.array([[[1.0], [2.0], [2.0]]])
    y, cache = built.layer.forward({}, x)
    dx, _ = built.layer.backward({}, np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[0, :, 0], [0.0, 1.0, 0.0])


def test_float32_in_float32_out():
    built = build_layer({"type": "MaxPooling2D", "padding": "same"}, (5, 3, 2), dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((2, 5, 3, 2)).astype(np.float32)
    y, cache = built.layer.forward({}, x)
    dx, _ = built.layer.backward({}, np.ones_like(y), cache)
    assert y.dtype == np.float32 and dx.dtype == np.float32


def test_keras1_names_give_the_modern_config():
    old = build_layer({"type": "MaxPooling1D", "pool_length": 3, "stride": 1, "border_mode": "same"}, (6, 2))
    new = build_layer({"type": "MaxPooling1D", "pool_size": 3, "strides": 1, "padding": "same"}, (6, 2))
    assert old.layer.config == new.layer.config
    th = build_layer({"type": "AveragePooling2D", "dim_ordering": "th"}, (3, 4, 4))
    assert th.layer.config.data_format == "channels_first"
    assert th.layer.config.pool_size == (2, 2) and th.layer.config.strides is None
    assert th.output_shape == (3, 2, 2)


def test_aliases():
    assert build_layer({"type": "MaxPool2D"}, (4, 4, 1)).layer.type == "MaxPooling2D"
    assert build_layer({"type": "GlobalAvgPool1D"}, (4, 1)).layer.type == "GlobalAveragePooling1D"


def test_reference_shapes():
    assert build_layer({"type": "MaxPooling1D", "pool_length": 2}, (10, 64)).output_shape == (5, 64)
    assert build_layer({"type": "MaxPooling2D", "pool_size": [2, 2], "border_mode": "same"},
                       (7, 7, 5)).output_shape == (4, 4, 5)
    assert build_layer({"type": "MaxPooling2D", "pool_size": [2, 2]}, (7, 7, 5)).output_shape == (3, 3, 5)
    assert build_layer({"type": "AveragePooling3D"}, (16, 16, 16, 8)).output_shape == (8, 8, 8, 8)
    assert build_layer({"type": "GlobalAveragePooling2D"}, (7, 7, 64)).output_shape == (64,)
    assert build_layer({"type": "GlobalMaxPooling1D"}, (10, 64)).output_shape == (64,)
    assert build_layer({"type": "MaxPooling1D"}, (None, 3)).output_shape == (None, 3)


def test_errors():
    with pytest.raises(ShapeError, match="shorter than the pool size"):
        build_layer({"type": "MaxPooling2D", "pool_size": 3}, (2, 5, 1))
    with pytest.raises(ShapeError, match="expected 3 axes"):
        build_layer({"type": "MaxPooling2D"}, (5, 5))
    with pytest.raises(ConfigError, match="Theano"):
        build_layer({"type": "MaxPooling2D", "border_mode": "full"}, (5, 5, 1))
    with pytest.raises(ConfigError, match="valid' or 'same"):
        build_layer({"type": "AveragePooling1D", "padding": "causal"}, (5, 1))
    with pytest.raises(ConfigError, match="2 integers"):
        build_layer({"type": "MaxPooling2D", "pool_size": [2, 2, 2]}, (5, 5, 1))


# ---------------------------------------------------------------------- global pooling


@pytest.mark.parametrize("type_name,shape,fmt", [
    ("GlobalMaxPooling1D", (5, 3), "channels_last"), ("GlobalMaxPooling1D", (3, 5), "channels_first"),
    ("GlobalAveragePooling1D", (5, 3), "channels_last"), ("GlobalMaxPooling2D", (3, 4, 2), "channels_first"),
    ("GlobalAveragePooling2D", (3, 4, 2), "channels_last"), ("GlobalMaxPooling3D", (2, 3, 2, 2), "channels_last"),
    ("GlobalAveragePooling3D", (2, 3, 2, 2), "channels_first"),
])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(type_name, shape, fmt, keepdims):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, *shape))
    axes = tuple(range(2, x.ndim)) if fmt == "channels_first" else tuple(range(1, x.ndim - 1))
    op = np.max if "Max" in type_name else np.mean
    want = op(x, axis=axes, keepdims=keepdims)
    built = build_layer({"type": type_name, "data_format": fmt, "keepdims": keepdims}, shape)
    y, cache = built.layer.forward({}, x)
    assert y.shape[1:] == tuple(built.output_shape)
    np.testing.assert_allclose(y, want)
    dy = rng.standard_normal(y.shape)
    dx, _ = built.layer.backward({}, dy, cache)
    g = dy.reshape(want.shape if keepdims else op(x, axis=axes, keepdims=True).shape)
    if "Max" in type_name:
        want_dx = (x == np.max(x, axis=axes, keepdims=True)) * g
    else:
        want_dx = np.broadcast_to(g / math.prod(x.shape[a] for a in axes), x.shape)
    np.testing.assert_allclose(dx, want_dx)


def test_masked_global_average_1d():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 2))
    mask = np.array([[1, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    built = build_layer({"type": "GlobalAveragePooling1D"}, (4, 2))
    y, cache = built.layer.forward({}, x, mask=mask)
    np.testing.assert_allclose(y[0], x[0, [0, 1, 3]].mean(axis=0))
    np.testing.assert_allclose(y[1], x[1, 0])
    np.testing.assert_allclose(y[2], 0.0)  # every step masked: 0 rather than Keras' NaN
    assert built.layer.compute_mask(x, mask) is None
    check_layer_gradients(built, x, mask=mask)
    # channels_first: x (B, C, T) with the same (B, T) mask
    cf = build_layer({"type": "GlobalAveragePooling1D", "data_format": "channels_first"}, (2, 4))
    y2, _ = cf.layer.forward({}, np.ascontiguousarray(np.moveaxis(x, 1, 2)), mask=mask)
    np.testing.assert_allclose(y2, y)


def test_pooling_drops_masks():
    built = build_layer({"type": "MaxPooling1D"}, (4, 2))
    assert built.layer.compute_mask(None, np.ones((1, 4), bool)) is None
    assert build_layer({"type": "GlobalMaxPooling1D"}, (4, 2)).layer.compute_mask(None, np.ones((1, 4), bool)) is None
