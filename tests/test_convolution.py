"""Convolution layers against plain-numpy loop references, Keras 1 names, shape rules and errors."""

import itertools

import numpy as np
import pytest

from layerforge.config.model import parse_layer
from layerforge.config.source import SourceMap
from layerforge.errors import ShapeError
from layerforge.testing import build_layer, check_layer_gradients

# ----------------------------------------------------------------------------- references (TF semantics)


def ref_pads(length, k, s, d, padding):
    """(output length, padding before) as TensorFlow computes them."""
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        return (length - k_eff) // s + 1, 0
    if padding == "causal":
        return (length - 1) // s + 1, k_eff - 1
    out = -(-length // s)
    return out, max((out - 1) * s + k_eff - length, 0) // 2


def ref_conv(x, w, strides, dilation, padding, groups=1):
    """Cross-correlation, channels_last x (B, *S, C), kernel (*k, C/groups, f): loops over outputs and taps."""
    spatial, ks = x.shape[1:-1], w.shape[:-2]
    cg, f = w.shape[-2:]
    fg = f // groups
    geo = [ref_pads(n, k, s, d, padding) for n, k, s, d in zip(spatial, ks, strides, dilation, strict=True)]
    out_shape = tuple(g[0] for g in geo)
    y = np.zeros((x.shape[0], *out_shape, f))
    for o in itertools.product(*(range(n) for n in out_shape)):
        for t in itertools.product(*(range(k) for k in ks)):
            pos = [o[a] * strides[a] + t[a] * dilation[a] - geo[a][1] for a in range(len(spatial))]
            if any(p < 0 or p >= n for p, n in zip(pos, spatial, strict=True)):
                continue
            xv = x[(slice(None), *pos)]
            for g in range(groups):
                y[(slice(None), *o, slice(g * fg, (g + 1) * fg))] += \
                    xv[:, g * cg:(g + 1) * cg] @ w[t][:, g * fg:(g + 1) * fg]
    return y


def ref_conv_transpose(x, w, strides, dilation, padding, out_shape):
    """Transposed convolution as TF defines it for a given output size: every input pixel scatters
    x @ W[t]^T to position i*s + t*d - pad, pad being the forward conv's TF padding for that size."""
    spatial, ks = x.shape[1:-1], w.shape[:-2]
    f = w.shape[-2]
    pads = []
    for n_out, k, s, d in zip(out_shape, ks, strides, dilation, strict=True):
        k_eff = (k - 1) * d + 1
        back = n_out
        if padding == "same":
            pads.append(max((-(-back // s) - 1) * s + k_eff - back, 0) // 2)
        else:
            pads.append(0)
    y = np.zeros((x.shape[0], *out_shape, f))
    for i in itertools.product(*(range(n) for n in spatial)):
        for t in itertools.product(*(range(k) for k in ks)):
            pos = [i[a] * strides[a] + t[a] * dilation[a] - pads[a] for a in range(len(spatial))]
            if any(p < 0 or p >= n for p, n in zip(pos, out_shape, strict=True)):
                continue
            y[(slice(None), *pos)] += x[(slice(None), *i)] @ w[t].T
    return y


def ref_depthwise(x, w, strides, dilation, padding):
    """Depthwise: output channel c*dm + m = input channel c correlated with w[..., c, m]."""
    c, dm = w.shape[-2:]
    blocks = [ref_conv(x[..., ci:ci + 1], w[..., ci:ci + 1, :], strides, dilation, padding) for ci in range(c)]
    return np.concatenate(blocks, axis=-1)


# ----------------------------------------------------------------------------- helpers

RNG = np.random.default_rng(7)


def _build(config, input_shape):
    built = build_layer(config, input_shape, dtype=np.float64, seed=3)
    for name, value in built.params.items():  # random biases too (the initializer gives zeros)
        built.params[name] = RNG.standard_normal(value.shape)
    return built


def _last(x, first):
    return np.moveaxis(x, 1, -1) if first else x


def _run(built, x, training=False):
    y, _ = built.layer.forward(built.params, x, training=training, rng=None)
    return y


CONV_CASES = [
    # type, config extras, input shape (in the layer's data_format)
    ("Conv1D", {"filters": 3, "kernel_size": 3, "strides": 2}, (9, 2)),
    ("Conv1D", {"filters": 2, "kernel_size": 4, "padding": "same"}, (7, 3)),
    ("Conv1D", {"filters": 2, "kernel_size": 3, "padding": "causal", "dilation_rate": 2}, (8, 2)),
    ("Conv1D", {"filters": 4, "kernel_size": 2, "padding": "causal", "strides": 3}, (7, 2)),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "groups": 2, "data_format": "channels_first"}, (4, 6)),
    ("Conv2D", {"filters": 3, "kernel_size": [3, 2], "strides": [2, 1]}, (7, 5, 2)),
    ("Conv2D", {"filters": 2, "kernel_size": 4, "padding": "same", "strides": 3}, (7, 8, 3)),
    ("Conv2D", {"filters": 2, "kernel_size": [2, 3], "padding": "same", "dilation_rate": [3, 2]}, (6, 7, 1)),
    ("Conv2D", {"filters": 6, "kernel_size": 3, "groups": 3, "padding": "same",
                "data_format": "channels_first"}, (3, 5, 4)),
    ("Conv3D", {"filters": 2, "kernel_size": [2, 3, 2], "strides": [1, 2, 2], "padding": "same"}, (3, 5, 4, 2)),
    ("Conv3D", {"filters": 4, "kernel_size": 2, "dilation_rate": 2, "groups": 2,
                "data_format": "channels_first"}, (2, 4, 3, 5)),
]


@pytest.fixture(params=["direct", "im2col", "im2col-chunked"])
def conv_path(request, monkeypatch):
    """Run a test with the direct kernels, with im2col + GEMM on the whole batch and with im2col + GEMM one
    sample at a time (whatever the window size)."""
    from layerforge.kernels import conv as K

    monkeypatch.setattr(K, "DIRECT_MAX_WINDOW", 10**6 if request.param == "direct" else 0)
    if request.param == "im2col-chunked":
        monkeypatch.setattr(K, "CHUNK_BYTES", 1)
    return request.param


@pytest.mark.parametrize("type_name,extra,shape", CONV_CASES, ids=[f"{t}-{i}" for i, (t, _, _) in
                                                                   enumerate(CONV_CASES)])
def test_conv_forward_matches_loop_reference(type_name, extra, shape, conv_path):
    cfg = {"type": type_name, **extra}
    built = _build(cfg, shape)
    c = built.layer.config
    first = c.data_format == "channels_first"
    x = RNG.standard_normal((2, *shape))
    y = _run(built, x)
    want = ref_conv(_last(x, first), built.params["kernel"], c.strides, c.dilation_rate, c.padding, c.groups)
    want = want + built.params["bias"]
    if first:
        want = np.moveaxis(want, -1, 1)
    assert y.shape == (2, *built.output_shape) == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cfg,shape", [
    ({"type": "Conv2D", "filters": 3, "kernel_size": [3, 2], "strides": [2, 1], "padding": "same",
      "activation": "relu", "bias_initializer": {"type": "constant", "value": 0.3}}, (5, 4, 2)),
    ({"type": "Conv1D", "filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "causal",
      "activation": "tanh"}, (7, 3)),
    ({"type": "Conv3D", "filters": 2, "kernel_size": 2, "padding": "same", "data_format": "channels_first",
      "use_bias": False}, (2, 3, 2, 3)),
    ({"type": "Conv2D", "filters": 4, "kernel_size": 2, "groups": 2, "activation": "relu",
      "bias_initializer": {"type": "constant", "value": 0.2}}, (4, 3, 4)),
    ({"type": "Conv2DTranspose", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same",
      "output_padding": 1, "activation": "relu", "bias_initializer": {"type": "constant", "value": 0.3}},
     (2, 3, 2)),
    ({"type": "SeparableConv2D", "filters": 2, "kernel_size": 2, "depth_multiplier": 2, "padding": "same",
      "activation": "relu", "bias_initializer": {"type": "constant", "value": 0.3}}, (3, 3, 2)),
    ({"type": "DepthwiseConv1D", "kernel_size": 3, "depth_multiplier": 2, "strides": 2, "padding": "same",
      "activation": "tanh"}, (5, 2)),
])
def test_gradients_on_every_path(cfg, shape, conv_path):
    built = build_layer(cfg, shape, seed=5)
    x = np.random.default_rng(11).standard_normal((2, *shape))
    check_layer_gradients(built, x)
    # without an input gradient the weight gradients do not change
    y, cache = built.layer.forward(built.params, x, training=True)
    dy = np.random.default_rng(12).standard_normal(y.shape)
    dx, grads = built.layer.backward(built.params, dy, cache)
    _, cache = built.layer.forward(built.params, x, training=True)
    none, grads2 = built.layer.backward(built.params, dy, cache, need_dx=False)
    assert none is None and dx.shape == x.shape
    for k in grads:
        np.testing.assert_allclose(grads[k], grads2[k], rtol=1e-12, atol=1e-12)


def test_same_padding_puts_the_odd_pixel_at_the_end_and_causal_pads_left():
    x = np.arange(1.0, 6.0).reshape(1, 5, 1)
    for padding, want in (("same", [3, 5, 7, 9, 5]), ("causal", [1, 3, 5, 7, 9]), ("valid", [3, 5, 7, 9])):
        built = build_layer({"type": "Conv1D", "filters": 1, "kernel_size": 2, "padding": padding,
                             "kernel_initializer": "ones"}, (5, 1))
        np.testing.assert_allclose(_run(built, x)[0, :, 0], want)
    # kernel 4, same: 3 padding cells, 1 before and 2 after (TF puts the odd one at the end)
    x2 = np.arange(1.0, 5.0).reshape(1, 4, 1)
    built = build_layer({"type": "Conv1D", "filters": 1, "kernel_size": 4, "padding": "same",
                         "kernel_initializer": "ones"}, (4, 1))
    np.testing.assert_allclose(_run(built, x2)[0, :, 0], [1 + 2 + 3, 1 + 2 + 3 + 4, 2 + 3 + 4, 3 + 4])


TRANSPOSE_CASES = [
    # type, extras, input shape, expected output spatial size (Keras 3 rule)
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2}, (4, 3), (9,)),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 4, "strides": 3, "padding": "same"}, (3, 2), (9,)),
    ("Conv1DTranspose", {"filters": 1, "kernel_size": 3, "strides": 3, "output_padding": 2}, (3, 2), (11,)),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same",
                         "output_padding": [1, 0]}, (3, 4, 2), (6, 7)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [2, 3], "strides": [3, 2], "padding": "same"},
     (3, 3, 2), (9, 6)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [2, 3], "dilation_rate": 2, "data_format": "channels_first"},
     (3, 3, 2), (5, 6)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": 3}, (3, 3, 1), (9, 9)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same",
                         "output_shape": [None, 5, 6, 2]}, (3, 3, 2), (5, 6)),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": [3, 2, 2], "strides": [2, 1, 2], "padding": "same"},
     (2, 3, 2, 2), (4, 3, 4)),
]


