"""What the spatial reshaping layers share: per-axis (before, after) amounts and the spatial base class."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from ..base import Layer


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
