"""SeparableConv1D and SeparableConv2D: a depthwise convolution followed by a 1x1 pointwise one."""

from __future__ import annotations

from ..base import Example, register
from .base_conv import _make_config
from .depthwise_conv import _Depthwise


class _Separable(_Depthwise):
    kind = "separable"
    _dw_name = "depthwise_kernel"

    def _out_channels(self, chans):
        return self.config.filters


@register
class SeparableConv1D(_Separable):
    """Depthwise-separable 1D convolution: a per-channel convolution producing depth_multiplier maps per input
    channel (channel-major: output c*depth_multiplier + m), then a 1x1 convolution to `filters`, bias,
    activation. Weights depthwise_kernel (k, channels, depth_multiplier), pointwise_kernel (1, channels *
    depth_multiplier, filters), bias (filters). Masks are dropped."""

    type = "SeparableConv1D"
    rank = 1
    aliases = {"SeparableConvolution1D": {}}
    Config = _make_config("SeparableConv1D", 1, "separable")
    examples = [
        Example({"type": "SeparableConv1D", "filters": 3, "kernel_size": 3, "depth_multiplier": 2,
                 "padding": "same"}, (7, 2), output_shape=(7, 3), params=12 + 12 + 3),
        Example({"type": "SeparableConv1D", "filters": 2, "kernel_size": 2, "strides": 2,
                 "data_format": "channels_first", "activation": "tanh"}, (3, 7), output_shape=(2, 3),
                params=6 + 6 + 2),
    ]


@register
class SeparableConv2D(_Separable):
    """Depthwise-separable 2D convolution (Keras 1 SeparableConvolution2D): a per-channel spatial convolution
    producing depth_multiplier maps per input channel (channel-major: output c*depth_multiplier + m), then a 1x1
    convolution to `filters`, then bias and activation; strides/padding/dilation apply to the depthwise step.
    Weights depthwise_kernel (kh, kw, channels, depth_multiplier), pointwise_kernel (1, 1, channels *
    depth_multiplier, filters), bias (filters). Keras 1 `init` sets both initializers. Masks are dropped."""

    type = "SeparableConv2D"
    rank = 2
    aliases = {"SeparableConvolution2D": {}}
    Config = _make_config("SeparableConv2D", 2, "separable")
    examples = [
        Example({"type": "SeparableConvolution2D", "nb_filter": 64, "nb_row": 3, "nb_col": 3}, (32, 32, 16),
                output_shape=(30, 30, 64), params=1232, gradcheck=False, note="reference figure"),
        Example({"type": "SeparableConvolution2D", "nb_filter": 64, "nb_row": 3, "nb_col": 3,
                 "depth_multiplier": 2}, (32, 32, 16), output_shape=(30, 30, 64), params=2400, gradcheck=False,
                note="reference figure"),
        Example({"type": "SeparableConvolution2D", "nb_filter": 64, "nb_row": 3, "nb_col": 3, "border_mode": "same",
                 "subsample": [2, 2]}, (32, 32, 16), output_shape=(16, 16, 64), params=1232, gradcheck=False,
                note="reference figure"),
        Example({"type": "SeparableConv2D", "filters": 3, "kernel_size": [3, 2], "depth_multiplier": 2,
                 "strides": 2, "padding": "same", "activation": "tanh"}, (5, 6, 2), output_shape=(3, 3, 3),
                params=24 + 12 + 3),
        Example({"type": "SeparableConv2D", "filters": 2, "kernel_size": 2, "dilation_rate": 2,
                 "data_format": "channels_first", "use_bias": False}, (3, 5, 4), output_shape=(2, 3, 2),
                params=12 + 6),
    ]