@pytest.mark.parametrize("type_name,extra,shape,out", TRANSPOSE_CASES,
                         ids=[f"{t}-{i}" for i, (t, *_) in enumerate(TRANSPOSE_CASES)])
def test_transpose_forward_matches_scatter_reference(type_name, extra, shape, out, conv_path):
    built = _build({"type": type_name, **extra}, shape)
    c = built.layer.config
    first = c.data_format == "channels_first"
    x = RNG.standard_normal((2, *shape))
    y = _run(built, x)
    want = ref_conv_transpose(_last(x, first), built.params["kernel"], c.strides, c.dilation_rate, c.padding, out)
    want = want + built.params["bias"]
    if first:
        want = np.moveaxis(want, -1, 1)
    assert y.shape == (2, *built.output_shape) == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)


def test_conv_input_gradient_is_the_transposed_convolution(conv_path):
    """Conv2D backward-data and Conv2DTranspose forward are the same operator (shared kernels)."""
    conv = _build({"type": "Conv2D", "filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, (7, 6, 2))
    deconv = _build({"type": "Conv2DTranspose", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same",
                     "output_padding": [0, 1], "use_bias": False}, (4, 3, 3))
    deconv.params["kernel"] = conv.params["kernel"]
    x = RNG.standard_normal((2, 7, 6, 2))
    _, cache = conv.layer.forward(conv.params, x, training=True)
    dy = RNG.standard_normal((2, 4, 3, 3))
    dx, _ = conv.layer.backward(conv.params, dy, cache)
    np.testing.assert_allclose(dx, _run(deconv, dy), rtol=1e-10, atol=1e-12)


DEPTHWISE_CASES = [
    ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2, "strides": 2, "padding": "same"}, (5, 6, 2)),
    ("DepthwiseConv2D", {"kernel_size": [2, 3], "dilation_rate": 2, "data_format": "channels_first"}, (3, 6, 7)),
    ("DepthwiseConv1D", {"kernel_size": 4, "depth_multiplier": 3, "padding": "same"}, (7, 2)),
    ("SeparableConv2D", {"filters": 3, "kernel_size": [3, 2], "depth_multiplier": 2, "padding": "same"}, (5, 4, 3)),
    ("SeparableConv2D", {"filters": 2, "kernel_size": 2, "strides": 2, "data_format": "channels_first"}, (2, 5, 5)),
    ("SeparableConv1D", {"filters": 4, "kernel_size": 3, "dilation_rate": 2}, (9, 2)),
]


