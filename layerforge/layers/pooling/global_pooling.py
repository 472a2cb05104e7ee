"""Global max and average pooling over every spatial axis, in 1, 2 and 3 dimensions."""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from .._numpy import np
from ..base import Example, Layer, LayerConfig, elements, register
from ..fields import DataFormat
from .base_pooling import check_rank, join_channels, split_channels


class _GlobalConfig(LayerConfig):
    data_format: DataFormat = Field("channels_last", description="channels_last or channels_first "
                                                                 "(Keras 1: dim_ordering tf/th)")
    keepdims: bool = Field(False, description="keep the pooled axes with length 1 (Keras 3)")


class _GlobalPooling(Layer):
    family = "pooling"
    rank: ClassVar[int]
    average: ClassVar[bool]

    def output_shape(self, input_shape):
        c = self.config
        check_rank(self, input_shape, self.rank, c.data_format)
        spatial, channels = split_channels(input_shape, c.data_format)
        if any(d == 0 for d in spatial):
            raise self.shape_error(input_shape, "a spatial axis has length 0")
        if c.keepdims:
            return join_channels((1,) * self.rank, channels, c.data_format)
        return (channels,)

    def flops(self, input_shape, output_shape):
        return elements(input_shape)

    def _axes(self):
        return tuple(range(2, 2 + self.rank)) if self.config.data_format == "channels_first" \
            else tuple(range(1, 1 + self.rank))

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        axes = self._axes()
        keep = self.config.keepdims
        if self.average:
            if mask is not None and self.rank == 1:
                m = mask.astype(x.dtype)
                m = m[:, None, :] if self.config.data_format == "channels_first" else m[:, :, None]
                count = np.maximum(m.sum(axis=axes, keepdims=True), 1)
                y = (x * m).sum(axis=axes, keepdims=True) / count
                cache = (x.shape, axes, m / count)
            else:
                count = math.prod(x.shape[a] for a in axes)
                y = x.mean(axis=axes, keepdims=True)
                cache = (x.shape, axes, count)
            y = y.astype(x.dtype, copy=False)
        else:  # the max here; the winner's index is found in backward (first maximum, as argmax)
            batch = x.shape[0]
            if self.config.data_format == "channels_first":
                x3, red = x.reshape(batch, x.shape[1], -1), 2
            else:
                x3, red = x.reshape(batch, -1, x.shape[-1]), 1
            y = np.expand_dims(x3.max(axis=red), axes)
            cache = (x.shape, axes, (x3, red))
        if not keep:
            y = y.reshape(y.shape[0], -1)
        return y, cache

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        x_shape, axes, aux = cache
        dy_keep = dy.reshape(tuple(1 if a in axes else n for a, n in enumerate(x_shape)))
        if self.average:
            if isinstance(aux, np.ndarray):  # masked mean: weights m / count
                dx = dy_keep * aux
            else:
                dx = np.broadcast_to(dy_keep / aux, x_shape)
            return np.ascontiguousarray(dx, dtype=dy.dtype), {}
        x3, red = aux
        arg = np.expand_dims(x3.argmax(axis=red), red)
        dx3 = np.zeros(x3.shape, dtype=dy.dtype)
        np.put_along_axis(dx3, arg, dy.reshape(arg.shape), axis=red)
        return dx3.reshape(x_shape), {}


@register
class GlobalMaxPooling1D(_GlobalPooling):
    """Maximum over the steps axis per channel: (steps, channels) -> (channels,) (keepdims: (1, channels)).
    Masks are dropped (Keras 3: the max ignores the mask)."""

    rank, average = 1, False
    type = "GlobalMaxPooling1D"
    aliases = {"GlobalMaxPool1D": {}}

    class Config(_GlobalConfig):
        pass

    examples = [
        Example({"type": "GlobalMaxPooling1D"}, (10, 64), output_shape=(64,), params=0, gradcheck=False,
                note="reference figure"),
        Example({"type": "GlobalMaxPooling1D", "keepdims": True}, (5, 3), output_shape=(1, 3)),
        Example({"type": "GlobalMaxPooling1D", "data_format": "channels_first"}, (3, 6), output_shape=(3,)),
    ]


