"""Cropping1D, Cropping2D and Cropping3D."""

from __future__ import annotations

from pydantic import Field

from .._numpy import np
from ..base import Example, LayerConfig, register
from ..fields import DataFormat
from .base_reshaping import _FORMAT, _Spatial, pairs


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
