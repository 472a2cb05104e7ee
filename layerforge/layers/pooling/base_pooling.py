"""What the pooling layers share: padding and output lengths, the channels-last layout helpers (also
used by the reshaping layers) and the windowed pooling base class.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, WithJsonSchema

from .._numpy import np
from ..base import Layer, LayerConfig, elements
from ..fields import DataFormat, int_tuple


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
        from ...kernels import pooling as K

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
        from ...kernels import pooling as K

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