@register
class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over the steps axis per channel: (steps, channels) -> (channels,) (keepdims: (1, channels)).
    As in Keras 3 an incoming (batch, steps) mask makes it a masked mean over the unmasked steps (a sample
    with every step masked gives 0); Keras 1 rejected masks."""

    rank, average = 1, True
    type = "GlobalAveragePooling1D"
    aliases = {"GlobalAvgPool1D": {}}

    class Config(_GlobalConfig):
        pass

    examples = [
        Example({"type": "GlobalAveragePooling1D"}, (10, 64), output_shape=(64,), params=0, gradcheck=False,
                note="reference figure shape"),
        Example({"type": "GlobalAveragePooling1D"}, (6, 3), output_shape=(3,), mask=True, note="masked mean"),
        Example({"type": "GlobalAveragePooling1D", "keepdims": True, "data_format": "channels_first"}, (3, 5),
                output_shape=(3, 1)),
        Example({"type": "GlobalAveragePooling1D", "keepdims": True}, (4, 2), output_shape=(1, 2)),
    ]


@register
class GlobalMaxPooling2D(_GlobalPooling):
    """Maximum over rows and cols per channel: (rows, cols, channels) -> (channels,)
    (channels_first: (channels, rows, cols) -> (channels,)); keepdims keeps unit spatial axes."""

    rank, average = 2, False
    type = "GlobalMaxPooling2D"
    aliases = {"GlobalMaxPool2D": {}}

    class Config(_GlobalConfig):
        pass

    examples = [
        Example({"type": "GlobalMaxPooling2D"}, (4, 5, 3), output_shape=(3,), params=0),
        Example({"type": "GlobalMaxPooling2D", "dim_ordering": "th", "keepdims": True}, (2, 3, 5),
                output_shape=(2, 1, 1)),
    ]


@register
class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over rows and cols per channel: (rows, cols, channels) -> (channels,)
    (channels_first: (channels, rows, cols) -> (channels,)); keepdims keeps unit spatial axes."""

    rank, average = 2, True
    type = "GlobalAveragePooling2D"
    aliases = {"GlobalAvgPool2D": {}}

    class Config(_GlobalConfig):
        pass

    examples = [
        Example({"type": "GlobalAveragePooling2D"}, (7, 7, 64), output_shape=(64,), params=0, gradcheck=False,
                note="reference figure"),
        Example({"type": "GlobalAveragePooling2D", "keepdims": True}, (3, 4, 2), output_shape=(1, 1, 2)),
        Example({"type": "GlobalAveragePooling2D", "data_format": "channels_first"}, (2, 3, 5),
                output_shape=(2,)),
    ]


@register
class GlobalMaxPooling3D(_GlobalPooling):
    """Maximum over the three spatial axes per channel: (d1, d2, d3, channels) -> (channels,)
    (channels_first: channels first); keepdims keeps unit spatial axes."""

    rank, average = 3, False
    type = "GlobalMaxPooling3D"
    aliases = {"GlobalMaxPool3D": {}}

    class Config(_GlobalConfig):
        pass

    examples = [
        Example({"type": "GlobalMaxPooling3D"}, (3, 4, 2, 3), output_shape=(3,), params=0),
        Example({"type": "GlobalMaxPooling3D", "data_format": "channels_first", "keepdims": True}, (2, 3, 2, 4),
                output_shape=(2, 1, 1, 1)),
    ]


@register
class GlobalAveragePooling3D(_GlobalPooling):
    """Mean over the three spatial axes per channel: (d1, d2, d3, channels) -> (channels,)
    (channels_first: channels first); keepdims keeps unit spatial axes."""

    rank, average = 3, True
    type = "GlobalAveragePooling3D"
    aliases = {"GlobalAvgPool3D": {}}

    class Config(_GlobalConfig):
        pass

    examples = [
        Example({"type": "GlobalAveragePooling3D"}, (3, 4, 2, 3), output_shape=(3,), params=0),
        Example({"type": "GlobalAveragePooling3D", "data_format": "channels_first", "keepdims": True},
                (2, 3, 2, 4), output_shape=(2, 1, 1, 1)),
    ]
