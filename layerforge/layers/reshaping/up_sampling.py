"""UpSampling1D, UpSampling2D and UpSampling3D (nearest and bilinear)."""

from __future__ import annotations

import itertools
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from .._numpy import np
from ..base import Example, LayerConfig, elements, register
from ..fields import DataFormat, int_tuple
from ..pooling import from_channels_last, to_channels_last
from .base_reshaping import _FORMAT, _Spatial


def _lerp_index(n_in: int, scale: int, dtype):
    """Source cells of each output cell for bilinear upsampling along one axis: (lo, hi, weight of hi).
    Keras 3 / TF2 `resize`: half-pixel centres, source = (i + 0.5) / scale - 0.5 clamped to [0, n_in - 1]."""
    src = np.maximum((np.arange(n_in * scale) + 0.5) / scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(dtype)


def _interpolation(value: Any) -> str:
    v = value.lower() if isinstance(value, str) else value
    if v in ("nearest", "bilinear"):
        return v
    if v in ("bicubic", "lanczos3", "lanczos5", "area"):
        raise ValueError(f"interpolation {value!r} is not supported here; use 'nearest' or 'bilinear' "
                         "(or resize the data before the model)")
    raise ValueError(f"interpolation must be 'nearest' or 'bilinear', not {value!r}")


Interpolation = Annotated[str, BeforeValidator(_interpolation), WithJsonSchema({"enum": ["nearest", "bilinear"]})]


class _UpSampling(_Spatial):
    def _sizes(self):
        s = self.config.size
        return (s,) if self.rank == 1 else s

    def _new_lengths(self, input_shape):
        return [None if input_shape[axis] is None else input_shape[axis] * s
                for axis, s in zip(self._axes(), self._sizes(), strict=True)]

    def _bilinear(self) -> bool:
        return getattr(self.config, "interpolation", "nearest") == "bilinear"

    def flops(self, input_shape, output_shape):
        return 2 * self.rank * elements(output_shape) if self._bilinear() else 0

    def _expanded(self, shape):
        """Shape with a repeat axis after each spatial axis: (length 1 there, the size there)."""
        axes = [a + 1 for a in self._axes()]
        one, rep = [], []
        for axis, n in enumerate(shape):
            one.append(n)
            rep.append(n)
            if axis in axes:
                one.append(1)
                rep.append(self._sizes()[axes.index(axis)])
        return one, rep

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        if self._bilinear():  # UpSampling2D only
            from ...kernels import pooling as K

            fmt = self._format()
            xl = to_channels_last(x, fmt)
            (sh, sw), (_, h, w, c) = self._sizes(), xl.shape
            index = (*_lerp_index(h, sh, x.dtype), *_lerp_index(w, sw, x.dtype))
            y = np.empty((xl.shape[0], h * sh, w * sw, c), dtype=x.dtype)
            K.bilinear_forward(xl, y, *index)
            return from_channels_last(y, fmt), (x.shape, index)
        one, rep = self._expanded(x.shape)
        out = list(x.shape)
        for a, s in zip(self._axes(), self._sizes(), strict=True):
            out[a + 1] *= s
        y = np.broadcast_to(x.reshape(one), rep).reshape(out)  # one copy
        return y, (x.shape, None)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        shape, index = cache
        if index is not None:
            from ...kernels import pooling as K

            fmt = self._format()
            dyl = to_channels_last(dy, fmt)
            b, oh, ow, c = dyl.shape
            dx = np.zeros((b, oh // self._sizes()[0], ow // self._sizes()[1], c), dtype=dy.dtype)
            K.bilinear_backward(dyl, dx, *index)
            return from_channels_last(dx, fmt), {}
        # sum the copies: one strided slice per phase combination (faster than a multi-axis reduction)
        axes = [a + 1 for a in self._axes()]
        dx = None
        for phase in itertools.product(*(range(s) for s in self._sizes())):
            sl = [slice(None)] * dy.ndim
            for a, r, s in zip(axes, phase, self._sizes(), strict=True):
                sl[a] = slice(r, None, s)
            part = dy[tuple(sl)]
            if dx is None:
                dx = part.copy()
            else:
                dx += part
        return dx, {}


@register
class UpSampling1D(_UpSampling):
    """Repeats each step `size` times along the steps axis (nearest neighbour, like np.repeat):
    (steps, features) -> (steps*size, features). Keras 1 name of size: length."""

    rank = 1
    type = "UpSampling1D"

    class Config(LayerConfig):
        size: int = Field(2, gt=0, description="repetitions of each step (Keras 1: length)")
        keras1_renames = {"length": "size"}

    examples = [
        Example({"type": "UpSampling1D", "length": 2}, (10, 4), output_shape=(20, 4), params=0,
                note="reference figure"),
        Example({"type": "UpSampling1D", "size": 3}, (4, 2), output_shape=(12, 2)),
    ]


@register
class UpSampling2D(_UpSampling):
    """Enlarges rows and cols by the factors in `size`: 'nearest' repeats each pixel (np.repeat on both axes,
    the Keras 1 behaviour), 'bilinear' interpolates linearly with half-pixel centres and clamped edges
    (Keras 3 / TF2 resize). (rows, cols, channels) -> (rows*s1, cols*s2, channels)."""

    rank = 2
    type = "UpSampling2D"

    class Config(LayerConfig):
        size: int_tuple(2, name="size") = Field((2, 2), description="(rows, cols) factors, or an int for both")
        data_format: DataFormat = _FORMAT
        interpolation: Interpolation = Field(
            "nearest", description="nearest (repeat) or bilinear; Keras 3's bicubic/lanczos/area are not supported")

    examples = [
        Example({"type": "UpSampling2D", "size": [2, 2]}, (28, 28, 3), output_shape=(56, 56, 3), params=0,
                gradcheck=False, note="reference figure"),
        Example({"type": "UpSampling2D", "size": [2, 3], "dim_ordering": "th"}, (2, 3, 2), output_shape=(2, 6, 6)),
        Example({"type": "UpSampling2D", "size": [2, 3], "interpolation": "bilinear"}, (3, 2, 2),
                output_shape=(6, 6, 2)),
        Example({"type": "UpSampling2D", "interpolation": "bilinear", "data_format": "channels_first"}, (2, 3, 1),
                output_shape=(2, 6, 2)),
    ]


@register
class UpSampling3D(_UpSampling):
    """Repeats each cell size[i] times along spatial axis i (nearest neighbour):
    (d1, d2, d3, channels) -> (d1*s1, d2*s2, d3*s3, channels)."""

    rank = 3
    type = "UpSampling3D"

    class Config(LayerConfig):
        size: int_tuple(3, name="size") = Field((2, 2, 2), description="factor per spatial axis, or an int for all")
        data_format: DataFormat = _FORMAT

    examples = [
        Example({"type": "UpSampling3D"}, (10, 10, 10, 2), output_shape=(20, 20, 20, 2), params=0,
                gradcheck=False, note="reference figure"),
        Example({"type": "UpSampling3D", "size": [1, 2, 3], "data_format": "channels_first"}, (2, 2, 3, 2),
                output_shape=(2, 2, 6, 6)),
        Example({"type": "UpSampling3D", "size": 2}, (2, 1, 2, 1), output_shape=(4, 2, 4, 1)),
    ]
