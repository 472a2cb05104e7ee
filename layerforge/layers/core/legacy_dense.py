"""Keras 1's Highway and MaxoutDense layers."""

from __future__ import annotations

import math

from pydantic import Field

from .._numpy import np
from ..base import Example, Layer, ParamSpec, register
from ..fields import ActivationName, InitializerSpec
from ..weighted import KernelBiasConfig


@register
class Highway(Layer):
    """Keras 1 highway layer on a 2D input (B, n) -> (B, n): T = sigmoid(x @ carry_kernel + carry_bias),
    H = activation(x @ kernel + bias), y = T*H + (1-T)*x. Despite its Keras 1 name `W_carry` (here
    `carry_kernel`) produces the transform gate; `carry_bias` starts at ONES (gate ~0.73, as Keras 1).
    Weights in order kernel, carry_kernel, bias, carry_bias (2n^2 + 2n parameters; 2n^2 without bias).
    Regularizers and constraints apply to kernel and bias only. Keras 1's deprecated `transform_bias` is
    accepted and ignored."""

    type = "Highway"
    family = "core"

    class Config(KernelBiasConfig):
        activation: ActivationName = Field("linear", description="activation of the transform H")
        use_bias: bool = Field(True, description="add bias and carry_bias (Keras 1: bias)")
        kernel_initializer: InitializerSpec = Field(
            "glorot_uniform", description="initializer of kernel and carry_kernel (Keras 1: init)")
        carry_bias_initializer: InitializerSpec = Field("ones", description="initializer of carry_bias (Keras 1: "
                                                                            "always ones)")
        accepts_input_dim = "vector"

        @classmethod
        def upgrade(cls, data):
            data.pop("transform_bias", None)  # deprecated and ignored by Keras 1 itself
            return data

    examples = [
        Example({"type": "Highway", "input_dim": 32}, (32,), output_shape=(32,), params=2112, gradcheck=False,
                note="reference figure"),
        Example({"type": "Highway", "activation": "tanh"}, (5,), output_shape=(5,), params=60),
        Example({"type": "Highway", "bias": False, "init": "he_normal", "transform_bias": -2}, (4,),
                output_shape=(4,), params=32),
    ]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 1 or input_shape[0] is None:
            raise self.shape_error(input_shape, "Highway needs a 2D input (batch, features) with a known size",
                                   hint="insert a Flatten before it, or wrap it in TimeDistributed for sequences")
        return input_shape

    def param_specs(self, input_shape):
        c = self.config
        n = input_shape[-1]
        specs = [ParamSpec("kernel", (n, n), c.kernel_initializer, regularizer=c.kernel_regularizer,
                           constraint=c.kernel_constraint),
                 ParamSpec("carry_kernel", (n, n), c.kernel_initializer)]
        if c.use_bias:
            specs += [ParamSpec("bias", (n,), c.bias_initializer, regularizer=c.bias_regularizer,
                                constraint=c.bias_constraint),
                      ParamSpec("carry_bias", (n,), c.carry_bias_initializer)]
        return specs

    def flops(self, input_shape, output_shape):
        return 2 * input_shape[-1] ** 2

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ...activations import activate

        zt = x @ params["carry_kernel"]
        zh = x @ params["kernel"]
        if self.config.use_bias:
            zt += params["carry_bias"]
            zh += params["bias"]
        t = activate("sigmoid", zt)
        h = activate(self.config.activation, zh)
        y = x + t * (h - x)
        return y, (x, t, zh, h)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ...activations import activate_backward

        x, t, zh, h = cache
        dzt = dy * (h - x) * t * (1 - t)
        dzh = activate_backward(self.config.activation, zh, h, dy * t)
        dx = dy * (1 - t) + dzh @ params["kernel"].T + dzt @ params["carry_kernel"].T
        grads = {"kernel": x.T @ dzh, "carry_kernel": x.T @ dzt}
        if self.config.use_bias:
            grads["bias"] = dzh.sum(axis=0)
            grads["carry_bias"] = dzt.sum(axis=0)
        return dx, grads


@register
class MaxoutDense(Layer):
    """Keras 1 maxout layer on a 2D input (B, in) -> (B, units): y[:, j] = max_k (x @ kernel[k] + bias[k])[j]
    over `nb_feature` linear pieces. No activation. Weights kernel (nb_feature, in, units) and bias
    (nb_feature, units); glorot-type initializers use Keras 1's fans for a 3D weight
    (fan_in = fan_out = sqrt(nb_feature*in*units)). Keras 1 name of `units`: output_dim."""

    type = "MaxoutDense"
    family = "core"

    class Config(KernelBiasConfig):
        units: int = Field(gt=0, description="output size (Keras 1: output_dim)")
        nb_feature: int = Field(4, gt=0, description="number of linear pieces the maximum is taken over")
        use_bias: bool = Field(True, description="add a bias per piece (Keras 1: bias)")
        accepts_input_dim = "vector"

    examples = [
        Example({"type": "MaxoutDense", "output_dim": 10, "nb_feature": 4, "input_dim": 20}, (20,),
                output_shape=(10,), params=840, gradcheck=False, note="reference figure"),
        Example({"type": "MaxoutDense", "units": 3, "nb_feature": 2}, (5,), output_shape=(3,), params=36),
        Example({"type": "MaxoutDense", "units": 4, "nb_feature": 3, "use_bias": False}, (3,), output_shape=(4,),
                params=36),
    ]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 1 or input_shape[0] is None:
            raise self.shape_error(input_shape, "MaxoutDense needs a 2D input (batch, features) with a known size",
                                   hint="insert a Flatten before it, or wrap it in TimeDistributed for sequences")
        return (self.config.units,)

    def param_specs(self, input_shape):
        c = self.config
        k, n_in, u = c.nb_feature, input_shape[-1], c.units
        fan = math.sqrt(k * n_in * u)
        specs = [ParamSpec("kernel", (k, n_in, u), c.kernel_initializer, regularizer=c.kernel_regularizer,
                           constraint=c.kernel_constraint, fan=(fan, fan))]
        if c.use_bias:
            specs.append(ParamSpec("bias", (k, u), c.bias_initializer, regularizer=c.bias_regularizer,
                                   constraint=c.bias_constraint))
        return specs

    def flops(self, input_shape, output_shape):
        return self.config.nb_feature * input_shape[-1] * self.config.units

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        k, u = self.config.nb_feature, self.config.units
        w = params["kernel"]  # (k, in, u) -> (in, k*u): one GEMM for every piece
        z = (x @ w.transpose(1, 0, 2).reshape(w.shape[1], k * u)).reshape(x.shape[0], k, u)
        if self.config.use_bias:
            z += params["bias"]
        idx = z.argmax(axis=1)  # (B, u)
        y = np.take_along_axis(z, idx[:, None, :], axis=1)[:, 0, :]
        return y, (x, idx)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        x, idx = cache
        k, u = self.config.nb_feature, self.config.units
        w = params["kernel"]
        n_in = w.shape[1]
        dz = np.zeros((x.shape[0], k, u), dtype=dy.dtype)
        np.put_along_axis(dz, idx[:, None, :], dy[:, None, :], axis=1)
        dz2 = dz.reshape(x.shape[0], k * u)
        grads = {"kernel": (x.T @ dz2).reshape(n_in, k, u).transpose(1, 0, 2)}
        if self.config.use_bias:
            grads["bias"] = dz.sum(axis=0)
        dx = dz2 @ w.transpose(1, 0, 2).reshape(n_in, k * u).T
        return dx, grads
