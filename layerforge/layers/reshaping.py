"""Spatial reshaping layers: Cropping1D/2D/3D, UpSampling1D/2D/3D, ZeroPadding1D/2D/3D.

All are parameter-free numpy slicing / broadcasting (no loop over pixels). Cropping and padding
amounts are normalised to ``(before, after)`` pairs per spatial axis; the Keras 1 forms
(ZeroPadding2D 4-tuple ``(top, bottom, left, right)`` and the ``{top_pad, ...}`` /
``{left_pad, right_pad}`` dicts) are converted in ``Config.upgrade``. Masks are dropped.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from ._numpy import np
from .base import Example, Layer, LayerConfig, elements, register
from .fields import DataFormat, int_tuple
from .pooling import from_channels_last, to_channels_last

# ---------------------------------------------------------------------- field type: (before, after) pairs


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def pairs(n: int, *, what: str = "amount"):
    """A field of ``n`` (before, after) pairs of ints >= 0.

    Accepts an int (same on every side), ``n`` ints (symmetric per axis) or ``n`` pairs; for ``n == 1``
    an int or one pair ``[before, after]``, stored and written as a flat pair."""

    def pair(v: Any):
        if _is_int(v):
            p = (v, v)
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(u) for u in v):
            p = (v[0], v[1])
        else:
            return None
        if p[0] < 0 or p[1] < 0:
            raise ValueError(f"every {what} must be >= 0, got {list(p)}")
        return p

    def check(value: Any):
        if n == 1:
            p = pair(value)
            if p is None:
                raise ValueError(f"expected an integer or a pair [before, after], not {value!r}")
            return p
        if _is_int(value):
            return (pair(value),) * n
        if isinstance(value, (list, tuple)) and len(value) == n:
            ps = tuple(pair(v) for v in value)
            if all(p is not None for p in ps):
                return ps
        raise ValueError(f"expected an integer, a list of {n} integers (symmetric per axis) or {n} pairs "
                         f"[[before, after], ...], not {value!r}")

    item = {"anyOf": [{"type": "integer", "minimum": 0},
                      {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2}]}
    if n == 1:
        schema = item
        ser = PlainSerializer(lambda v: list(v), return_type=Any)
    else:
        schema = {"anyOf": [{"type": "integer", "minimum": 0},
                            {"type": "array", "items": item, "minItems": n, "maxItems": n}]}
        ser = PlainSerializer(lambda v: [list(p) for p in v], return_type=Any)
    return Annotated[tuple, BeforeValidator(check), WithJsonSchema(schema), ser]


_FORMAT = Field("channels_last", description="channels_last or channels_first (Keras 1: dim_ordering tf/th)")


# ---------------------------------------------------------------------- common geometry


class _Spatial(Layer):
    family = "reshaping"
    rank: ClassVar[int]

    def _format(self) -> str:
        return getattr(self.config, "data_format", "channels_last")

    def _axes(self) -> tuple[int, ...]:
        """Spatial axes in an input shape without the batch axis."""
        return tuple(range(1, 1 + self.rank)) if self._format() == "channels_first" else tuple(range(self.rank))

    def _check(self, input_shape):
        if len(input_shape) != self.rank + 1:
            names = {1: "(steps, features)", 2: "(rows, cols, channels)", 3: "(dim1, dim2, dim3, channels)"}
            want = names[self.rank]
            if self._format() == "channels_first":
                want = {2: "(channels, rows, cols)", 3: "(channels, dim1, dim2, dim3)"}.get(self.rank, want)
            raise self.shape_error(input_shape, f"expected {self.rank + 1} axes besides the batch: {want}")

    def _new_lengths(self, input_shape) -> list:
        raise NotImplementedError

    def output_shape(self, input_shape):
        self._check(input_shape)
        out = list(input_shape)
        for axis, n in zip(self._axes(), self._new_lengths(input_shape), strict=True):
            out[axis] = n
        return tuple(out)


# ---------------------------------------------------------------------- cropping


class _Cropping(_Spatial):
    def _crops(self):
        c = self.config.cropping
        return (c,) if self.rank == 1 else c

    def _new_lengths(self, input_shape):
        out = []
        for axis, (a, b) in zip(self._axes(), self._crops(), strict=True):
            length = input_shape[axis]
            if length is not None and a + b >= length:
                raise self.shape_error(input_shape, f"cropping {a}+{b} leaves nothing of an axis of length {length}",
                                       hint="crop less, or check the input shape / data_format")
            out.append(None if length is None else length - a - b)
        return out

    def _slices(self, shape):
        sl = [slice(None)] * len(shape)
        for axis, (a, b) in zip(self._axes(), self._crops(), strict=True):
            if a + b >= shape[axis + 1]:
                raise self.shape_error(tuple(shape[1:]), f"cropping {a}+{b} leaves nothing of an axis of length "
                                       f"{shape[axis + 1]}")
            sl[axis + 1] = slice(a, shape[axis + 1] - b)
        return tuple(sl)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        sl = self._slices(x.shape)
        return x[sl].copy(), (x.shape, sl)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        shape, sl = cache
        dx = np.zeros(shape, dtype=dy.dtype)
        dx[sl] = dy
        return dx, {}


@register
class Cropping1D(_Cropping):
    """Removes `cropping` = (start, end) steps from the steps axis of (steps, features) (an int crops both
    ends equally). Default (1, 1) as in Keras 1/3."""

    rank = 1
    type = "Cropping1D"

    class Config(LayerConfig):
        cropping: pairs(1, what="cropping") = Field((1, 1), description="steps removed at the (start, end)")

    examples = [
        Example({"type": "Cropping1D", "cropping": [1, 1]}, (10, 4), output_shape=(8, 4), params=0,
                note="reference figure"),
        Example({"type": "Cropping1D", "cropping": [0, 2]}, (7, 3), output_shape=(5, 3)),
        Example({"type": "Cropping1D", "cropping": 2}, (6, 2), output_shape=(2, 2)),
    ]


@register
class Cropping2D(_Cropping):
    """Removes rows and cols at the edges: cropping = ((top, bottom), (left, right)); an int crops every edge
    equally, two ints are symmetric (rows, cols). Default ((0, 0), (0, 0)) as in Keras 1/3."""

    rank = 2
    type = "Cropping2D"

    class Config(LayerConfig):
        cropping: pairs(2, what="cropping") = Field(((0, 0), (0, 0)),
                                                    description="((top, bottom), (left, right)), or an int / 2 ints")
        data_format: DataFormat = _FORMAT

    examples = [
        Example({"type": "Cropping2D", "cropping": [[2, 2], [4, 4]]}, (28, 28, 3), output_shape=(24, 20, 3),
                params=0, gradcheck=False, note="reference figure"),
        Example({"type": "Cropping2D", "cropping": [1, 2]}, (5, 6, 2), output_shape=(3, 2, 2)),
        Example({"type": "Cropping2D", "cropping": [[1, 0], [0, 2]], "dim_ordering": "th"}, (2, 4, 5),
                output_shape=(2, 3, 3)),
    ]


@register
class Cropping3D(_Cropping):
    """Removes cells at the edges of the three spatial axes: cropping = ((a1, b1), (a2, b2), (a3, b3)); an int
    or three ints are symmetric. Default ((1, 1), (1, 1), (1, 1)) as in Keras 1/3."""

    rank = 3
    type = "Cropping3D"

    class Config(LayerConfig):
        cropping: pairs(3, what="cropping") = Field(((1, 1), (1, 1), (1, 1)),
                                                    description="(start, end) per spatial axis, or an int / 3 ints")
        data_format: DataFormat = _FORMAT

    examples = [
        Example({"type": "Cropping3D"}, (10, 10, 10, 2), output_shape=(8, 8, 8, 2), params=0, gradcheck=False,
                note="reference figure"),
        Example({"type": "Cropping3D", "cropping": [[0, 1], 1, [2, 0]], "data_format": "channels_first"},
                (2, 3, 4, 5), output_shape=(2, 2, 2, 3)),
        Example({"type": "Cropping3D", "cropping": [1, 0, 1]}, (4, 3, 4, 1), output_shape=(2, 3, 2, 1)),
    ]


# ---------------------------------------------------------------------- zero padding


class _ZeroPadding(_Spatial):
    def _pads(self):
        p = self.config.padding
        return (p,) if self.rank == 1 else p

    def _new_lengths(self, input_shape):
        return [None if input_shape[axis] is None else input_shape[axis] + a + b
                for axis, (a, b) in zip(self._axes(), self._pads(), strict=True)]

    def _slices(self, shape):
        sl = [slice(None)] * len(shape)
        for axis, (a, _) in zip(self._axes(), self._pads(), strict=True):
            sl[axis + 1] = slice(a, a + shape[axis + 1])
        return tuple(sl)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        out = list(x.shape)
        for axis, (a, b) in zip(self._axes(), self._pads(), strict=True):
            out[axis + 1] += a + b
        y = np.zeros(out, dtype=x.dtype)
        sl = self._slices(x.shape)
        y[sl] = x
        return y, sl

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy[cache].copy(), {}


def _keras1_pad_dict(value: dict, keys: tuple[str, ...], layer: str) -> list:
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise ValueError(f"{layer} padding dict has unknown key {unknown[0]!r} (Keras 1 keys: {', '.join(keys)})")
    return [value.get(k, 0) for k in keys]


@register
class ZeroPadding1D(_ZeroPadding):
    """Adds zeros at the start and end of the steps axis: padding = int (both ends) or (left, right).
    Keras 1's {left_pad, right_pad} dict is accepted. Default 1."""

    rank = 1
    type = "ZeroPadding1D"

    class Config(LayerConfig):
        keras1_exclude = frozenset({"border_mode"})  # `padding` here is the amount, not valid/same

        padding: pairs(1, what="padding") = Field(1, description="zeros added at the (start, end) of the steps "
                                                                 "axis, or an int for both")
        data_format: DataFormat = Field("channels_last", description="channels_last (steps, features) or "
                                                                     "channels_first (features, steps) (Keras 3)")

        @classmethod
        def upgrade(cls, data):
            if isinstance(data.get("padding"), dict):
                data = dict(data)
                data["padding"] = _keras1_pad_dict(data["padding"], ("left_pad", "right_pad"), "ZeroPadding1D")
            return data

    examples = [
        Example({"type": "ZeroPadding1D", "padding": 1}, (10, 4), output_shape=(12, 4), params=0,
                note="reference figure"),
        Example({"type": "ZeroPadding1D", "padding": [2, 0]}, (3, 2), output_shape=(5, 2)),
        Example({"type": "ZeroPadding1D", "padding": {"left_pad": 1, "right_pad": 3}}, (3, 2), output_shape=(7, 2),
                note="Keras 1 dict"),
        Example({"type": "ZeroPadding1D", "padding": [0, 1], "data_format": "channels_first"}, (2, 3),
                output_shape=(2, 4)),
    ]


