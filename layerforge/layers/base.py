"""The layer contract and the registry.

A layer is one class: its pydantic ``Config`` (the only source of
hyper-parameters), the pure shape side (``output_shape``, ``param_specs``,
``flops``) and the maths (``forward``/``backward``). Registering the class is
all it takes for the YAML ``type:``, ``layerforge layers``, the JSON Schema and
the generic tests to know about it.

Shapes never include the batch axis: ``(28, 28, 1)``; a ``None`` entry is a
variable length. A single-input layer receives one shape/array, a layer with
``multi_input = True`` receives a list. A layer whose ``num_outputs`` is more
than one returns a list of shapes/arrays.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..errors import Problem, ShapeError

Shape = tuple  # ints (or None for a variable length), batch axis excluded

# Keras 1 argument names -> modern names. Applied to any layer whose Config has
# the modern field; a layer adds its own in ``Config.keras1_renames``.
KERAS1_RENAMES: dict[str, str] = {
    "output_dim": "units", "nb_filter": "filters", "init": "kernel_initializer",
    "W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer",
    "W_constraint": "kernel_constraint", "b_constraint": "bias_constraint", "bias": "use_bias",
    "border_mode": "padding", "subsample": "strides", "subsample_length": "strides",
    "filter_length": "kernel_size", "atrous_rate": "dilation_rate", "dim_ordering": "data_format",
    "inner_init": "recurrent_initializer", "inner_activation": "recurrent_activation",
    "U_regularizer": "recurrent_regularizer", "U_constraint": "recurrent_constraint",
    "dropout_W": "dropout", "dropout_U": "recurrent_dropout", "pool_length": "pool_size",
    "stride": "strides", "p": "rate", "sigma": "stddev", "input_dtype": "dtype",
}


_RENAME_TABLES: dict[type, dict[str, str]] = {}  # LayerConfig subclass -> its keras1_rename_table()


class Keras1Error(ValueError):
    """A Keras 1 spelling that cannot be translated. ``path`` (below the layer), ``key`` (point at the key, not the
    value), ``found`` and ``hint`` say where it is and how to fix it; the config floor turns it into a Problem."""

    def __init__(self, message: str, path: tuple = (), *, key: bool = False, found: str | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.path, self.key, self.found, self.hint = tuple(path), key, found, hint


class LayerConfig(BaseModel):
    """Fields every layer accepts."""

    model_config = ConfigDict(extra="forbid", defer_build=True, validate_default=True)

    type: str = Field(description="layer type")
    name: str | None = Field(None, description="unique name; referenced by `inputs:` and `outputs:`",
                             pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    inputs: list[str] | None = Field(
        None, description="names of the layers (or model inputs) feeding this one; `name:k` picks output k. "
                          "Default: the previous layer")
    trainable: bool = Field(True, description="false freezes this layer's weights")
    input_shape: list[int | None] | None = Field(
        None, description="Keras-style input shape without the batch axis (first layer only)")
    batch_input_shape: list[int | None] | None = Field(
        None, description="input shape with a fixed batch size first (first layer only; needed by stateful RNNs)")
    # Whether the config was loaded with allow_code (load_config(..., allow_code=True), the CLI's --allow-code):
    # only then may a Lambda `function:` import and run Python code. Not a YAML field: a config cannot allow itself.
    _code_allowed: bool = PrivateAttr(default=False)

    @property
    def code_allowed(self) -> bool:
        return self._code_allowed

    # Keras 1 names this layer accepts besides the global table (old -> new).
    keras1_renames: ClassVar[dict[str, str]] = {}
    # Global Keras 1 names that mean something else (or nothing) for this layer.
    keras1_exclude: ClassVar[frozenset[str]] = frozenset()
    # Keras 1 names that `upgrade` turns into a modern field (e.g. nb_row, nb_col -> kernel_size); listed
    # so `layerforge layers` and the JSON Schema know them.
    keras1_structural: ClassVar[dict[str, str]] = {}
    # Keras 1 allowed `input_dim` (and `input_length` for sequences) on this layer as input shape.
    accepts_input_dim: ClassVar[str | None] = None  # None, "vector" or "sequence"

    @classmethod
    def keras1_rename_table(cls) -> dict[str, str]:
        """Every Keras 1 name this layer takes as a plain rename (old -> new): the global table's entries for the
        fields it has, less its exclusions, plus its own."""
        table = _RENAME_TABLES.get(cls)
        if table is None:  # once per class: every layer of a config reads it
            fields = cls.model_fields
            table = {**{o: n for o, n in KERAS1_RENAMES.items() if n in fields and o not in cls.keras1_exclude},
                     **cls.keras1_renames}
            _RENAME_TABLES[cls] = table
        return table

    @classmethod
    def from_keras1(cls, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """``raw`` in modern form: canonical type with its alias's presets (Add -> Merge, mode: sum), Keras 1
        names renamed, `input_dim` / `input_length` as input_shape, then ``upgrade``. Also returns modern name ->
        the Keras 1 name written, so an error can point at what the user wrote. Raises Keras1Error."""
        fields = cls.model_fields
        data = dict(raw)
        type_name = data.get("type")
        canonical, preset = TYPE_NAMES.get(type_name, (type_name, {})) if isinstance(type_name, str) else (None, {})
        if canonical is not None:
            data["type"] = canonical
        renamed: dict[str, str] = {}
        for old, new in cls.keras1_rename_table().items():
            if old in data and old not in fields:
                if new in data:
                    raise Keras1Error(f"'{old}' (Keras 1) and '{new}' mean the same parameter; give only one",
                                      (old,), key=True)
                data[new] = data.pop(old)
                renamed[new] = old
        for key, value in preset.items():
            if key in data and data[key] != value:
                raise Keras1Error(f"type {type_name} fixes {key}={value!r}", (key,), found=_describe(data[key]),
                                  hint=f"use type {canonical} to choose {key}")
            data[key] = value
        # Keras 1 input_dim / input_length on the first layer of a Sequential model
        if cls.accepts_input_dim and ("input_dim" in data or "input_length" in data) and "input_dim" not in fields:
            dim = data.pop("input_dim", None)
            length = data.pop("input_length", None)
            if "input_shape" not in data:
                data["input_shape"] = [length, dim] if cls.accepts_input_dim == "sequence" else [dim]
        try:
            data = cls.upgrade(data)
        except Keras1Error:
            raise
        except ValueError as exc:
            raise Keras1Error(str(exc)) from None
        return data, renamed

    @model_validator(mode="before")
    @classmethod
    def _keras1(cls, data):
        """Keras 1 configs validate as they are: their names become the modern ones before any field is read."""
        return cls.from_keras1(data)[0] if isinstance(data, dict) else data

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_input_as_list(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("seed", mode="before", check_fields=False)  # the stochastic layers' own seed
    @classmethod
    def _seed(cls, v):
        from .fields import seed_value

        return seed_value(v)

    @field_validator("input_shape", "batch_input_shape", mode="before")
    @classmethod
    def _strict_dims(cls, v):
        from .fields import strict_dims

        return strict_dims(v)

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Structural Keras 1 conversions beyond plain renames (e.g. nb_row + nb_col -> kernel_size)."""
        return data

    def public_dict(self) -> dict[str, Any]:
        """The config in canonical form, without unset common fields (for saved configs)."""
        out = self.model_dump(mode="json", exclude_none=False)
        for key in ("name", "inputs", "input_shape", "batch_input_shape"):
            if out.get(key) is None:
                out.pop(key, None)
        if out.get("trainable", True):
            out.pop("trainable", None)
        return out


