"""The whole config: top-level pydantic model and the layer-by-layer parser.

Layers are validated one at a time against their own ``Config`` (found in the
registry by ``type:``) rather than through one giant union: the messages are
sharper ("did you mean kernel_size?"), Keras 1 names can be translated first,
and only the layer types a config uses pay for building their validators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError, Problem, did_you_mean
from .source import SourceMap, format_path
from .training import DataConfig, TrainingConfig

ABSTRACT_TYPES = {
    "Recurrent": "Recurrent is the abstract base of Keras' recurrent layers; use SimpleRNN, GRU or LSTM",
    "Layer": "Layer is Keras' abstract base class; pick a concrete layer type (see `layerforge layers`)",
}


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="input name, referenced by layers' `inputs:`", pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    shape: list[int | None] = Field(description="shape without the batch axis; null for a variable length")
    dtype: Literal["float32", "float64", "int32", "int64"] = Field("float32", description="element type")

    @field_validator("shape", mode="before")
    @classmethod
    def _strict(cls, v):
        from ..layers.fields import strict_dims

        return strict_dims(v)

    @field_validator("shape")
    @classmethod
    def _positive(cls, v):
        if any(d is not None and d <= 0 for d in v):
            raise ValueError(f"every dimension must be a positive integer or null, got {v}")
        return v


class ModelConfig(BaseModel):
    """The top level of a layerforge YAML file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("model", description="model name; the default run directory is runs/<name>-<time>")
    description: str | None = Field(None, description="free text")
    seed: int | None = Field(None, description="makes initialisation, shuffling and dropout repeatable")
    input_shape: list[int | None] | None = Field(None, description="shape of the single input, without the batch axis")
    input_dtype: Literal["float32", "float64", "int32", "int64"] | None = Field(
        None, description="element type of the single input (default float32; int32 when the first layer is "
                          "an Embedding)")
    batch_size: int | None = Field(None, ge=1, description="a fixed batch size (stateful recurrent layers)")
    inputs: list[InputSpec] | None = Field(None, description="named inputs of a multi-input graph")
    layers: list[Any] = Field(description="the layers, in order; see `layerforge layers`")
    outputs: list[str] | None = Field(None, description="layer names whose outputs are the model outputs "
                                                        "(default: the last layer)")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="how `train` fits the model")
    data: DataConfig | None = Field(None, description="data files for train / validation / test")

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, v):
        from ..layers.fields import seed_value

        return seed_value(v)

    @field_validator("input_shape", mode="before")
    @classmethod
    def _strict_dims(cls, v):
        from ..layers.fields import strict_dims

        return strict_dims(v)

    @field_validator("outputs", mode="before")
    @classmethod
    def _one_output(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("layers")
    @classmethod
    def _not_empty(cls, v):
        if not v:
            raise ValueError("a model needs at least one layer")
        return v


@dataclass
class ModelSpec:
    """A validated config: the top-level model plus one typed config per layer."""

    config: ModelConfig
    layers: list  # list[LayerConfig], same order as config.layers
    source: SourceMap = field(default_factory=SourceMap)
    base_dir: Path = field(default_factory=Path.cwd)
    raw: dict = field(default_factory=dict)

    def canonical_dict(self) -> dict:
        """The resolved config with canonical type and parameter names (what a run directory saves)."""
        out = self.config.model_dump(mode="json", exclude_none=True)
        out["layers"] = [layer_public_dict(c) for c in self.layers]
        return out


def layer_public_dict(cfg) -> dict:
    out = cfg.public_dict()
    for key in ("layer", "backward_layer"):
        inner = getattr(cfg, key, None)
        if key in out and hasattr(inner, "public_dict"):
            out[key] = layer_public_dict(inner)
    if isinstance(getattr(cfg, "layers", None), list):
        out["layers"] = [layer_public_dict(item) for item in cfg.layers]
    return out


# ---------------------------------------------------------------------- pydantic errors -> problems

def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def validation_problems(exc: ValidationError, base: tuple, source: SourceMap, data: dict,
                        known_fields=(), renamed: dict | None = None) -> list[Problem]:
    """Turn a pydantic ValidationError into located problems."""
    problems = []
    renamed = renamed or {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        # a validator may say which argument inside its field is wrong (config.training.SettingError)
        sub = tuple(getattr((err.get("ctx") or {}).get("error"), "path", ()) or ())
        loc += sub
        # pydantic puts union/validator tags in the location; keep only real keys/indices
        loc = _clean_loc(data, loc, missing=err["type"] == "missing")
        if loc and loc[0] in renamed:  # point at the Keras 1 name the user wrote
            loc = (renamed[loc[0]],) + loc[1:]
        path = base + loc
        kind = err["type"]
        if kind == "extra_forbidden":
            key = loc[-1] if loc else "?"
            near = did_you_mean(str(key), known_fields) if known_fields else None
            problems.append(source.problem(
                path, f"unknown parameter '{key}'", key=True,
                expected=("one of: " + ", ".join(sorted(known_fields))) if known_fields and not near else None,
                hint=f"did you mean '{near}'?" if near else None))
        elif kind == "missing":
            problems.append(source.problem(base + loc[:-1], f"missing required parameter '{loc[-1]}'",
                                           hint=f"add `{loc[-1]}: ...`"))
        else:
            value = err.get("input")
            if isinstance(value, float) and math.isnan(value) and kind != "value_error":
                msg = "must be a number, not NaN"  # pydantic's "must be less than 1" would mislead
            elif kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
                msg = ("must not be empty" if value == "" else "is not a valid name") + \
                    ": a name starts with a letter or _ and has only letters, digits, _ and -"
            else:
                msg = _plain_message(err["msg"].removeprefix("Value error, "))
            if sub:  # show the argument that is wrong, not the whole field
                value = _at(data, loc)
            found = _describe(value) if "input" in err else None
            problems.append(source.problem(path, msg, found=found))
    return problems


def _at(data: Any, loc: tuple) -> Any:
    for part in loc:
        data = data[part]
    return data


def _plain_message(msg: str) -> str:
    """pydantic's "Input should be greater than 0" -> "must be greater than 0"."""
    for prefix in ("Input should be ", "Input should have "):
        if msg.startswith(prefix):
            return "must be " + msg[len(prefix):] if "should be" in prefix else "must have " + msg[len(prefix):]
    return msg


def _clean_loc(data: Any, loc: tuple, *, missing: bool) -> tuple:
    """Keep the real keys and indices of a pydantic error location, dropping its internal tags
    (``function-after[...]``, ``list[int]``, union member names)."""
    out = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict):
            if part in cur:
                out.append(part)
                cur = cur[part]
            elif missing and i == len(loc) - 1:
                out.append(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
    return tuple(out)


# ---------------------------------------------------------------------- layers

def parse_layer(raw: Any, path: tuple, source: SourceMap, problems: list[Problem], *, allow_code: bool = False):
    """Validate one layer mapping into its typed Config; append problems instead of raising. ``allow_code``: a
    Lambda `function:` in it (or in a layer it wraps) may run Python code."""
    from ..layers import REGISTRY, TYPE_NAMES, ensure_type, known_type_names
    from ..layers.base import KERAS1_RENAMES

    if not isinstance(raw, dict):
        problems.append(source.problem(path, "a layer is a mapping like {type: Dense, units: 10}",
                                       found=_describe(raw)))
        return None
    type_name = raw.get("type")
    if type_name is None:
        problems.append(source.problem(path, "layer has no `type:`", hint="e.g. `type: Dense`; "
                                       "`layerforge layers` lists every type"))
        return None
    if not isinstance(type_name, str):
        problems.append(source.problem(path + ("type",), "`type:` must be a layer name", found=_describe(type_name)))
        return None
    if type_name in ABSTRACT_TYPES:
        problems.append(source.problem(path + ("type",), f"'{type_name}' cannot be used as a layer",
                                       hint=ABSTRACT_TYPES[type_name]))
        return None
    if not ensure_type(type_name):
        near = did_you_mean(type_name, known_type_names())
        problems.append(source.problem(
            path + ("type",), f"unknown layer type '{type_name}'",
            hint=(f"did you mean {near}?" if near else "`layerforge layers` lists every type")))
        return None
    canonical, preset = TYPE_NAMES[type_name]
    cls = REGISTRY[canonical]
    config_cls = cls.Config
    fields = set(config_cls.model_fields)

    data = dict(raw)
    data["type"] = canonical
    renamed: dict[str, str] = {}  # modern name -> the Keras 1 name the user wrote
    renames = {**{o: n for o, n in KERAS1_RENAMES.items() if n in fields and o not in config_cls.keras1_exclude},
               **config_cls.keras1_renames}
    for old, new in renames.items():
        if old in data and old not in fields:
            if new in data:
                problems.append(source.problem(path + (old,), f"'{old}' (Keras 1) and '{new}' mean the same "
                                               "parameter; give only one", key=True))
                return None
            data[new] = data.pop(old)
            renamed[new] = old
    for key, value in preset.items():
        if key in data and data[key] != value:
            problems.append(source.problem(path + (key,), f"type {type_name} fixes {key}={value!r}",
                                           found=_describe(data[key]), hint=f"use type {canonical} to choose {key}"))
            return None
        data[key] = value
    # Keras 1 input_dim / input_length on the first layer of a Sequential model
    if config_cls.accepts_input_dim and ("input_dim" in data or "input_length" in data) \
            and "input_dim" not in fields:
        dim = data.pop("input_dim", None)
        length = data.pop("input_length", None)
        if "input_shape" not in data:
            data["input_shape"] = [length, dim] if config_cls.accepts_input_dim == "sequence" else [dim]
    # nested wrapper layer: validated with its own Config, errors located inside it
    for key in ("layer", "backward_layer"):  # wrapped layers, validated with their own Config
        if key in fields and isinstance(data.get(key), dict):
            nested = parse_layer(data[key], path + (key,), source, problems, allow_code=allow_code)
            if nested is None:
                return None
            data[key] = nested
    if "layers" in fields and isinstance(data.get("layers"), list):  # a Sequential's stack
        stack = [parse_layer(item, path + ("layers", i), source, problems, allow_code=allow_code)
                 for i, item in enumerate(data["layers"])]
        if any(item is None for item in stack):
            return None
        data["layers"] = stack
    try:
        data = config_cls.upgrade(data)
    except ValueError as exc:
        problems.append(source.problem(path, str(exc)))
        return None
    try:
        parsed = config_cls.model_validate(data)
    except ValidationError as exc:
        known = fields | set(renames)
        problems.extend(validation_problems(exc, path, source, data, known_fields=known, renamed=renamed))
        return None
    parsed._code_allowed = allow_code
    return parsed


def parse_model(data: Any, source: SourceMap, base_dir: Path, *, allow_code: bool = False) -> ModelSpec:
    """Validate a whole config (already loaded from YAML); raise one ConfigError listing every problem.
    ``allow_code``: Lambda layers with `function:` may import and run the Python code they name."""
    if not isinstance(data, dict):
        raise ConfigError(problems=[source.problem(
            (), "the top level of a config must be a mapping", found=type(data).__name__,
            expected="keys such as name, input_shape, layers, training, data")])
    problems: list[Problem] = []
    top = dict(data)
    try:
        config = ModelConfig.model_validate(top)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, (), source, top, known_fields=set(ModelConfig.model_fields)))
        config = None
    raw_layers = top.get("layers") if isinstance(top.get("layers"), list) else []
    layers = [parse_layer(raw, ("layers", i), source, problems, allow_code=allow_code)
              for i, raw in enumerate(raw_layers)]
    nans = _nan_paths(data)
    if nans:  # NaN is never a setting: one clear message each, instead of whatever a bound check made of it
        shown = {format_path(p) for p in nans}
        problems = [p for p in problems if p.path not in shown] + [
            source.problem(p, "NaN is not a valid value", found="nan", hint="write a number") for p in nans]
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0, p.column or 0))
        raise ConfigError(problems=problems)
    return ModelSpec(config=config, layers=layers, source=source, base_dir=base_dir, raw=data)


