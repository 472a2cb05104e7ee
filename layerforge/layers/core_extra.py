"""Layers real Keras model files use beyond the Keras 1 list (the simple ones): InputLayer (Input), Identity,
TimeDistributedDense (Keras 1), SpatialDropout1D/2D/3D, ReLU, Softmax."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, elements, register
from .fields import ActivationName, DataFormat
from .weighted import KernelBiasConfig

_DTYPES = {"float32": "float32", "float64": "float64", "int32": "int32", "int64": "int64", "float": "float32",
           "float16": "float32", "bfloat16": "float32", "int": "int32", "uint8": "int32", "int8": "int32",
           "int16": "int32", "bool": "int32"}


# ---------------------------------------------------------------------------------------------- InputLayer

@register
class InputLayer(Layer):
    """An explicit input declaration, as Keras writes it in a model file: ``{type: InputLayer, batch_shape: [null,
    28, 28, 1]}`` (Keras 3), ``batch_input_shape`` (Keras 1/2), ``shape`` (the Keras 3 ``Input(shape=...)``
    call) or ``input_shape``, and ``dtype``. When the config has no top-level ``input_shape:``/``inputs:``, each
    InputLayer without ``inputs:`` is a model input under the layer's name (unnamed: input, input_1, ...), as in
    a Keras functional model: other layers list it in their ``inputs:`` (or, right after it, take it as the
    previous layer). Otherwise an InputLayer is a layer that checks the shape it receives and passes it (and its
    mask) on unchanged."""

    type = "InputLayer"
    family = "core"
    aliases = {"Input": {}}
    supports_masking = True

    class Config(LayerConfig):
        dtype: Literal["float32", "float64", "int32", "int64"] | None = Field(
            None, description="element type of the input (Keras' dtype; float16/bfloat16 are read as float32, "
                              "integer types as int32); null: float32")
        sparse: bool = Field(False, description="Keras' sparse flag; only false (dense inputs) is supported")
        ragged: bool = Field(False, description="Keras' ragged flag; only false is supported")
        optional: bool = Field(False, description="Keras 3's optional flag; only false is supported")
        batch_size: int | None = Field(None, ge=1, description="Keras 3 Input(batch_size=...): a fixed batch size")
        keras1_renames = {"input_dtype": "dtype", "batch_shape": "batch_input_shape", "shape": "input_shape"}

        @field_validator("dtype", mode="before")
        @classmethod
        def _dtype(cls, v: Any):
            if v is None:
                return None
            if isinstance(v, dict):  # Keras 3 serialises a DTypePolicy as {class_name, config: {name}}
                v = (v.get("config") or {}).get("name", v.get("name"))
            name = _DTYPES.get(str(v).lower())
            if name is None:
                raise ValueError(f"dtype must be one of float32, float64, int32, int64 (or a Keras name of one), "
                                 f"not {v!r}")
            return name

        @model_validator(mode="after")
        def _dense(self):
            for flag in ("sparse", "ragged", "optional"):
                if getattr(self, flag):
                    raise ValueError(f"{flag} inputs are not supported; remove `{flag}: true`")
            if self.input_shape is None and self.batch_input_shape is None:
                if self.inputs is None:
                    raise ValueError("an InputLayer declares a shape: give `shape: [...]` (or Keras' batch_shape / "
                                     "batch_input_shape)")
            if self.batch_size is not None and self.batch_input_shape is None and self.input_shape is not None:
                self.batch_input_shape = [self.batch_size, *self.input_shape]
                self.input_shape = None
            self.batch_size = None
            return self

    examples = [
        Example({"type": "InputLayer", "batch_shape": [None, 4]}, (4,), output_shape=(4,), params=0),
        Example({"type": "Input", "shape": [3, 2], "dtype": "float32"}, (3, 2), output_shape=(3, 2), params=0,
                mask=True),
        Example({"type": "InputLayer", "batch_input_shape": [None, 5, 3], "input_dtype": "float32",
                 "sparse": False}, (5, 3), output_shape=(5, 3), params=0, note="Keras 1 config"),
    ]

    def declared_shape(self):
        c = self.config
        if c.batch_input_shape is not None:
            return tuple(c.batch_input_shape[1:])
        return None if c.input_shape is None else tuple(c.input_shape)

    def output_shape(self, input_shape):
        declared = self.declared_shape()
        if declared is not None and tuple(input_shape) != declared:
            raise self.shape_error(input_shape, f"the InputLayer declares shape {declared}",
                                   hint="declare the shape its input really has")
        return tuple(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        return x, None

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy, {}


# ---------------------------------------------------------------------------------------------- Identity

@register
class Identity(Layer):
    """Returns its input unchanged (Keras 3 ``Identity``); the mask passes through."""

    type = "Identity"
    family = "core"
    supports_masking = True

    class Config(LayerConfig):
        pass

    examples = [
        Example({"type": "Identity"}, (4,), output_shape=(4,), params=0),
        Example({"type": "Identity"}, (3, 2), output_shape=(3, 2), params=0, mask=True),
    ]

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        return x, None

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy, {}


# ---------------------------------------------------------------------------------------------- TimeDistributedDense

@register
class TimeDistributedDense(Layer):
    """Keras 1's ``TimeDistributedDense``: the same Dense applied to every time step of a (steps, features) input,
    ``activation(x @ W + b)``. Weights keep their Keras 1 names: ``W (input_dim, output_dim)`` and ``b
    (output_dim,)``. Same maths as ``TimeDistributed(Dense)``; the mask passes through."""

    type = "TimeDistributedDense"
    family = "core"
    supports_masking = True

    class Config(KernelBiasConfig):
        units: int = Field(gt=0, description="output size per time step (Keras 1: output_dim)")
        activation: ActivationName = Field("linear", description="activation applied to the output")
        accepts_input_dim = "sequence"

    examples = [
        Example({"type": "TimeDistributedDense", "output_dim": 8, "input_dim": 16, "input_length": 10}, (10, 16),
                output_shape=(10, 8), params=136),
        Example({"type": "TimeDistributedDense", "units": 3, "activation": "tanh"}, (4, 5), output_shape=(4, 3),
                params=18, mask=True),
        Example({"type": "TimeDistributedDense", "units": 2, "bias": False}, (3, 4), output_shape=(3, 2), params=8),
    ]

    def output_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise self.shape_error(input_shape, "TimeDistributedDense takes (time steps, features) with a known "
                                                "feature size",
                                   hint="for other ranks use Dense (it maps the last axis)")
        return (input_shape[0], self.config.units)

    def param_specs(self, input_shape):
        c = self.config
        specs = [ParamSpec("W", (input_shape[-1], c.units), c.kernel_initializer, regularizer=c.kernel_regularizer,
                           constraint=c.kernel_constraint)]
        if c.use_bias:
            specs.append(ParamSpec("b", (c.units,), c.bias_initializer, regularizer=c.bias_regularizer,
                                   constraint=c.bias_constraint))
        return specs

    def flops(self, input_shape, output_shape):
        return (input_shape[0] or 1) * input_shape[-1] * self.config.units

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..activations import activate

        c = self.config
        z = x.reshape(-1, x.shape[-1]) @ params["W"]
        if c.use_bias:
            z += params["b"]
        z = z.reshape(x.shape[:-1] + (c.units,))
        y = activate(c.activation, z)
        return y, (x, z, y)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..activations import activate_backward

        x, z, y = cache
        c = self.config
        dz = activate_backward(c.activation, z, y, dy).reshape(-1, c.units)
        x2 = x.reshape(-1, x.shape[-1])
        grads = {"W": x2.T @ dz}
        if c.use_bias:
            grads["b"] = dz.sum(axis=0)
        dx = (dz @ params["W"].T).reshape(x.shape) if need_dx else None
        return dx, grads


# ---------------------------------------------------------------------------------------------- SpatialDropout

class _SpatialDropout(Layer):
    """Dropout of whole feature maps: one draw per (sample, channel), shared along every spatial / time axis."""

    family = "core"
    stochastic = True
    supports_masking = True
    rank: ClassVar[int] = 1

    class Config(LayerConfig):
        rate: float = Field(ge=0.0, lt=1.0, description="fraction of the feature maps (channels) to drop, "
                                                         "0 <= rate < 1 (Keras 1: p)")
        data_format: DataFormat = Field("channels_last", description="where the channels are: channels_last or "
                                        "channels_first (Keras 1: dim_ordering tf / th)")
        seed: int | None = Field(None, description="per-layer seed for the draws; the model seed is used when unset")

    def output_shape(self, input_shape):
        if len(input_shape) != self.rank + 1:
            raise self.shape_error(input_shape, f"{self.type} takes {self.rank + 1}D samples "
                                                f"({self.rank} spatial/time axes and the channels)")
        return tuple(input_shape)

    def flops(self, input_shape, output_shape):
        return elements(input_shape)

    def _noise_shape(self, x):
        if self.config.data_format == "channels_last":
            return (x.shape[0],) + (1,) * self.rank + (x.shape[-1],)
        return (x.shape[0], x.shape[1]) + (1,) * self.rank

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        rate = self.config.rate
        if not training or rate == 0.0:
            return x, None
        if rng is None:
            raise ValueError(f"{self.type} in training needs an rng")
        from ..kernels.elementwise import dropout

        key = int(rng.integers(0, 1 << 64, dtype=np.uint64))
        _, scale = dropout(np.ones(self._noise_shape(x), dtype=x.dtype), rate, key)
        return x * scale, scale

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return (dy if cache is None else dy * cache), {}


@register
class SpatialDropout1D(_SpatialDropout):
    """Drops whole channels of a (steps, channels) input (channels_first: (channels, steps)): one draw per sample
    and channel, shared by every time step, survivors scaled by 1/(1-rate) (Keras 3; Keras 1 name of rate: p).
    Identity in inference."""

    type = "SpatialDropout1D"
    rank = 1
    examples = [
        Example({"type": "SpatialDropout1D", "rate": 0.5}, (6, 4), output_shape=(6, 4), params=0),
        Example({"type": "SpatialDropout1D", "p": 0.3}, (5, 3), output_shape=(5, 3), params=0, mask=True),
    ]


@register
class SpatialDropout2D(_SpatialDropout):
    """Drops whole feature maps of a (rows, cols, channels) input (channels_first: (channels, rows, cols)): one
    draw per sample and channel, survivors scaled by 1/(1-rate). Identity in inference."""

    type = "SpatialDropout2D"
    rank = 2
    examples = [
        Example({"type": "SpatialDropout2D", "rate": 0.5}, (3, 3, 4), output_shape=(3, 3, 4), params=0),
        Example({"type": "SpatialDropout2D", "p": 0.4, "dim_ordering": "th"}, (4, 2, 3), output_shape=(4, 2, 3),
                params=0),
    ]


@register
class SpatialDropout3D(_SpatialDropout):
    """Drops whole feature maps of a (dim1, dim2, dim3, channels) input (or channels first): one draw per sample
    and channel, survivors scaled by 1/(1-rate). Identity in inference."""

    type = "SpatialDropout3D"
    rank = 3
    examples = [
        Example({"type": "SpatialDropout3D", "rate": 0.5}, (2, 2, 2, 3), output_shape=(2, 2, 2, 3), params=0),
        Example({"type": "SpatialDropout3D", "rate": 0.25, "data_format": "channels_first"}, (3, 2, 2, 2),
                output_shape=(3, 2, 2, 2), params=0),
    ]


# ---------------------------------------------------------------------------------------------- ReLU

@register
class ReLU(Layer):
    """Keras 3 ``ReLU``: ``max_value`` where x >= max_value, x where threshold <= x < max_value, and
    ``negative_slope * (x - threshold)`` below the threshold. The mask passes through."""

    type = "ReLU"
    family = "core"
    supports_masking = True

    class Config(LayerConfig):
        max_value: float | None = Field(None, ge=0, description="upper bound of the output; null: none")
        negative_slope: float = Field(0.0, ge=0, description="slope below the threshold")
        threshold: float = Field(0.0, ge=0, description="below this value the output is negative_slope * (x - "
                                                        "threshold)")

    examples = [
        Example({"type": "ReLU"}, (6,), output_shape=(6,), params=0),
        Example({"type": "ReLU", "max_value": 0.8, "negative_slope": 0.1, "threshold": 0.2}, (4, 3),
                output_shape=(4, 3), params=0, mask=True),
        Example({"type": "ReLU", "max_value": 6.0}, (2, 2, 3), output_shape=(2, 2, 3), params=0),
    ]

    def flops(self, input_shape, output_shape):
        return elements(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        c = self.config
        below = x < c.threshold
        y = np.where(below, c.negative_slope * (x - c.threshold) if c.negative_slope else 0, x).astype(x.dtype)
        slope = np.where(below, x.dtype.type(c.negative_slope), x.dtype.type(1))
        if c.max_value is not None:
            top = x >= c.max_value
            y = np.where(top, x.dtype.type(c.max_value), y)
            slope = np.where(top, x.dtype.type(0), slope)
        return y, slope

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy * cache, {}


# ---------------------------------------------------------------------------------------------- Softmax

@register
class Softmax(Layer):
    """Keras 3 ``Softmax`` over ``axis`` (an axis or a list of axes, normalised jointly; counts the batch axis).
    With a (batch, time) mask on a 3D input, masked positions of a softmax over the time axis get -1e9 before
    the softmax and 0 after it, as Keras does with a mask. Numerically stable (the maximum is subtracted)."""

    type = "Softmax"
    family = "core"
    supports_masking = True

    class Config(LayerConfig):
        axis: int | list[int] = Field(-1, description="axis (or axes) normalised over, counting the batch axis")

        @field_validator("axis")
        @classmethod
        def _not_batch(cls, v):
            axes = v if isinstance(v, list) else [v]
            if 0 in axes or not axes:
                raise ValueError("axis 0 is the batch axis; normalise over a feature axis such as -1")
            return v

    examples = [
        Example({"type": "Softmax"}, (5,), output_shape=(5,), params=0),
        Example({"type": "Softmax", "axis": 1}, (4, 3), output_shape=(4, 3), params=0, mask=True,
                note="masked time axis"),
        Example({"type": "Softmax", "axis": [1, 2]}, (3, 2, 2), output_shape=(3, 2, 2), params=0),
    ]

    def _axes(self, ndim):
        axes = self.config.axis if isinstance(self.config.axis, list) else [self.config.axis]
        return tuple(sorted(a % ndim for a in axes))

    def output_shape(self, input_shape):
        rank = len(input_shape) + 1
        axes = self.config.axis if isinstance(self.config.axis, list) else [self.config.axis]
        if any(not (-rank <= a < rank) or a % rank == 0 for a in axes):
            raise self.shape_error(input_shape, f"axis {self.config.axis} is not a feature axis of a {rank}D input "
                                                "(batch axis included)")
        return tuple(input_shape)

    def flops(self, input_shape, output_shape):
        return 3 * elements(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        axes = self._axes(x.ndim)
        keep = None
        if mask is not None and mask.shape == x.shape[:mask.ndim]:
            keep = np.asarray(mask, dtype=bool).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
            x = np.where(keep, x, x.dtype.type(-1e9))
        z = x - x.max(axis=axes, keepdims=True)
        e = np.exp(z)
        y = e / e.sum(axis=axes, keepdims=True)
        if keep is not None:
            y = np.where(keep, y, x.dtype.type(0))
        return y, (y, axes)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        y, axes = cache
        return y * (dy - (dy * y).sum(axis=axes, keepdims=True)), {}
