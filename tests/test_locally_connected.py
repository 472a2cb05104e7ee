"""LocallyConnected1D/2D against explicit per-position loops (tiny shapes)."""

import numpy as np
import pytest

from layerforge.errors import ConfigError, ShapeError
from layerforge.testing import build_layer, check_layer_gradients


def _ref_lc1d(x, kernel, bias, k, s):
    B, L, C = x.shape
    P, _, f = kernel.shape
    y = np.zeros((B, P, f))
    for b in range(B):
        for i in range(P):
            patch = x[b, i * s:i * s + k, :].reshape(-1)  # step-major, then feature
            y[b, i] = patch @ kernel[i] + (bias[i] if bias is not None else 0)
    return y


def _ref_lc2d(x, kernel, bias, k, s, fmt):
    if fmt == "channels_first":
        B, C, H, W = x.shape
    else:
        B, H, W, C = x.shape
    Ho, Wo = (H - k[0]) // s[0] + 1, (W - k[1]) // s[1] + 1
    f = kernel.shape[-1]
    y = np.zeros((B, Ho, Wo, f))
    for b in range(B):
        for i in range(Ho):
            for j in range(Wo):
                rows, cols = slice(i * s[0], i * s[0] + k[0]), slice(j * s[1], j * s[1] + k[1])
                if fmt == "channels_first":
                    patch = x[b, :, rows, cols].reshape(-1)  # (channel, row, col)
                else:
                    patch = x[b, rows, cols, :].reshape(-1)  # (row, col, channel)
                y[b, i, j] = patch @ kernel[i * Wo + j]
    if fmt == "channels_first":
        y = y.transpose(0, 3, 1, 2)
        if bias is not None:
            y = y + bias.reshape(f, Ho, Wo)  # Keras 1/2: the (H', W', f) buffer read as (f, H', W')
    elif bias is not None:
        y = y + bias
    return y


@pytest.mark.parametrize("k,s,L", [(3, 1, 7), (2, 3, 8), (3, 2, 10)])
def test_lc1d_matches_loop(k, s, L):
    rng = np.random.default_rng(0)
    built = build_layer({"type": "LocallyConnected1D", "filters": 3, "kernel_size": k, "strides": s,
                         "bias_initializer": "random_normal"}, (L, 2))
    p = built.params
    x = rng.standard_normal((2, L, 2))
    y, cache = built.layer.forward(p, x)
    np.testing.assert_allclose(y, _ref_lc1d(x, p["kernel"], p["bias"], k, s), rtol=1e-12, atol=1e-12)
    assert y.shape[1:] == built.output_shape
    check_layer_gradients(built, x)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("k,s,use_bias", [((2, 3), (1, 2), True), ((3, 2), (2, 1), False), ((1, 1), (2, 3), True)])
def test_lc2d_matches_loop(fmt, k, s, use_bias):
    rng = np.random.default_rng(1)
    shape = (2, 7, 6) if fmt == "channels_first" else (7, 6, 2)
    built = build_layer({"type": "LocallyConnected2D", "filters": 3, "kernel_size": list(k), "strides": list(s),
                         "data_format": fmt, "use_bias": use_bias, "activation": "tanh",
                         "bias_initializer": "random_normal"}, shape)
    p = built.params
    x = rng.standard_normal((2, *shape))
    y, cache = built.layer.forward(p, x)
    want = np.tanh(_ref_lc2d(x, p["kernel"], p.get("bias"), k, s, fmt))
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert y.shape[1:] == built.output_shape
    check_layer_gradients(built, x)


def test_reference_param_counts_and_layout():
    b = build_layer({"type": "LocallyConnected2D", "filters": 64, "kernel_size": 3}, (32, 32, 3), dtype=np.float32)
    assert b.output_shape == (30, 30, 64)
    assert b.params["kernel"].shape == (900, 27, 64) and b.params["bias"].shape == (30, 30, 64)
    assert sum(v.size for v in b.params.values()) == 1_612_800
    b = build_layer({"type": "LocallyConnected1D", "filters": 64, "kernel_size": 3}, (10, 32))
    assert b.params["kernel"].shape == (8, 96, 64) and b.params["bias"].shape == (8, 64)
    assert sum(v.size for v in b.params.values()) == 49_664
    b = build_layer({"type": "LocallyConnected1D", "nb_filter": 8, "filter_length": 3, "subsample_length": 2},
                    (10, 4))
    assert b.output_shape == (4, 8) and sum(v.size for v in b.params.values()) == 416
    spec = b.layer.param_specs((10, 4))[0]
    assert spec.fan == (12, 8)  # one position's matrix, so glorot scales like a conv's


def test_keras1_names_give_the_modern_config():
    old = build_layer({"type": "LocallyConnected2D", "nb_filter": 4, "nb_row": 2, "nb_col": 3, "subsample": [2, 1],
                       "border_mode": "valid", "dim_ordering": "th", "init": "he_normal", "bias": False,
                       "W_regularizer": {"l2": 0.01}, "W_constraint": "max_norm"}, (2, 5, 6))
    new = build_layer({"type": "LocallyConnected2D", "filters": 4, "kernel_size": [2, 3], "strides": [2, 1],
                       "padding": "valid", "data_format": "channels_first", "kernel_initializer": "he_normal",
                       "use_bias": False, "kernel_regularizer": {"l2": 0.01}, "kernel_constraint": "max_norm"},
                      (2, 5, 6))
    assert old.layer.config == new.layer.config
    one = build_layer({"type": "LocallyConnected1D", "nb_filter": 2, "filter_length": 3, "input_dim": 3,
                       "input_length": 7}, (7, 3))
    assert one.layer.config.input_shape == [7, 3]
    assert one.layer.config.kernel_size == (3,)


def test_errors():
    with pytest.raises(ConfigError, match="only padding 'valid'"):
        build_layer({"type": "LocallyConnected2D", "filters": 2, "kernel_size": 3, "padding": "same"}, (5, 5, 1))
    with pytest.raises(ConfigError, match="only padding 'valid'"):
        build_layer({"type": "LocallyConnected1D", "filters": 2, "kernel_size": 3, "border_mode": "same"}, (5, 1))
    with pytest.raises(ConfigError, match="nb_row and nb_col go together"):
        build_layer({"type": "LocallyConnected2D", "filters": 2, "nb_row": 3}, (5, 5, 1))
    with pytest.raises(ShapeError, match="known size"):
        build_layer({"type": "LocallyConnected1D", "filters": 2, "kernel_size": 3}, (None, 4))
    with pytest.raises(ShapeError, match="shorter than the kernel size"):
        build_layer({"type": "LocallyConnected2D", "filters": 2, "kernel_size": 3}, (5, 2, 1))
    with pytest.raises(ShapeError, match="expected 3 axes"):
        build_layer({"type": "LocallyConnected2D", "filters": 2, "kernel_size": 3}, (5, 5))


def test_float32_stays_float32():
    b = build_layer({"type": "LocallyConnected2D", "filters": 2, "kernel_size": 2, "data_format": "channels_first"},
                    (1, 3, 4), dtype=np.float32)
    x = np.ones((2, 1, 3, 4), np.float32)
    y, cache = b.layer.forward(b.params, x)
    dx, grads = b.layer.backward(b.params, np.ones_like(y), cache)
    assert y.dtype == dx.dtype == grads["kernel"].dtype == grads["bias"].dtype == np.float32
