"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, Permute, RepeatVector,
ActivityRegularization, Masking, Highway, MaxoutDense."""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from .base import Example, Layer, LayerConfig, ParamSpec, register
from .fields import ActivationName, ConstraintSpec, InitializerSpec, RegularizerSpec


def _known_last_dim(layer: Layer, shape, what: str = "last axis") -> int:
    if len(shape) < 1 or shape[-1] is None:
        raise layer.shape_error(shape, f"the {what} must have a known size")
    return shape[-1]


@register
class Dense(Layer):
    """Fully connected layer: ``activation(x @ kernel + bias)`` on the last axis (any rank >= 2)."""

    type = "Dense"
    family = "core"
    supports_masking = True  # Keras 3: Dense passes masks through

    class Config(LayerConfig):
        units: int = Field(gt=0, description="output size (Keras 1: output_dim)")
        activation: ActivationName = Field("linear", description="activation applied to the output")
        use_bias: bool = Field(True, description="add a bias vector (Keras 1: bias)")
        kernel_initializer: InitializerSpec = Field("glorot_uniform", description="kernel initializer (Keras 1: init)")
        bias_initializer: InitializerSpec = Field("zeros", description="bias initializer")
        kernel_regularizer: RegularizerSpec = Field(None, description="penalty on the kernel (Keras 1: W_regularizer)")
        bias_regularizer: RegularizerSpec = Field(None, description="penalty on the bias (Keras 1: b_regularizer)")
        activity_regularizer: RegularizerSpec = Field(None, description="penalty on the output")
        kernel_constraint: ConstraintSpec = Field(None, description="constraint on the kernel (Keras 1: W_constraint)")
        bias_constraint: ConstraintSpec = Field(None, description="constraint on the bias (Keras 1: b_constraint)")
        accepts_input_dim = "vector"

    examples = [
        Example({"type": "Dense", "units": 64, "input_dim": 20}, (20,), output_shape=(64,), params=1344),
        Example({"type": "Dense", "units": 4, "activation": "tanh"}, (3, 5), output_shape=(3, 4), params=24),
        Example({"type": "Dense", "units": 3, "use_bias": False, "activation": "softmax"}, (6,),
                output_shape=(3,), params=18),
    ]

    def output_shape(self, input_shape):
        # Keras applies Dense to the last axis of any rank (per time step / per pixel).
        _known_last_dim(self, input_shape)
        return tuple(input_shape[:-1]) + (self.config.units,)

    def param_specs(self, input_shape):
        c = self.config
        n_in = input_shape[-1]
        specs = [ParamSpec("kernel", (n_in, c.units), c.kernel_initializer, regularizer=c.kernel_regularizer,
                           constraint=c.kernel_constraint)]
        if c.use_bias:
            specs.append(ParamSpec("bias", (c.units,), c.bias_initializer, regularizer=c.bias_regularizer,
                                   constraint=c.bias_constraint))
        return specs

    def flops(self, input_shape, output_shape):
        steps = math.prod(d or 1 for d in input_shape[:-1])
        return steps * input_shape[-1] * self.config.units

    def forward(self, params, x, *, training=False, rng=None, mask=None):
        from ..engine.activations import activate

        z = x @ params["kernel"]
        if self.config.use_bias:
            z += params["bias"]
        y = activate(self.config.activation, z)
        return y, (x, z, y)

    def backward(self, params, dy, cache):
        from ..engine.activations import activate_backward

        x, z, y = cache
        dz = activate_backward(self.config.activation, z, y, dy)
        x2 = x.reshape(-1, x.shape[-1])
        dz2 = dz.reshape(-1, dz.shape[-1])
        grads = {"kernel": x2.T @ dz2}
        if self.config.use_bias:
            grads["bias"] = dz2.sum(axis=0)
        dx = dz @ params["kernel"].T
        return dx, grads
