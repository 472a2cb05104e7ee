"""Flatten, Reshape, Permute and RepeatVector: layers that move values without arithmetic."""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from .._numpy import np
from ..base import Example, Layer, LayerConfig, register
from ..fields import DataFormat
from .base_core import _show


@register
class Flatten(Layer):
    """Flattens every non-batch axis into one: (B, d1, ..., dn) -> (B, d1*...*dn); (B,) becomes (B, 1). With
    data_format channels_first the input is first moved to channels-last order (as Keras 3 does), so the
    following Dense sees the same feature order in both layouts. An unknown length gives an unknown output size.
    Masks are dropped."""

    type = "Flatten"
    family = "core"

    class Config(LayerConfig):
        data_format: DataFormat = Field("channels_last", description="layout of the input: channels_last or "
                                        "channels_first (flattened in channels-last order); Keras 1: dim_ordering")

    examples = [
        Example({"type": "Flatten"}, (64, 32, 32), output_shape=(65536,), params=0, gradcheck=False,
                note="reference figure"),
        Example({"type": "Flatten"}, (3, 2, 2), output_shape=(12,), params=0),
        Example({"type": "Flatten", "data_format": "channels_first"}, (2, 3, 2), output_shape=(12,), params=0),
    ]

    def _channels_first(self, ndim_without_batch: int) -> bool:
        return self.config.data_format == "channels_first" and ndim_without_batch > 1

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if any(d is None for d in input_shape):
            return (None,)
        return (math.prod(input_shape),)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        if self._channels_first(x.ndim - 1):
            x = np.moveaxis(x, 1, -1)
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        shape = cache
        dx = dy.reshape(shape)
        if self._channels_first(len(shape) - 1):
            dx = np.moveaxis(dx, -1, 1)
        return dx, {}


@register
class Reshape(Layer):
    """Reshapes each sample to `target_shape` (batch axis excluded, C order). One entry may be -1: it is inferred
    so the element count is unchanged. Masks are dropped."""

    type = "Reshape"
    family = "core"

    class Config(LayerConfig):
        target_shape: tuple[int, ...] = Field(description="new shape without the batch axis; at most one -1 "
                                                           "(inferred)")

        @field_validator("target_shape")
        @classmethod
        def _one_unknown(cls, v):
            if sum(d == -1 for d in v) > 1:
                raise ValueError(f"target_shape may contain at most one -1, got {list(v)}")
            if any(d == 0 or d < -1 for d in v):
                raise ValueError(f"target_shape entries must be >= 1 (or one -1), got {list(v)}")
            return v

    examples = [
        Example({"type": "Reshape", "target_shape": [3, 4]}, (12,), output_shape=(3, 4), params=0),
        Example({"type": "Reshape", "target_shape": [6, 2]}, (3, 4), output_shape=(6, 2), params=0),
        Example({"type": "Reshape", "target_shape": [-1, 2, 2]}, (6, 2), output_shape=(3, 2, 2), params=0,
                note="reference figure: Reshape chain (12,) -> (3,4) -> (6,2) -> (3,2,2)"),
    ]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        target = tuple(self.config.target_shape)
        known = math.prod(d for d in target if d != -1)
        if any(d is None for d in input_shape):
            return tuple(None if d == -1 else d for d in target)
        total = math.prod(input_shape)
        if -1 in target:
            if total % known:
                raise self.shape_error(
                    input_shape, f"{total} elements cannot be reshaped to {_show(target)}: {total} is not a multiple "
                                 f"of {known}", hint="change target_shape so the known sizes divide the element count")
            return tuple(total // known if d == -1 else d for d in target)
        if known != total:
            raise self.shape_error(
                input_shape, f"target_shape {_show(target)} has {known} elements but the input has {total}",
                hint="the element count must stay the same; use -1 for one size to infer it")
        return target

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        target = (x.shape[0],) + tuple(self.config.target_shape)
        try:
            y = x.reshape(target)
        except ValueError:
            raise self.shape_error(tuple(x.shape[1:]), f"a sample of shape {_show(x.shape[1:])} cannot be reshaped "
                                   f"to {_show(self.config.target_shape)}") from None
        return y, x.shape

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy.reshape(cache), {}


@register
class Permute(Layer):
    """Permutes the non-batch axes: `dims` is a permutation of 1..n (1-based, batch axis excluded); output axis i
    is input axis dims[i], e.g. (10, 64) with [2, 1] -> (64, 10). Masks are dropped."""

    type = "Permute"
    family = "core"

    class Config(LayerConfig):
        dims: tuple[int, ...] = Field(description="permutation of 1..n (1-based, the batch axis is not counted)")

        @field_validator("dims")
        @classmethod
        def _permutation(cls, v):
            if sorted(v) != list(range(1, len(v) + 1)):
                raise ValueError(f"dims must be a permutation of 1..{len(v)} (1-based, batch axis excluded), "
                                 f"got {list(v)}")
            return v

    examples = [
        Example({"type": "Permute", "dims": [2, 1]}, (10, 64), output_shape=(64, 10), params=0, gradcheck=False,
                note="reference figure"),
        Example({"type": "Permute", "dims": [2, 1]}, (3, 4), output_shape=(4, 3), params=0),
        Example({"type": "Permute", "dims": [3, 1, 2]}, (2, 3, 4), output_shape=(4, 2, 3), params=0),
    ]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        dims = self.config.dims
        if len(dims) != len(input_shape):
            raise self.shape_error(input_shape, f"dims {list(dims)} permutes {len(dims)} axes but the input has "
                                                f"{len(input_shape)} (batch excluded)",
                                   hint=f"give a permutation of 1..{len(input_shape)}")
        return tuple(input_shape[d - 1] for d in dims)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        return np.transpose(x, (0,) + tuple(self.config.dims)), None

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        perm = (0,) + tuple(self.config.dims)
        return np.transpose(dy, np.argsort(perm)), {}


@register
class RepeatVector(Layer):
    """Repeats a vector n times: (B, F) -> (B, n, F). The input must be 2D. Masks are dropped."""

    type = "RepeatVector"
    family = "core"

    class Config(LayerConfig):
        n: int = Field(gt=0, description="number of repetitions")

    examples = [
        Example({"type": "RepeatVector", "n": 3}, (32,), output_shape=(3, 32), params=0, note="reference figure"),
        Example({"type": "RepeatVector", "n": 4}, (5,), output_shape=(4, 5), params=0),
    ]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 1:
            raise self.shape_error(input_shape, "RepeatVector needs a 2D input (batch, features)",
                                   hint="insert a Flatten (or a pooling layer) before it")
        return (self.config.n, input_shape[0])

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        return np.repeat(x[:, None, :], self.config.n, axis=1), None

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy.sum(axis=1), {}
