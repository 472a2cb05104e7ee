"""DepthwiseConv1D and DepthwiseConv2D: one filter bank per input channel."""

from __future__ import annotations

import math

from .._numpy import np
from ..base import Example, ParamSpec, elements, register
from .base_conv import _Cache, _ConvBase, _make_config


class _Depthwise(_ConvBase):
    """Depthwise convolution (direct Numba kernels), optionally followed by a 1x1 pointwise GEMM (separable)."""

    kind = "depthwise"

    def _out_channels(self, chans):
        return chans * self.config.depth_multiplier

    def param_specs(self, input_shape):
        c = self.config
        _, chans = self._split(input_shape)
        dm = c.depth_multiplier
        specs = [ParamSpec(self._dw_name, (*c.kernel_size, chans, dm), c.depthwise_initializer,
                           regularizer=c.depthwise_regularizer, constraint=c.depthwise_constraint)]
        if self.kind == "separable":
            specs.append(ParamSpec("pointwise_kernel", (*(1,) * self.rank, chans * dm, c.filters),
                                   c.pointwise_initializer, regularizer=c.pointwise_regularizer,
                                   constraint=c.pointwise_constraint))
        if c.use_bias:
            specs.append(ParamSpec("bias", (self._out_channels(chans),), c.bias_initializer,
                                   regularizer=c.bias_regularizer, constraint=c.bias_constraint))
        return specs

    _dw_name = "kernel"

    def flops(self, input_shape, output_shape):
        spatial, chans = self._split(input_shape)
        out_spatial = output_shape[1:] if self.config.data_format == "channels_first" else output_shape[:-1]
        pixels = elements(out_spatial)
        mid = chans * self.config.depth_multiplier
        total = pixels * math.prod(self.config.kernel_size) * mid
        if self.kind == "separable":
            total += pixels * mid * self.config.filters
        return total

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ...kernels import conv as K

        c = self.config
        xl = self._to_last(x)
        B, chans = xl.shape[0], xl.shape[-1]
        geo = self._geometry(xl.shape[1:-1])
        x5 = xl.reshape((B, *geo.inp, chans))
        dm = c.depth_multiplier
        w5 = np.ascontiguousarray(params[self._dw_name].reshape((*geo.k, chans, dm)), dtype=x.dtype)
        pw = None
        if self.kind == "separable":
            pw = np.ascontiguousarray(params["pointwise_kernel"].reshape(chans * dm, c.filters), dtype=x.dtype)
        y2d, z_keep, mid = K.depthwise_conv(x5, w5, pw, self._bias(params, x.dtype), geo, c.activation)
        y = y2d.reshape((B, *geo.out[3 - self.rank:], y2d.shape[1]))
        return self._from_last(y), _Cache(x5=x5, mid=mid, y2d=y2d, z2d=z_keep, geo=geo, in_shape=xl.shape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ...kernels import conv as K

        c = self.config
        x5 = cache.x5
        chans, dm = x5.shape[-1], c.depth_multiplier
        dy2d = self._to_last(dy).reshape(-1, cache.y2d.shape[1])
        dz2d, db = K.activation_backward(dy2d, cache.y2d, cache.z2d, c.activation, c.use_bias, x5.shape[0])
        w5 = np.ascontiguousarray(params[self._dw_name].reshape((*cache.geo.k, chans, dm)), dtype=dz2d.dtype)
        pw = None
        if self.kind == "separable":
            pw = np.ascontiguousarray(params["pointwise_kernel"].reshape(chans * dm, c.filters), dtype=dz2d.dtype)
        dwk, dpw, dx5 = K.depthwise_conv_backward(dz2d, x5, w5, pw, cache.mid, cache.geo, need_dx)
        grads = self._kernel_grad(params, self._dw_name, dwk, out)
        if pw is not None:
            grads.update(self._kernel_grad(params, "pointwise_kernel", dpw, out))
        grads.update(self._bias_grad(params, db, out))
        dx = self._from_last(dx5.reshape(cache.in_shape)) if need_dx else None
        return dx, grads


@register
class DepthwiseConv1D(_Depthwise):
    """Depthwise 1D convolution: each input channel convolved with its own depth_multiplier filters
    (output channel c*depth_multiplier + m), bias, activation. Kernel (k, channels, depth_multiplier),
    bias (channels * depth_multiplier). Masks are dropped."""

    type = "DepthwiseConv1D"
    rank = 1
    Config = _make_config("DepthwiseConv1D", 1, "depthwise")
    examples = [
        Example({"type": "DepthwiseConv1D", "kernel_size": 3, "depth_multiplier": 2, "padding": "same",
                 "strides": 2}, (7, 3), output_shape=(4, 6), params=18 + 6),
        Example({"type": "DepthwiseConv1D", "kernel_size": 2, "dilation_rate": 2, "activation": "tanh",
                 "data_format": "channels_first"}, (2, 6), output_shape=(2, 4), params=6),
    ]


@register
class DepthwiseConv2D(_Depthwise):
    """Depthwise 2D convolution: each input channel convolved with its own depth_multiplier filters
    (output channel c*depth_multiplier + m), bias, activation; padding valid / same (TF placement), strides,
    dilation_rate. Kernel (kh, kw, channels, depth_multiplier), bias (channels * depth_multiplier).
    Masks are dropped."""

    type = "DepthwiseConv2D"
    rank = 2
    Config = _make_config("DepthwiseConv2D", 2, "depthwise")
    examples = [
        Example({"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "padding": "same",
                 "strides": 2, "activation": "tanh"}, (5, 4, 2), output_shape=(3, 2, 4), params=36 + 4),
        Example({"type": "DepthwiseConv2D", "kernel_size": [2, 3], "dilation_rate": [2, 1],
                 "data_format": "channels_first", "use_bias": False}, (3, 5, 4), output_shape=(3, 3, 2),
                params=18),
    ]
