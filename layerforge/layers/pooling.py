"""Pooling layers: MaxPooling1D/2D/3D, AveragePooling1D/2D/3D and the global poolings.

Shapes follow the Keras output-length rule (reference §0.1): ``valid`` gives
``floor((L - k) / s) + 1``, ``same`` gives ``ceil(L / s)`` with TF's padding placement
(the odd cell of padding goes at the end). Max pooling ignores padded cells; average
pooling divides by the number of real cells in each window. The hot loops live in
``layerforge.kernels.pooling`` (imported lazily).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, WithJsonSchema

from ._numpy import np
from .base import Example, Layer, LayerConfig, elements, register
from .fields import DataFormat, int_tuple

# ---------------------------------------------------------------------- shared helpers (pure)


def _pool_padding(value: Any) -> str:
    v = value.lower() if isinstance(value, str) else value
    if v == "full":
        raise ValueError("padding 'full' existed only on Keras 1's Theano backend; use 'valid' or 'same' "
                         "(or a ZeroPadding layer before a 'valid' pooling)")
    if v not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', not {value!r}")
    return v


PoolPadding = Annotated[str, BeforeValidator(_pool_padding), WithJsonSchema({"enum": ["valid", "same"]})]


def out_length(length, k: int, s: int, padding: str):
    """Output length of a pooling/convolution axis (None stays None); <= 0 when impossible."""
    if length is None:
        return None
    if padding == "same":
        return -(-length // s)
    return (length - k) // s + 1 if length >= k else 0


def same_pad_before(length: int, k: int, s: int) -> int:
    """TF 'same' padding placed before the first cell (the odd one goes at the end)."""
    out = -(-length // s)
    total = max((out - 1) * s + k - length, 0)
    return total // 2


def split_channels(shape, data_format: str):
    """(spatial lengths, channels) of a shape without the batch axis."""
    if data_format == "channels_first":
        return tuple(shape[1:]), shape[0]
    return tuple(shape[:-1]), shape[-1]


def join_channels(spatial, channels, data_format: str) -> tuple:
    if data_format == "channels_first":
        return (channels, *spatial)
    return (*spatial, channels)


def to_channels_last(x: np.ndarray, data_format: str) -> np.ndarray:
    if data_format == "channels_first":
        return np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return np.ascontiguousarray(x)


def from_channels_last(y: np.ndarray, data_format: str) -> np.ndarray:
    if data_format == "channels_first":
        return np.ascontiguousarray(np.moveaxis(y, -1, 1))
    return y


_LAYOUT = {
    1: ("(steps, channels)", "(channels, steps)"),
    2: ("(rows, cols, channels)", "(channels, rows, cols)"),
    3: ("(dim1, dim2, dim3, channels)", "(channels, dim1, dim2, dim3)"),
}


def check_rank(layer: Layer, input_shape, rank: int, data_format: str = "channels_last"):
    if not isinstance(input_shape, tuple | list) or len(input_shape) != rank + 1:
        want = _LAYOUT[rank][data_format == "channels_first"]
        raise layer.shape_error(input_shape, f"expected {rank + 1} axes besides the batch: {want}",
                                hint=f"{layer.type} works on {rank}-D data with a channel axis; "
                                     "add a Reshape layer if the channel axis is missing")


# ---------------------------------------------------------------------- windowed pooling


def _pool_config(rank: int, average: bool):
    default = 2 if rank == 1 else [2] * rank
    dims = {1: "2", 2: "(2, 2)", 3: "(2, 2, 2)"}[rank]
    size_note = ("; Keras 3 requires it, the Keras 1 default " + dims + " is kept") if average else ""

    class PoolConfig(LayerConfig):
        keras1_exclude = frozenset({"subsample", "subsample_length"})  # convolution names, not pooling ones

        pool_size: int_tuple(rank, name="pool size") = Field(
            default, description=f"window size, an int or {rank} ints (Keras 1 1D: pool_length){size_note}")
        strides: int_tuple(rank, name="stride") | None = Field(
            None, description="step between windows (Keras 1 1D: stride); default: pool_size")
        padding: PoolPadding = Field("valid", description="'valid' (only full windows) or 'same' "
                                                          "(output length ceil(L/stride)) (Keras 1: border_mode)")
        data_format: DataFormat = Field("channels_last", description="channels_last or channels_first "
                                                                     "(Keras 1: dim_ordering tf/th)")

    return PoolConfig


class _Pooling(Layer):
    """Common code of the windowed poolings."""

    family = "pooling"
    rank: ClassVar[int]
    average: ClassVar[bool]

    def _geometry(self):
        c = self.config
        return c.pool_size, c.strides or c.pool_size

    def output_shape(self, input_shape):
        c = self.config
        check_rank(self, input_shape, self.rank, c.data_format)
        spatial, channels = split_channels(input_shape, c.data_format)
        pool, strides = self._geometry()
        out = []
        for axis, (length, k, s) in enumerate(zip(spatial, pool, strides, strict=True)):
            n = out_length(length, k, s, c.padding)
            if n is not None and n <= 0:
                raise self.shape_error(
                    input_shape, f"spatial axis {axis + 1} has length {length}, shorter than the pool size {k}",
                    hint="use padding: same, a smaller pool_size, or a larger input")
            out.append(n)
        return join_channels(out, channels, c.data_format)

    def flops(self, input_shape, output_shape):
        # one compare / add per window cell and output element
        return elements(output_shape) * math.prod(self.config.pool_size)

    def _plan(self, x_shape):
        """Runtime geometry padded to 3 spatial axes: (5-D input shape, 5-D output shape, k, s, pad)."""
        c = self.config
        batch = x_shape[0]
        spatial, channels = split_channels(x_shape[1:], c.data_format)
        pool, strides = self._geometry()
        outs, pads = [], []
        for length, k, s in zip(spatial, pool, strides, strict=True):
            n = out_length(length, k, s, c.padding)
            if n <= 0:
                raise self.shape_error(tuple(x_shape[1:]), f"an axis of length {length} is shorter than the pool "
                                       f"size {k}", hint="use padding: same or a smaller pool_size")
            outs.append(n)
            pads.append(same_pad_before(length, k, s) if c.padding == "same" else 0)
        lead = 3 - self.rank
        in5 = (batch,) + (1,) * lead + tuple(spatial) + (channels,)
        out5 = (batch,) + (1,) * lead + tuple(outs) + (channels,)
        k3 = (1,) * lead + tuple(pool)
        s3 = (1,) * lead + tuple(strides)
        p3 = (0,) * lead + tuple(pads)
        return in5, out5, k3, s3, p3, tuple(outs)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..kernels import pooling as K

        fmt = self.config.data_format
        in5, out5, k3, s3, p3, outs = self._plan(x.shape)
        x5 = to_channels_last(x, fmt).reshape(in5)
        y5 = np.empty(out5, dtype=x.dtype)
        if self.average:
            K.avg_pool_forward(x5, y5, *k3, *s3, *p3)
            idx = None
        else:
            idx = np.empty(out5, dtype=np.int32)
            K.max_pool_forward(x5, y5, idx, *k3, *s3, *p3)
        batch, channels = out5[0], out5[-1]
        y = from_channels_last(y5.reshape((batch, *outs, channels)), fmt)
        return y, (x.shape, x.dtype, in5, out5, k3, s3, p3, idx)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import pooling as K

        x_shape, dtype, in5, out5, k3, s3, p3, idx = cache
        fmt = self.config.data_format
        dy5 = to_channels_last(dy.astype(dtype, copy=False), fmt).reshape(out5)
        batch, channels = in5[0], in5[-1]
        if self.average:
            dx5 = np.empty(in5, dtype=dtype)
            K.avg_pool_backward(dy5, dx5, *k3, *s3, *p3)
        else:
            dx5 = np.empty((batch, math.prod(in5[1:4]), channels), dtype=dtype)
            K.max_pool_backward(dy5.reshape(batch, -1, channels), idx.reshape(batch, -1, channels), dx5)
        spatial_cl = in5[1 + 3 - self.rank:4]
        dx = from_channels_last(dx5.reshape((batch, *spatial_cl, channels)), fmt)
        return dx, {}


_MAX_DOC = ("Each output is the maximum of a {w} window of the input, per channel; windows move by `strides` "
            "(default: pool_size). padding 'same' ignores the padded cells. Keras 1 names: {k1}.")
_AVG_DOC = ("Each output is the mean of a {w} window of the input, per channel; windows move by `strides` "
            "(default: pool_size). With padding 'same' the mean counts only the real (unpadded) cells, as "
            "TF/Keras do. pool_size defaults to the Keras 1 value {d} (Keras 3 has no default). Keras 1 names: {k1}.")


@register
class MaxPooling1D(_Pooling):
    rank, average = 1, False
    type = "MaxPooling1D"
    aliases = {"MaxPool1D": {}}
    __doc__ = _MAX_DOC.format(w="pool_size-step", k1="pool_length, stride, border_mode")

    class Config(_pool_config(1, False)):
        pass

    examples = [
        Example({"type": "MaxPooling1D", "pool_length": 2}, (10, 64), output_shape=(5, 64), params=0,
                gradcheck=False, note="reference figure"),
        Example({"type": "MaxPooling1D", "pool_size": 3, "strides": 2, "padding": "same"}, (7, 3),
                output_shape=(4, 3), params=0),
        Example({"type": "MaxPooling1D", "pool_size": 2, "stride": 1, "border_mode": "valid"}, (5, 2),
                output_shape=(4, 2)),
        Example({"type": "MaxPooling1D", "pool_size": 2, "data_format": "channels_first"}, (3, 7),
                output_shape=(3, 3)),
    ]


@register
class MaxPooling2D(_Pooling):
    rank, average = 2, False
    type = "MaxPooling2D"
    aliases = {"MaxPool2D": {}}
    __doc__ = _MAX_DOC.format(w="pool_size", k1="border_mode, dim_ordering")

    class Config(_pool_config(2, False)):
        pass

    examples = [
        Example({"type": "MaxPooling2D", "pool_size": [2, 2], "border_mode": "same"}, (7, 7, 5),
                output_shape=(4, 4, 5), params=0, note="reference figure"),
        Example({"type": "MaxPooling2D", "pool_size": [2, 2]}, (7, 7, 5), output_shape=(3, 3, 5), params=0,
                note="reference figure"),
        Example({"type": "MaxPooling2D", "pool_size": [3, 2], "strides": [2, 1], "dim_ordering": "th"}, (2, 7, 6),
                output_shape=(2, 3, 5)),
        Example({"type": "MaxPooling2D", "pool_size": 3, "strides": 2, "padding": "same"}, (6, 5, 2),
                output_shape=(3, 3, 2)),
    ]


@register
class MaxPooling3D(_Pooling):
    rank, average = 3, False
    type = "MaxPooling3D"
    aliases = {"MaxPool3D": {}}
    __doc__ = _MAX_DOC.format(w="pool_size", k1="border_mode, dim_ordering")

    class Config(_pool_config(3, False)):
        pass

    examples = [
        Example({"type": "MaxPooling3D"}, (4, 5, 6, 2), output_shape=(2, 2, 3, 2), params=0),
        Example({"type": "MaxPooling3D", "pool_size": 3, "strides": 2, "padding": "same"}, (5, 4, 5, 1),
                output_shape=(3, 2, 3, 1)),
        Example({"type": "MaxPooling3D", "pool_size": [2, 1, 3], "data_format": "channels_first"}, (2, 4, 3, 6),
                output_shape=(2, 2, 3, 2)),
    ]


@register
class AveragePooling1D(_Pooling):
    rank, average = 1, True
    type = "AveragePooling1D"
    aliases = {"AvgPool1D": {}}
    __doc__ = _AVG_DOC.format(w="pool_size-step", d="2", k1="pool_length, stride, border_mode")

    class Config(_pool_config(1, True)):
        pass

    examples = [
        Example({"type": "AveragePooling1D", "pool_size": 2, "padding": "same"}, (5, 3), output_shape=(3, 3),
                params=0),
        Example({"type": "AveragePooling1D", "pool_length": 3, "stride": 2}, (9, 2), output_shape=(4, 2)),
        Example({"type": "AveragePooling1D", "pool_size": 4, "strides": 3, "padding": "same",
                 "data_format": "channels_first"}, (2, 8), output_shape=(2, 3)),
    ]


@register
class AveragePooling2D(_Pooling):
    rank, average = 2, True
    type = "AveragePooling2D"
    aliases = {"AvgPool2D": {}}
    __doc__ = _AVG_DOC.format(w="pool_size", d="(2, 2)", k1="border_mode, dim_ordering")

    class Config(_pool_config(2, True)):
        pass

    examples = [
        Example({"type": "AveragePooling2D"}, (7, 7, 5), output_shape=(3, 3, 5), params=0),
        Example({"type": "AveragePooling2D", "pool_size": 3, "strides": 2, "border_mode": "same"}, (6, 5, 2),
                output_shape=(3, 3, 2)),
        Example({"type": "AveragePooling2D", "pool_size": [2, 3], "strides": [1, 2], "dim_ordering": "th"},
                (3, 5, 7), output_shape=(3, 4, 3)),
    ]


@register
class AveragePooling3D(_Pooling):
    rank, average = 3, True
    type = "AveragePooling3D"
    aliases = {"AvgPool3D": {}}
    __doc__ = _AVG_DOC.format(w="pool_size", d="(2, 2, 2)", k1="border_mode, dim_ordering")

    class Config(_pool_config(3, True)):
        pass

    examples = [
        Example({"type": "AveragePooling3D"}, (16, 16, 16, 8), output_shape=(8, 8, 8, 8), params=0,
                gradcheck=False, note="reference figure"),
        Example({"type": "AveragePooling3D", "pool_size": 2, "strides": 1, "padding": "same"}, (3, 4, 3, 2),
                output_shape=(3, 4, 3, 2)),
        Example({"type": "AveragePooling3D", "pool_size": [3, 2, 2], "strides": [2, 2, 1],
                 "data_format": "channels_first"}, (2, 5, 4, 3), output_shape=(2, 2, 2, 2)),
    ]


# ---------------------------------------------------------------------- global pooling


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


__all__ = ["MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
           "AveragePooling3D", "GlobalMaxPooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling2D",
           "GlobalAveragePooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling3D"]
