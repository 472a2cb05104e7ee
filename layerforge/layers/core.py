"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, Permute, RepeatVector,
ActivityRegularization, Masking, Highway, MaxoutDense."""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from ..activations import DENSE_FUSED
from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, elements, fitting_buffer, register
from .fields import ActivationName, DataFormat, InitializerSpec
from .weighted import KernelBiasConfig


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
        from ..activations import activate

        c = self.config
        kernel = params["kernel"]
        x2 = x.reshape(-1, x.shape[-1])
        z = x2 @ kernel
        out_shape = x.shape[:-1] + (c.units,)
        if c.activation in _FUSED_ACTIVATIONS and z.dtype == kernel.dtype and z.flags.c_contiguous:
            from ..kernels import elementwise as E

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
        from ..activations import activate_backward

        c = self.config
        x, z, y = cache
        kernel = params["kernel"]
        dy2 = dy.reshape(-1, c.units)
        db = None
        if z is None and c.activation != "linear" and dy.dtype == y.dtype:
            from ..kernels import elementwise as E

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


# ---------------------------------------------------------------------------------------------- helpers


def _show(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------------------------------------- Activation

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
        from ..activations import activate

        y = activate(self.config.activation, x)
        return y, (x, y)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..activations import activate_backward

        x, y = cache
        return activate_backward(self.config.activation, x, y, dy), {}


# ---------------------------------------------------------------------------------------------- Dropout

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
        from ..kernels.elementwise import dropout

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


# ---------------------------------------------------------------------------------------------- Flatten

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


# ---------------------------------------------------------------------------------------------- Reshape

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


# ---------------------------------------------------------------------------------------------- Permute

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


# ---------------------------------------------------------------------------------------------- RepeatVector

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


# ---------------------------------------------------------------------------------------------- ActivityRegularization

@register
class ActivityRegularization(Layer):
    """Identity layer that adds `l1*sum(|y|) + l2*sum(y^2)` of its output to the training loss (applied by the
    engine through `activity_penalty()`). The incoming mask passes through."""

    type = "ActivityRegularization"
    family = "core"
    supports_masking = True

    class Config(LayerConfig):
        l1: float = Field(0.0, ge=0.0, description="L1 penalty factor on the output")
        l2: float = Field(0.0, ge=0.0, description="L2 penalty factor on the output")

    examples = [
        Example({"type": "ActivityRegularization", "l1": 0.01}, (6,), output_shape=(6,), params=0),
        Example({"type": "ActivityRegularization", "l1": 0.001, "l2": 0.01}, (4, 3), output_shape=(4, 3), params=0,
                mask=True),
    ]

    def activity_penalty(self) -> dict | None:
        """The penalty on this layer's output in the regularizer form ``{"l1": .., "l2": ..}`` (None if zero)."""
        c = self.config
        if c.l1 == 0.0 and c.l2 == 0.0:
            return None
        return {"l1": float(c.l1), "l2": float(c.l2)}

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        return x, None

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy, {}


# ---------------------------------------------------------------------------------------------- Masking

@register
class Masking(Layer):
    """Marks time steps to skip: for a (B, T, F) input the mask is True at step t when ANY feature differs from
    `mask_value` (a step is masked only when all its features equal it). The output is `x * mask` (masked steps
    become 0, which matters when mask_value is not 0) and carries the new mask (an incoming mask is replaced)."""

    type = "Masking"
    family = "core"
    supports_masking = True

    class Config(LayerConfig):
        mask_value: float = Field(0.0, description="steps whose features all equal this value are masked")

    examples = [
        Example({"type": "Masking"}, (4, 3), output_shape=(4, 3), params=0, mask=True),
        Example({"type": "Masking", "mask_value": -1.0}, (5, 2), output_shape=(5, 2), params=0),
    ]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise self.shape_error(input_shape, "Masking needs a 3D input (batch, steps, features)",
                                   hint="reshape the input to (steps, features); a 2D input has no steps to mask")
        return input_shape

    def flops(self, input_shape, output_shape):
        return elements(input_shape)

    def _mask(self, x):
        return np.any(x != x.dtype.type(self.config.mask_value), axis=-1)

    def compute_mask(self, x, mask):
        return self._mask(x)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        keep = self._mask(x)[..., None].astype(x.dtype)
        return x * keep, keep

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy * cache, {}


# ---------------------------------------------------------------------------------------------- Highway

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
        from ..activations import activate

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
        from ..activations import activate_backward

        x, t, zh, h = cache
        dzt = dy * (h - x) * t * (1 - t)
        dzh = activate_backward(self.config.activation, zh, h, dy * t)
        dx = dy * (1 - t) + dzh @ params["kernel"].T + dzt @ params["carry_kernel"].T
        grads = {"kernel": x.T @ dzh, "carry_kernel": x.T @ dzt}
        if self.config.use_bias:
            grads["bias"] = dzh.sum(axis=0)
            grads["carry_bias"] = dzt.sum(axis=0)
        return dx, grads


# ---------------------------------------------------------------------------------------------- MaxoutDense

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