@dataclass(frozen=True)
class ParamSpec:
    """A weight a layer owns: name, shape, how to initialise it and what to do with it."""

    name: str
    shape: tuple[int, ...]
    initializer: Any = "zeros"
    trainable: bool = True  # False: state kept apart (BatchNormalization moving statistics)
    regularizer: Any = None  # {"l1": .., "l2": ..} or None
    constraint: Any = None  # {"type": ..} / name, or None
    fan: tuple[int, int] | None = None  # (fan_in, fan_out) when the shape alone does not say

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


@dataclass
class Example:
    """A small configuration that the generic tests build, run and gradient-check."""

    config: dict[str, Any]
    input_shape: Any  # a Shape, or a list of Shapes for multi-input layers
    output_shape: Any = None  # expected output shape (reference figures)
    params: int | None = None  # expected total parameter count
    trainable_params: int | None = None
    int_input: int | None = None  # integer inputs drawn from [0, int_input) (Embedding)
    mask: bool = False  # feed a random (B, T) mask
    gradcheck: bool = True
    batch_size: int | None = None  # a fixed batch size (stateful layers)
    note: str = ""
    training: bool = True  # the mode the gradient check runs in
    tolerance: float = 1e-6


class Layer:
    """Base class; subclasses set the ClassVars and override what they need."""

    type: ClassVar[str]
    family: ClassVar[str]
    # alias type name -> preset config values (e.g. "Add": {"mode": "sum"})
    aliases: ClassVar[dict[str, dict[str, Any]]] = {}
    Config: ClassVar[type[LayerConfig]] = LayerConfig
    examples: ClassVar[list[Example]] = []
    multi_input: ClassVar[bool] = False
    supports_masking: ClassVar[bool] = False  # passes the incoming mask through unchanged
    stochastic: ClassVar[bool] = False  # draws from the rng in training
    # A frozen layer (trainable: false) of this type runs its forward in inference mode even while the model
    # trains (Keras 3's BatchNormalization); see training_mode.
    frozen_runs_inference: ClassVar[bool] = False

    def __init__(self, config: LayerConfig, name: str | None = None):
        self.config = config
        self.name = name or config.name or self.type.lower()
        self.state: dict[str, Any] = {}  # non-trainable weights and carried state
        self.input_shape: Any = None
        self.batch_size: int | None = None  # fixed batch size when the model declares one

    @property
    def reentrant(self) -> bool:
        """Whether one layer object may run inference passes of different batches at once, on different threads
        (each with its own workspace), in any order. True for every layer that keeps no per-call state; False
        for carried state (a stateful recurrent layer: batches must follow each other in order) and for user
        Python code (a Lambda ``function:`` may keep state of its own). Parallel predict asks every layer."""
        return True

    def training_mode(self, training: bool) -> bool:
        """The ``training`` flag this layer's forward runs with while the model runs with ``training``."""
        return training and (self.config.trainable or not self.frozen_runs_inference)

    # ------------------------------------------------------------------ shape side (pure)
    def output_shape(self, input_shape):
        """Output shape(s) for the given input shape(s); raise ShapeError if impossible."""
        return input_shape

    def param_specs(self, input_shape) -> list[ParamSpec]:
        return []

    def flops(self, input_shape, output_shape) -> int:
        """Forward multiply-adds per sample."""
        return 0

    def num_outputs(self) -> int:
        return 1

    def shape_error(self, input_shape, rule: str, hint: str | None = None) -> ShapeError:
        shown = show_shape(input_shape)
        return ShapeError(problems=[Problem(
            message=f"{self.type} layer '{self.name}' cannot take input shape {shown}: {rule}",
            found=shown, hint=hint)])

    # ------------------------------------------------------------------ maths
    def build(self, input_shape) -> None:
        """Called once with the input shape(s) before the first forward."""
        self.input_shape = input_shape

    def init_state(self, batch_size: int | None, dtype) -> None:
        """Reset carried state (stateful RNNs); BatchNormalization statistics are weights, not this."""

    def forward(self, params: dict, x, *, training: bool = False, rng=None, mask=None, workspace=None):
        """Return ``(y, cache)``. Must not modify ``params`` or ``x``, nor keep anything of the call on the layer
        (layers are reentrant): scratch arrays come from ``workspace`` (a kernels.workspace.Workspace the caller
        owns; None: fresh arrays), what backward needs goes in the cache."""
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def backward(self, params: dict, dy, cache, *, need_dx: bool = True, out: dict | None = None,
                 workspace=None):
        """Return ``(dx, grads)`` where ``grads`` has one array per trainable param.

        ``need_dx=False``: nothing before this layer needs the input gradient; the layer may skip it and return
        None for dx (the weight gradients are the same either way). ``out``: preallocated arrays by weight name
        (the engine's views into its flat gradient buffer); a layer may write a gradient into ``out[name]`` when
        ``fitting_buffer`` accepts it and return that array, or return a new one. ``workspace``: as in forward.
        Nothing is set on the layer around the call."""
        raise NotImplementedError(f"{type(self).__name__} must define backward")

    def compute_mask(self, x, mask):
        """The mask the output carries (Keras 3 rules): passed through or dropped."""
        return mask if self.supports_masking else None

    def activity_penalty(self) -> dict | None:
        """{"l1": .., "l2": ..} that the engine applies to this layer's output (Keras 3: divided by the batch
        size), or None."""
        return getattr(self.config, "activity_regularizer", None)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
