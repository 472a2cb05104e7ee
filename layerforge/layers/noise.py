"""Noise layers: GaussianNoise and GaussianDropout (active only in training, identity in inference)."""

from __future__ import annotations

import math

from pydantic import Field

from ._numpy import np
from .base import Example, Layer, LayerConfig, elements, register


def _normal(rng, seed, shape, dtype):
    """Standard normal noise in ``dtype`` drawn from the engine's rng (a seeded one if none is given)."""
    if rng is None:
        rng = np.random.default_rng(seed)
    if dtype in (np.float32, np.float64):
        return rng.standard_normal(shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


class _NoiseLayer(Layer):
    family = "noise"
    supports_masking = True
    stochastic = True

    def flops(self, input_shape, output_shape):
        return elements(input_shape)


@register
class GaussianNoise(_NoiseLayer):
    """Adds zero-centred Gaussian noise ``N(0, stddev^2)`` to every element in training; identity in inference.
    No weights; masks pass through. Keras 1 called the standard deviation ``sigma``. (Keras 3 also rejects
    stddev > 1; layerforge accepts any stddev >= 0 as Keras 1 did.)"""

    type = "GaussianNoise"

    class Config(LayerConfig):
        stddev: float = Field(ge=0, description="standard deviation of the additive noise (Keras 1: sigma)")
        seed: int | None = Field(None, description="seed of the noise (default: derived from the model seed)")

    examples = [
        Example({"type": "GaussianNoise", "stddev": 0.1}, (64,), output_shape=(64,), params=0),
        Example({"type": "GaussianNoise", "sigma": 0.5}, (4, 3), output_shape=(4, 3), params=0, mask=True),
        Example({"type": "GaussianNoise", "stddev": 0.2}, (3, 2), params=0, training=False,
                note="inference: identity"),
    ]

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        sd = self.config.stddev
        if not training or sd <= 0:
            return x, None
        noise = _normal(rng, self.config.seed, x.shape, x.dtype)
        noise *= x.dtype.type(sd)
        return x + noise, None

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy, {}


@register
class GaussianDropout(_NoiseLayer):
    """Multiplies every element by ``N(1, rate/(1-rate))`` noise in training (standard deviation
    ``sqrt(rate/(1-rate))``, as Dropout with the same rate); identity in inference and unless 0 < rate < 1.
    No weights; masks pass through. Keras 1 called the rate ``p``."""

    type = "GaussianDropout"

    class Config(LayerConfig):
        rate: float = Field(ge=0, le=1, description="drop probability; noise sd = sqrt(rate/(1-rate)) (Keras 1: p)")
        seed: int | None = Field(None, description="seed of the noise (default: derived from the model seed)")

    examples = [
        Example({"type": "GaussianDropout", "rate": 0.5}, (64,), output_shape=(64,), params=0),
        Example({"type": "GaussianDropout", "p": 0.2}, (4, 3), output_shape=(4, 3), params=0, mask=True),
        Example({"type": "GaussianDropout", "rate": 0.3}, (3, 2), params=0, training=False,
                note="inference: identity"),
    ]

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        rate = self.config.rate
        if not training or not 0 < rate < 1:
            return x, None
        noise = _normal(rng, self.config.seed, x.shape, x.dtype)
        noise *= x.dtype.type(math.sqrt(rate / (1.0 - rate)))
        noise += x.dtype.type(1)
        return x * noise, noise

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return (dy if cache is None else dy * cache), {}
