"""ZeroPadding1D, ZeroPadding2D and ZeroPadding3D."""

from __future__ import annotations

from pydantic import Field

from .._numpy import np
from ..base import Example, LayerConfig, register
from ..fields import DataFormat
from .base_reshaping import _FORMAT, _is_int, _Spatial, pairs


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