def fitting_buffer(out: dict | None, name: str, shape, dtype):
    """``out[name]`` when a result of ``shape`` and ``dtype`` can be written into it in place (same shape and
    dtype, C-contiguous), else None: the one test every layer applies to the engine's preallocated buffers."""
    buf = out.get(name) if out else None
    if buf is not None and buf.shape == tuple(shape) and buf.dtype == dtype and buf.flags.c_contiguous:
        return buf
    return None


def sub_buffers(out: dict | None, prefix: str) -> dict | None:
    """The buffers of ``out`` under ``prefix/`` with the prefix taken off (a wrapper's inner layer names its
    weights without the wrapper's prefix), or None."""
    if not out:
        return None
    head = prefix + "/"
    return {k[len(head):]: v for k, v in out.items() if k.startswith(head)}


def show_shape(shape) -> str:
    """A per-sample shape (or a list of them) shown with its batch axis, as Keras prints it: (None, 28, 28, 1)."""
    if isinstance(shape, list):
        return "[" + ", ".join(show_shape(s) for s in shape) + "]"
    return "(None, " + ", ".join("None" if d is None else str(d) for d in shape) + ")" if shape else "(None,)"


def show_shapes(shape) -> str:
    """One shape as show_shape prints it, or several (a list of shapes, as a multi-output layer has) joined by
    commas without brackets: the form of tables and pictures (summary uses show_shape's brackets)."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return ", ".join(show_shape(tuple(s)) for s in shape)
    return show_shape(tuple(shape))


def snake_case(name: str) -> str:
    """A layer type as a default layer name, as Keras names them: Conv2D -> conv2d, GlobalMaxPooling1D ->
    global_max_pooling1d."""
    s = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return s.lower()


def elements(shape) -> int:
    """Values per sample of a shape without the batch axis (unknown lengths count as 1, as in FLOP figures)."""
    return math.prod(d or 1 for d in shape)


# ---------------------------------------------------------------------- the registry

REGISTRY: dict[str, type[Layer]] = {}  # canonical type name -> class
TYPE_NAMES: dict[str, tuple[str, dict[str, Any]]] = {}  # any accepted type name -> (canonical, presets)


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: make a layer a valid `type:`."""
    for name in (cls.type, *cls.aliases):
        if name in TYPE_NAMES:
            raise RuntimeError(f"layer type name {name!r} registered twice")
    REGISTRY[cls.type] = cls
    TYPE_NAMES[cls.type] = (cls.type, {})
    for alias, preset in cls.aliases.items():
        TYPE_NAMES[alias] = (cls.type, dict(preset))
    return cls
