"""Dropout (and its noise-shape variants): zero inputs at random in training, scale the rest."""

from __future__ import annotations

from pydantic import Field, field_validator

from .._numpy import np
from ..base import Example, Layer, LayerConfig, elements, register


@register
class Dropout(Layer):
    """Inverted dropout: in training each element is zeroed with probability `rate` and the survivors are scaled
    by 1/(1-rate); identity in inference and when rate is 0. `noise_shape` (batch axis included, null = the
    input's size) shares one draw along the axes given as 1, e.g. [null, 1, null] drops whole features for every
    time step. Keras 1 name of `rate`: `p` (Keras 1 also treated p=1 as 'no dropout'; here rate must be < 1).
    The incoming mask passes through."""

    type = "Dropout"
    family = "core"
    supports_masking = True
    stochastic = True

    class Config(LayerConfig):
        rate: float = Field(ge=0.0, lt=1.0, description="fraction of the inputs to drop, 0 <= rate < 1 (Keras 1: p)")
        noise_shape: list[int | None] | None = Field(
            None, description="shape of the dropout mask including the batch axis; null entries take the input's "
                              "size, 1 entries share the draw along that axis (e.g. [null, 1, null])")
        seed: int | None = Field(None, description="per-layer seed for the dropout draws; the model seed is used "
                                                   "when unset")

        @field_validator("noise_shape")
        @classmethod
        def _positive(cls, v):
            if v is not None and any(d is not None and d < 1 for d in v):
                raise ValueError(f"noise_shape entries must be null or >= 1, got {v}")
            return v

    examples = [
        Example({"type": "Dropout", "rate": 0.5}, (6,), output_shape=(6,), params=0),
        Example({"type": "Dropout", "rate": 0.3, "noise_shape": [None, 1, None]}, (4, 3), output_shape=(4, 3),
                params=0, mask=True),
        Example({"type": "Dropout", "p": 0.25}, (3, 2, 2), output_shape=(3, 2, 2), params=0),
        Example({"type": "Dropout", "rate": 0.0}, (5,), output_shape=(5,), params=0, note="identity"),
    ]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        ns = self.config.noise_shape
        if ns is not None:
            full = (None,) + input_shape
            if len(ns) != len(full):
                raise self.shape_error(
                    input_shape, f"noise_shape {ns} has {len(ns)} entries but the input has {len(full)} axes "
                                 "(the batch axis included)",
                    hint=f"give {len(full)} entries, e.g. {[None] * len(full)} with 1 where the draw is shared")
            for i, (n, d) in enumerate(zip(ns[1:], input_shape, strict=True), start=1):
                if n is not None and n != 1 and d is not None and n != d:
                    raise self.shape_error(input_shape, f"noise_shape[{i}] = {n} is neither 1 nor the input's "
                                                        f"size {d} on that axis", hint="use null, 1 or the size")
        return input_shape

    def flops(self, input_shape, output_shape):
        return elements(input_shape)

    def _noise_shape(self, x):
        ns = self.config.noise_shape
        if ns is None:
            return x.shape
        if len(ns) != x.ndim:
            raise self.shape_error(tuple(x.shape[1:]), f"noise_shape {ns} has {len(ns)} entries but the input has "
                                                       f"{x.ndim} axes (the batch axis included)")
        shape = tuple(x.shape[i] if n is None else n for i, n in enumerate(ns))
        for i, (n, d) in enumerate(zip(shape, x.shape, strict=True)):
            if n != 1 and n != d:
                raise self.shape_error(tuple(x.shape[1:]), f"noise_shape {ns} does not broadcast to the batch "
                                                           f"shape {tuple(x.shape)} (axis {i})",
                                       hint="use null or 1 for the batch axis")
        return shape

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        rate = self.config.rate
        if not training or rate == 0.0:
            return x, None
        if rng is None:
            raise ValueError("Dropout in training needs an rng")
        from ...kernels.elementwise import dropout

        # one 64-bit key from the layer's stream fixes the whole mask (counter-based draws, see the kernel)
        key = int(rng.integers(0, 1 << 64, dtype=np.uint64))
        shape = self._noise_shape(x)
        if shape == x.shape:
            return dropout(x, rate, key)
        _, scale = dropout(np.ones(shape, dtype=x.dtype), rate, key)  # drawn at noise_shape, then broadcast
        return x * scale, scale

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        if cache is None:
            return dy, {}
        return dy * cache, {}
