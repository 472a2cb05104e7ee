"""Conv1D, Conv2D and Conv3D: im2col (or direct windows) and one GEMM per group."""

from __future__ import annotations

from .._numpy import np
from ..base import Example, ParamSpec, register
from .base_conv import _Cache, _ConvBase, _make_config


class _Conv(_ConvBase):
    """Plain (optionally grouped) convolution: direct kernels when a window holds few values, else im2col + GEMM."""

    def param_specs(self, input_shape):
        c = self.config
        _, chans = self._split(input_shape)
        specs = [ParamSpec("kernel", (*c.kernel_size, chans // c.groups, c.filters), c.kernel_initializer,
                           regularizer=c.kernel_regularizer, constraint=c.kernel_constraint)]
        if c.use_bias:
            specs.append(ParamSpec("bias", (c.filters,), c.bias_initializer, regularizer=c.bias_regularizer,
                                   constraint=c.bias_constraint))
        return specs

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ...kernels import conv as K

        c = self.config
        xl = self._to_last(x)
        geo = self._geometry(xl.shape[1:-1])
        x5 = xl.reshape((xl.shape[0], *geo.inp, xl.shape[-1]))
        kernel = params["kernel"]
        bias = self._bias(params, x.dtype)
        taps = geo.k[0] * geo.k[1] * geo.k[2]
        cols = None
        if K.use_direct(taps, x5.shape[-1], c.groups):
            w3 = np.ascontiguousarray(kernel.reshape(taps, x5.shape[-1], c.filters), dtype=x.dtype)
            y2d, z_keep = K.direct_conv(x5, w3, bias, geo, c.activation)
        else:
            w2d = np.ascontiguousarray(kernel.reshape(-1, c.filters), dtype=x.dtype)
            y2d, z_keep, cols = K.gemm_conv_forward(x5, w2d, bias, geo, c.groups, c.activation,
                                                    self._buffers(workspace), keep=training)
        y = y2d.reshape((xl.shape[0], *geo.out[3 - self.rank:], c.filters))
        return self._from_last(y), _Cache(x5=x5, cols=cols, y2d=y2d, z2d=z_keep, geo=geo, in_shape=xl.shape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ...kernels import conv as K

        c = self.config
        geo = cache.geo
        x5 = cache.x5
        kernel = params["kernel"]
        dy2d = self._to_last(dy).reshape(-1, c.filters)
        w2d = np.ascontiguousarray(kernel.reshape(-1, c.filters), dtype=dy2d.dtype)
        taps = geo.k[0] * geo.k[1] * geo.k[2]
        pool = self._buffers(workspace)
        cols, cache.cols = cache.cols, None  # a second backward on this cache rebuilds the columns
        if K.use_direct(taps, x5.shape[-1], c.groups):
            dw, db, dx5 = K.direct_conv_backward(x5, dy2d, cache.y2d, cache.z2d, w2d, geo, c.activation,
                                                 need_dx, pool)
        elif c.activation == "relu":  # relu derivative and bias gradient fused into the chunks
            dw, dx5, db = K.gemm_conv_backward(x5, np.ascontiguousarray(dy2d), w2d, geo, c.groups, pool, cols,
                                               need_dx, relu_y2d=cache.y2d)
            db = db if c.use_bias else None
        else:
            dz2d, db = K.activation_backward(dy2d, cache.y2d, cache.z2d, c.activation, c.use_bias, x5.shape[0])
            dw, dx5, _ = K.gemm_conv_backward(x5, dz2d, w2d, geo, c.groups, pool, cols, need_dx)
        grads = {**self._kernel_grad(params, "kernel", dw, out), **self._bias_grad(params, db, out)}
        dx = self._from_last(dx5.reshape(cache.in_shape)) if need_dx else None
        return dx, grads


@register
class Conv1D(_Conv):
    """1D convolution (cross-correlation) over steps: input (steps, channels) -> (new_steps, filters).
    padding valid / same (TF placement) / causal (left padding only, for autoregressive models); dilation_rate for
    atrous convolution; groups for grouped convolution. Kernel (kernel_size, channels/groups, filters)
    (Keras 1 stored (k, 1, in, f)). Keras 1 Convolution1D / AtrousConvolution1D, including input_dim /
    input_length. Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv1D"
    rank = 1
    aliases = {"Convolution1D": {}, "AtrousConvolution1D": {}}
    Config = _make_config("Conv1D", 1, "conv", causal=True, groups=True, input_dim=True)
    examples = [
        Example({"type": "Convolution1D", "nb_filter": 64, "filter_length": 3, "border_mode": "same",
                 "input_dim": 32, "input_length": 10}, (10, 32), output_shape=(10, 64), params=6208,
                gradcheck=False, note="reference figure"),
        Example({"type": "Convolution1D", "nb_filter": 64, "filter_length": 3, "subsample_length": 2}, (10, 32),
                output_shape=(4, 64), params=6208, gradcheck=False, note="reference figure"),
        Example({"type": "AtrousConvolution1D", "nb_filter": 16, "filter_length": 3, "atrous_rate": 2}, (20, 8),
                output_shape=(16, 16), params=400, gradcheck=False, note="reference figure"),
        Example({"type": "Conv1D", "filters": 4, "kernel_size": 2, "dilation_rate": 2, "padding": "causal",
                 "activation": "tanh"}, (7, 3), output_shape=(7, 4), params=28),
        Example({"type": "Conv1D", "filters": 6, "kernel_size": 4, "strides": 2, "padding": "same", "groups": 2},
                (9, 4), output_shape=(5, 6), params=4 * 2 * 6 + 6),
        Example({"type": "Conv1D", "filters": 3, "kernel_size": 3, "data_format": "channels_first",
                 "use_bias": False, "activation": "sigmoid"}, (2, 8), output_shape=(3, 6), params=18),
    ]


@register
class Conv2D(_Conv):
    """2D convolution (cross-correlation) over images: input (rows, cols, channels) -> (new_rows, new_cols,
    filters) (channels first with data_format channels_first / Keras 1 dim_ordering th). padding valid or same
    (TF placement: odd padding at the bottom/right); dilation_rate for atrous convolution; groups for grouped
    convolution. Kernel (kh, kw, channels/groups, filters). Keras 1 Convolution2D / AtrousConvolution2D.
    Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv2D"
    rank = 2
    aliases = {"Convolution2D": {}, "AtrousConvolution2D": {}}
    Config = _make_config("Conv2D", 2, "conv", groups=True)
    examples = [
        Example({"type": "Convolution2D", "nb_filter": 32, "nb_row": 3, "nb_col": 3, "activation": "relu"},
                (28, 28, 1), output_shape=(26, 26, 32), params=320, gradcheck=False, note="reference figure"),
        Example({"type": "Convolution2D", "nb_filter": 64, "nb_row": 3, "nb_col": 3, "border_mode": "same",
                 "dim_ordering": "th"}, (3, 32, 32), output_shape=(64, 32, 32), params=1792, gradcheck=False,
                note="reference figure"),
        Example({"type": "AtrousConvolution2D", "nb_filter": 16, "nb_row": 3, "nb_col": 3, "atrous_rate": [2, 2]},
                (32, 32, 3), output_shape=(28, 28, 16), params=448, gradcheck=False, note="reference figure"),
        Example({"type": "Convolution2D", "nb_filter": 4, "nb_row": 3, "nb_col": 3, "border_mode": "same",
                 "subsample": [2, 2]}, (7, 7, 3), output_shape=(4, 4, 4), params=112),
        Example({"type": "Convolution2D", "nb_filter": 4, "nb_row": 3, "nb_col": 3, "subsample": [2, 2]},
                (7, 7, 3), output_shape=(3, 3, 4), params=112),
        Example({"type": "Conv2D", "filters": 3, "kernel_size": [2, 4], "padding": "same", "dilation_rate": 2,
                 "activation": "tanh"}, (5, 6, 2), output_shape=(5, 6, 3), params=51),
        Example({"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": [2, 1], "groups": 2,
                 "data_format": "channels_first", "use_bias": False}, (4, 5, 6), output_shape=(4, 2, 4),
                params=72),
    ]


@register
class Conv3D(_Conv):
    """3D convolution (cross-correlation) over volumes: input (dim1, dim2, dim3, channels) -> (d1', d2', d3',
    filters) (channels first with channels_first / th). padding valid / same (TF placement), dilation_rate,
    groups. Kernel (k1, k2, k3, channels/groups, filters). Keras 1 Convolution3D (kernel_dim1..3).
    Bias per output channel, then the activation. Masks are dropped."""

    type = "Conv3D"
    rank = 3
    aliases = {"Convolution3D": {}}
    Config = _make_config("Conv3D", 3, "conv", groups=True)
    examples = [
        Example({"type": "Convolution3D", "nb_filter": 8, "kernel_dim1": 3, "kernel_dim2": 3, "kernel_dim3": 3},
                (16, 16, 16, 1), output_shape=(14, 14, 14, 8), params=224, gradcheck=False, note="reference figure"),
        Example({"type": "Conv3D", "filters": 2, "kernel_size": [2, 3, 2], "strides": 2, "padding": "same",
                 "activation": "tanh"}, (3, 5, 4, 2), output_shape=(2, 3, 2, 2), params=50),
        Example({"type": "Conv3D", "filters": 2, "kernel_size": 2, "dilation_rate": [1, 2, 1], "groups": 2,
                 "data_format": "channels_first"}, (2, 3, 4, 3), output_shape=(2, 2, 2, 2), params=18),
    ]