@register
class ZeroPadding2D(_ZeroPadding):
    """Adds zero rows and cols at the edges: padding = ((top, bottom), (left, right)); an int pads every edge
    equally, two ints are symmetric (rows, cols). Keras 1 forms are converted: a 4-tuple means
    (top, bottom, left, right) and a {top_pad, bottom_pad, left_pad, right_pad} dict (missing keys 0).
    Default (1, 1)."""

    rank = 2
    type = "ZeroPadding2D"

    class Config(LayerConfig):
        keras1_exclude = frozenset({"border_mode"})  # `padding` here is the amount, not valid/same

        padding: pairs(2, what="padding") = Field(
            (1, 1), description="((top, bottom), (left, right)), or an int / 2 ints (symmetric); "
                                "Keras 1: 4 ints (top, bottom, left, right) or a {top_pad, ...} dict")
        data_format: DataFormat = _FORMAT

        @classmethod
        def upgrade(cls, data):
            value = data.get("padding")
            if isinstance(value, dict):
                t, b, left, r = _keras1_pad_dict(value, ("top_pad", "bottom_pad", "left_pad", "right_pad"),
                                                 "ZeroPadding2D")
            elif isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_int(v) for v in value):
                t, b, left, r = value
            else:
                return data
            return {**data, "padding": [[t, b], [left, r]]}

    examples = [
        Example({"type": "ZeroPadding2D", "padding": [1, 2]}, (28, 28, 3), output_shape=(30, 32, 3), params=0,
                gradcheck=False, note="reference figure"),
        Example({"type": "ZeroPadding2D", "padding": [1, 0, 2, 0]}, (28, 28, 3), output_shape=(29, 30, 3),
                gradcheck=False, note="reference figure: Keras 1 (top, bottom, left, right)"),
        Example({"type": "ZeroPadding2D", "padding": {"top_pad": 2, "right_pad": 1}}, (3, 2, 2),
                output_shape=(5, 3, 2), note="Keras 1 dict"),
        Example({"type": "ZeroPadding2D", "padding": [[0, 1], [2, 1]], "dim_ordering": "th"}, (2, 3, 2),
                output_shape=(2, 4, 5)),
    ]


