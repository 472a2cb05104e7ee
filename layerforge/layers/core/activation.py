"""Activation: an activation function as a layer of its own."""

from __future__ import annotations

from pydantic import Field

from ..base import Example, Layer, LayerConfig, elements, register
from ..fields import ActivationName


@register
class Activation(Layer):
    """Applies an activation function elementwise (softmax-like ones along the last axis). No weights; the
    incoming mask passes through."""

    type = "Activation"
    family = "core"
    supports_masking = True

    class Config(LayerConfig):
        activation: ActivationName = Field(description="activation name, e.g. relu, tanh, softmax")

    examples = [
        Example({"type": "Activation", "activation": "tanh"}, (4, 3), output_shape=(4, 3), params=0, mask=True),
        Example({"type": "Activation", "activation": "softmax"}, (5,), output_shape=(5,), params=0),
        Example({"type": "Activation", "activation": "elu"}, (2, 3, 2), output_shape=(2, 3, 2), params=0),
        Example({"type": "Activation", "activation": "swish"}, (7,), output_shape=(7,), params=0),
    ]

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def flops(self, input_shape, output_shape):
        return 0 if self.config.activation == "linear" else elements(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ...activations import activate

        y = activate(self.config.activation, x)
        return y, (x, y)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ...activations import activate_backward

        x, y = cache
        return activate_backward(self.config.activation, x, y, dy), {}