@pytest.mark.parametrize("type_name,extra,shape", DEPTHWISE_CASES,
                         ids=[f"{t}-{i}" for i, (t, *_) in enumerate(DEPTHWISE_CASES)])
def test_depthwise_and_separable_match_reference(type_name, extra, shape):
    built = _build({"type": type_name, **extra}, shape)
    c = built.layer.config
    first = c.data_format == "channels_first"
    x = RNG.standard_normal((2, *shape))
    y = _run(built, x)
    if type_name.startswith("Separable"):
        mid = ref_depthwise(_last(x, first), built.params["depthwise_kernel"], c.strides, c.dilation_rate, c.padding)
        pw = built.params["pointwise_kernel"]
        want = mid @ pw.reshape(pw.shape[-2:])
    else:
        want = ref_depthwise(_last(x, first), built.params["kernel"], c.strides, c.dilation_rate, c.padding)
    if c.use_bias:
        want = want + built.params["bias"]
    if first:
        want = np.moveaxis(want, -1, 1)
    assert y.shape == (2, *built.output_shape) == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)


def test_float32_relu_path_and_backward_after_inference_forward(conv_path):
    built = build_layer({"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"}, (6, 5, 3),
                        dtype=np.float32)
    x = RNG.standard_normal((3, 6, 5, 3)).astype(np.float32)
    y, cache_inf = built.layer.forward(built.params, x, training=False)
    want = np.maximum(ref_conv(x.astype(np.float64), built.params["kernel"].astype(np.float64), (1, 1), (1, 1),
                               "valid"), 0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    dy = RNG.standard_normal(y.shape).astype(np.float32)
    y2, cache_train = built.layer.forward(built.params, x, training=True)
    dx_a, g_a = built.layer.backward(built.params, dy, cache_train)
    dx_b, g_b = built.layer.backward(built.params, dy, cache_inf)  # columns rebuilt from the cached input
    assert dx_a.dtype == np.float32 and g_a["kernel"].dtype == np.float32
    np.testing.assert_allclose(dx_a, dx_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_a["kernel"], g_b["kernel"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_a["bias"], (dy * (y2 > 0)).sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)


def test_interleaved_forwards_keep_their_own_buffers(conv_path):
    built = _build({"type": "Conv2D", "filters": 2, "kernel_size": 2}, (4, 4, 2))
    x1, x2 = RNG.standard_normal((2, 2, 4, 4, 2))
    dy = RNG.standard_normal((2, 3, 3, 2))
    _, c1 = built.layer.forward(built.params, x1, training=True)
    _, c2 = built.layer.forward(built.params, x2, training=True)
    _, g2 = built.layer.backward(built.params, dy, c2)
    _, c3 = built.layer.forward(built.params, x2, training=True)  # may reuse c2's buffer, not c1's
    _, g1 = built.layer.backward(built.params, dy, c1)
    _, fresh = built.layer.forward(built.params, x1, training=True)
    np.testing.assert_allclose(g1["kernel"], built.layer.backward(built.params, dy, fresh)[1]["kernel"])


def test_variable_lengths():
    built = _build({"type": "Conv1D", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"}, (None, 3))
    assert built.output_shape == (None, 2)
    for steps in (5, 8):
        x = RNG.standard_normal((1, steps, 3))
        want = ref_conv(x, built.params["kernel"], (2,), (1,), "same") + built.params["bias"]
        np.testing.assert_allclose(_run(built, x), want, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- Keras 1 names

def _cfg(raw):
    problems = []
    cfg = parse_layer(dict(raw), (), SourceMap(), problems)
    assert not problems, [p.render_plain() for p in problems]
    return cfg.model_dump()


def _problems(raw):
    problems = []
    parse_layer(dict(raw), (), SourceMap(), problems)
    assert problems, f"{raw} was accepted"
    return " ".join(p.render_plain() for p in problems)


@pytest.mark.parametrize("old,new", [
    ({"type": "Convolution2D", "nb_filter": 8, "nb_row": 3, "nb_col": 2, "border_mode": "same", "subsample": [2, 1],
      "dim_ordering": "th", "init": "he_normal", "W_regularizer": {"l2": 0.01}, "b_constraint": "non_neg",
      "bias": False, "activation": "relu"},
     {"type": "Conv2D", "filters": 8, "kernel_size": [3, 2], "padding": "same", "strides": [2, 1],
      "data_format": "channels_first", "kernel_initializer": "he_normal", "kernel_regularizer": {"l2": 0.01},
      "bias_constraint": "non_neg", "use_bias": False, "activation": "relu"}),
    ({"type": "AtrousConvolution2D", "nb_filter": 4, "nb_row": 3, "nb_col": 3, "atrous_rate": [2, 2]},
     {"type": "Conv2D", "filters": 4, "kernel_size": 3, "dilation_rate": 2}),
    ({"type": "Convolution1D", "nb_filter": 5, "filter_length": 3, "subsample_length": 2, "input_dim": 7,
      "input_length": 10},
     {"type": "Conv1D", "filters": 5, "kernel_size": 3, "strides": 2, "input_shape": [10, 7]}),
    ({"type": "AtrousConvolution1D", "nb_filter": 5, "filter_length": 3, "atrous_rate": 4},
     {"type": "Conv1D", "filters": 5, "kernel_size": 3, "dilation_rate": 4}),
    ({"type": "Convolution3D", "nb_filter": 2, "kernel_dim1": 1, "kernel_dim2": 2, "kernel_dim3": 3,
      "subsample": [1, 1, 2]},
     {"type": "Conv3D", "filters": 2, "kernel_size": [1, 2, 3], "strides": [1, 1, 2]}),
    ({"type": "SeparableConvolution2D", "nb_filter": 4, "nb_row": 3, "nb_col": 3, "init": "he_uniform",
      "depth_multiplier": 2, "b_regularizer": "l2"},
     {"type": "SeparableConv2D", "filters": 4, "kernel_size": 3, "depthwise_initializer": "he_uniform",
      "pointwise_initializer": "he_uniform", "depth_multiplier": 2, "bias_regularizer": {"l1": 0.0, "l2": 0.01}}),
    ({"type": "Deconvolution2D", "nb_filter": 3, "nb_row": 3, "nb_col": 3, "output_shape": [None, 14, 14, 3]},
     {"type": "Conv2DTranspose", "filters": 3, "kernel_size": 3, "output_shape": [None, 14, 14, 3]}),
    ({"type": "Deconv2D", "filters": 3, "kernel_size": 3}, {"type": "Conv2DTranspose", "filters": 3,
                                                            "kernel_size": 3}),
])
def test_keras1_names_give_the_modern_config(old, new):
    assert _cfg(old) == _cfg(new)


def test_config_errors():
    assert "dilation_rate" in _problems({"type": "Conv2D", "filters": 2, "kernel_size": 3, "strides": 2,
                                         "dilation_rate": 2})
    assert "ZeroPadding" in _problems({"type": "Convolution2D", "nb_filter": 2, "nb_row": 3, "nb_col": 3,
                                       "border_mode": "full"})
    assert "causal" in _problems({"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "causal"})
    assert "groups" in _problems({"type": "Conv2D", "filters": 5, "kernel_size": 3, "groups": 2})
    assert "nb_col" in _problems({"type": "Convolution2D", "nb_filter": 2, "nb_row": 3})
    assert "output_padding" in _problems({"type": "Conv2DTranspose", "filters": 2, "kernel_size": 3, "strides": 2,
                                          "output_padding": 2})
    assert "filters" in _problems({"type": "Deconvolution2D", "nb_filter": 3, "nb_row": 3, "nb_col": 3,
                                   "output_shape": [None, 14, 14, 4]})
    assert "batch" in _problems({"type": "Deconvolution2D", "nb_filter": 3, "nb_row": 3, "nb_col": 3,
                                 "output_shape": [14, 14, 3]})


# ----------------------------------------------------------------------------- shapes

def test_causal_shapes():
    for steps, k, s, d, want in ((10, 3, 1, 1, 10), (10, 3, 1, 4, 10), (10, 2, 3, 1, 4), (1, 5, 1, 1, 1)):
        built = build_layer({"type": "Conv1D", "filters": 2, "kernel_size": k, "strides": s, "dilation_rate": d,
                             "padding": "causal"}, (steps, 3))
        assert built.output_shape == (want, 2)


def test_deconvolution2d_output_shape_is_checked():
    base = {"type": "Deconvolution2D", "nb_filter": 3, "nb_row": 3, "nb_col": 3, "subsample": [2, 2]}
    # valid, stride 2, input 12: 25 (default) and 26 both convolve back to 12
    for rows in (25, 26):
        built = build_layer({**base, "output_shape": [None, rows, 25, 3]}, (12, 12, 3))
        assert built.output_shape == (rows, 25, 3)
        y = _run(built, RNG.standard_normal((1, 12, 12, 3)))
        assert y.shape == (1, rows, 25, 3)
    with pytest.raises(ShapeError) as err:
        build_layer({**base, "output_shape": [None, 27, 25, 3]}, (12, 12, 3))
    text = err.value.render_plain()
    assert "27" in text and "25, 26" in text and "hint" in text
    # th ordering, same padding: 24 (= 12 * 2) and 23 are possible, 22 is not
    th = {**base, "border_mode": "same", "dim_ordering": "th"}
    assert build_layer({**th, "output_shape": [None, 3, 23, 24]}, (3, 12, 12)).output_shape == (3, 23, 24)
    with pytest.raises(ShapeError, match="23, 24"):
        build_layer({**th, "output_shape": [None, 3, 22, 24]}, (3, 12, 12))


def test_shape_errors_have_hints():
    with pytest.raises(ShapeError) as err:
        build_layer({"type": "Conv2D", "filters": 2, "kernel_size": 3}, (28, 28))
    assert "Reshape" in err.value.render_plain() and "[28, 28, 1]" in err.value.render_plain()
    with pytest.raises(ShapeError) as err:
        build_layer({"type": "Conv2D", "filters": 2, "kernel_size": 5, "dilation_rate": 2}, (8, 20, 1))
    assert "padding: same" in err.value.render_plain() and "9" in err.value.render_plain()
    with pytest.raises(ShapeError, match="groups"):
        build_layer({"type": "Conv1D", "filters": 4, "kernel_size": 2, "groups": 2}, (5, 3))
    with pytest.raises(ShapeError, match="known size"):
        build_layer({"type": "Conv1D", "filters": 4, "kernel_size": 2}, (5, None))
    with pytest.raises(ShapeError, match="3D layer"):
        build_layer({"type": "Conv2D", "filters": 4, "kernel_size": 2}, (5, 5, 5, 1))


def test_param_layouts_and_flops():
    built = build_layer({"type": "Conv2DTranspose", "filters": 16, "kernel_size": 4, "strides": 2,
                         "padding": "same"}, (7, 7, 32))
    assert built.params["kernel"].shape == (4, 4, 16, 32)
    assert built.layer.flops((7, 7, 32), built.output_shape) == 49 * 16 * 32 * 16
    sep = build_layer({"type": "SeparableConv2D", "filters": 8, "kernel_size": 3, "depth_multiplier": 2},
                      (6, 6, 3))
    assert [s.name for s in sep.layer.param_specs((6, 6, 3))] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert sep.params["pointwise_kernel"].shape == (1, 1, 6, 8)
    assert sep.layer.flops((6, 6, 3), sep.output_shape) == 16 * 9 * 6 + 16 * 6 * 8
    grouped = build_layer({"type": "Conv1D", "filters": 6, "kernel_size": 3, "groups": 3}, (10, 9))
    assert grouped.params["kernel"].shape == (3, 3, 6)
    assert grouped.layer.flops((10, 9), grouped.output_shape) == 8 * 3 * 3 * 6


def test_buffer_pool_keeps_a_bounded_number_of_shapes():
    from layerforge.kernels.conv import BufferPool

    pool = BufferPool()
    for n in range(1, 41):  # e.g. inputs of 40 different sizes
        pool.give(np.empty((n, 3), np.float32))
    assert len(pool._free) == BufferPool.MAX_SHAPES
    reused = pool.take((40, 3), np.float32)
    assert reused.shape == (40, 3) and pool.take((40, 3), np.float32) is not reused  # newest kept, taken once
