"""Dense: y = act(x W + b) over the last axis, the activation's derivative fused with the bias gradient."""

from __future__ import annotations

from pydantic import Field

from ...activations import DENSE_FUSED
from .._numpy import np
from ..base import Example, Layer, ParamSpec, elements, fitting_buffer, register
from ..fields import ActivationName
from ..weighted import KernelBiasConfig
from .base_core import _known_last_dim


@register
class Dense(Layer):
    """Fully connected layer: ``activation(x @ kernel + bias)`` on the last axis (any rank >= 2)."""

    type = "Dense"
    family = "core"
    supports_masking = True  # Keras 3: Dense passes masks through

    class Config(KernelBiasConfig):
        units: int = Field(gt=0, description="output size (Keras 1: output_dim)")
        activation: ActivationName = Field("linear", description="activation applied to the output")
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
        steps = elements(input_shape[:-1])
        return steps * input_shape[-1] * self.config.units

    # Speed (numerics unchanged in meaning): the GEMM runs on the input flattened to 2-D; bias and activation
    # are one fused Numba pass over the GEMM output (kernels.elementwise.bias_act) for the activations whose
    # derivative needs only the output, which is then the only array kept; backward fuses the activation
    # derivative with the bias gradient, skips dx when nothing upstream needs it (``need_dx=False``) and writes
    # the weight gradients into the engine's buffers when it provides them (``out``, see Layer.backward).
    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ...activations import activate

        c = self.config
        kernel = params["kernel"]
        x2 = x.reshape(-1, x.shape[-1])
        z = x2 @ kernel
        out_shape = x.shape[:-1] + (c.units,)
        if c.activation in _FUSED_ACTIVATIONS and z.dtype == kernel.dtype and z.flags.c_contiguous:
            from ...kernels import elementwise as E

            bias = params["bias"] if c.use_bias else kernel[0]  # any 1-D array of the dtype: unread
            E.bias_act(z, bias, c.use_bias, E.FUSED[c.activation], z.dtype.type(1))
            y = z.reshape(out_shape)
            return y, (x, None, y)
        if c.use_bias:
            z += params["bias"]
        z = z.reshape(out_shape)
        y = activate(c.activation, z)
        return y, (x, z, y)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ...activations import activate_backward

        c = self.config
        x, z, y = cache
        kernel = params["kernel"]
        dy2 = dy.reshape(-1, c.units)
        db = None
        if z is None and c.activation != "linear" and dy.dtype == y.dtype:
            from ...kernels import elementwise as E

            dy2 = np.ascontiguousarray(dy2)
            y2 = y.reshape(-1, c.units)
            dz2 = np.empty_like(y2)
            if c.use_bias:
                db = fitting_buffer(out, "bias", (c.units,), y2.dtype)
                if db is None:
                    db = np.empty(c.units, dtype=y2.dtype)
            E.act_backward_bias(dy2, y2, E.FUSED[c.activation], dz2, db if c.use_bias else kernel[0], c.use_bias,
                                y2.dtype.type(1))  # without a bias the db argument is not written
        else:
            dz2 = activate_backward(c.activation, z, y, dy).reshape(-1, c.units)
        grads = {}
        x2 = x.reshape(-1, x.shape[-1])
        gk = fitting_buffer(out, "kernel", kernel.shape, np.result_type(x2, dz2))
        grads["kernel"] = np.matmul(x2.T, dz2, out=gk) if gk is not None else x2.T @ dz2
        if c.use_bias:
            if db is None:
                gb = fitting_buffer(out, "bias", (c.units,), dz2.dtype)
                db = dz2.sum(axis=0, out=gb) if gb is not None else dz2.sum(axis=0)
            grads["bias"] = db
        if not need_dx:
            return None, grads
        dx = (dz2 @ kernel.T).reshape(x.shape[:-1] + (kernel.shape[0],))
        return dx, grads


_FUSED_ACTIVATIONS = frozenset(DENSE_FUSED)  # the registry's activations with a fused Dense epilogue