def _nan_paths(data: Any) -> list[tuple]:
    """Config paths of every float NaN in ``data`` (iteratively: no recursion limit to hit)."""
    out, stack = [], [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and math.isnan(value):
            out.append(path)
        elif isinstance(value, dict):
            stack.extend((path + (k,), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((path + (i,), v) for i, v in enumerate(value))
    return sorted(out, key=str)


def load_config(path: str | Path | dict, overrides: list[str] | None = None, *,
                allow_code: bool = False) -> ModelSpec:
    """Read, override and validate a config file (or an in-memory dict). ``allow_code=True`` (the CLI's
    --allow-code) lets Lambda layers with `function:` import and run Python code; only for configs you trust."""
    from .overrides import apply_overrides
    from .source import load_yaml

    if isinstance(path, dict):
        import copy

        data, source, base_dir = copy.deepcopy(path), SourceMap(file="<dict>"), Path.cwd()
    else:
        data, source = load_yaml(path)
        base_dir = Path(path).resolve().parent
    if overrides:
        data = apply_overrides(data, overrides, source)
    return parse_model(data, source, base_dir, allow_code=allow_code)


def _parse_nested_layer(mapping: dict):
    problems: list[Problem] = []
    parsed = parse_layer(mapping, (), SourceMap(), problems)
    return parsed, [p.message + (f" ({p.hint})" if p.hint else "") for p in problems]


def _install_nested_layer_parser() -> None:
    from ..layers.base import install_nested_layer_parser

    install_nested_layer_parser(_parse_nested_layer)


_install_nested_layer_parser()  # layers parse a nested mapping with this (layers.base.parse_nested_layer)

__all__ = ["ModelConfig", "ModelSpec", "InputSpec", "load_config", "parse_model", "parse_layer", "format_path"]