@register
class ZeroPadding3D(_ZeroPadding):
    """Adds zeros at the edges of the three spatial axes: padding = ((a1, b1), (a2, b2), (a3, b3)); an int or
    three ints are symmetric (Keras 1 accepted only the symmetric forms). Default (1, 1, 1)."""

    rank = 3
    type = "ZeroPadding3D"

    class Config(LayerConfig):
        keras1_exclude = frozenset({"border_mode"})  # `padding` here is the amount, not valid/same

        padding: pairs(3, what="padding") = Field(
            (1, 1, 1), description="(start, end) zeros per spatial axis, or an int / 3 ints (symmetric)")
        data_format: DataFormat = _FORMAT

    examples = [
        Example({"type": "ZeroPadding3D"}, (10, 10, 10, 2), output_shape=(12, 12, 12, 2), params=0,
                gradcheck=False, note="reference figure"),
        Example({"type": "ZeroPadding3D", "padding": [[1, 0], 0, [0, 2]], "data_format": "channels_first"},
                (2, 2, 3, 2), output_shape=(2, 3, 3, 4)),
        Example({"type": "ZeroPadding3D", "padding": [0, 1, 0]}, (2, 2, 2, 1), output_shape=(2, 4, 2, 1)),
    ]


# ---------------------------------------------------------------------- upsampling


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
            from ..kernels import pooling as K

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
            from ..kernels import pooling as K

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
