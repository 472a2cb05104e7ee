"""The whole config: top-level pydantic model and the layers' discriminated union.

The top level (name, inputs, training, data ...) is ``ModelConfig``. Each layer mapping validates through the
discriminated union on `type:` that ``layerforge.layers.union`` builds from the registry for the layer types this
config uses (so only their families are imported and only their validators built): the union's discriminator maps
any accepted name or alias to the canonical type, whose Config's ``mode="before"`` validator translates the Keras 1
spelling, and nested layer fields (``LayerSpec``) validate through the same union. This module turns pydantic's
errors into located problems: file:line:column of the key the user wrote (a Keras 1 name included), did-you-mean
for unknown types and parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError, Problem, did_you_mean
from ..layers.base import Keras1Error, LayerConfig
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
    for key in type(cfg).model_fields:  # nested layers (TimeDistributed's `layer:` ...) in their public form too
        inner = getattr(cfg, key, None)
        if key in out and isinstance(inner, LayerConfig):
            out[key] = layer_public_dict(inner)
        elif key in out and isinstance(inner, list) and inner and all(isinstance(i, LayerConfig) for i in inner):
            out[key] = [layer_public_dict(item) for item in inner]
    return out


# ---------------------------------------------------------------------- pydantic errors -> problems

def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def validation_problems(exc: ValidationError, base: tuple, source: SourceMap, data: Any,
                        known_fields=()) -> list[Problem]:
    """Turn a pydantic ValidationError into located problems. ``known_fields``: the names an unknown key is
    compared with, where the error is not inside a layer (a layer's own fields are used there)."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        error = (err.get("ctx") or {}).get("error")
        # a validator may say which argument inside its field is wrong (config.training.SettingError, Keras1Error)
        sub = tuple(getattr(error, "path", ()) or ())
        loc += sub
        # pydantic puts union/validator tags in the location; keep only the keys the user wrote
        loc, layer_cls = _clean_loc(data, loc, missing=err["type"] == "missing")
        path = base + loc
        kind = err["type"]
        fields = known_fields
        if layer_cls is not None:
            fields = set(layer_cls.model_fields) | set(layer_cls.keras1_rename_table())
        if isinstance(error, Keras1Error):
            problems.append(source.problem(path, str(error), key=error.key, found=error.found, hint=error.hint))
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            problems.append(_layer_type_problem(err.get("input"), path, source))
        elif kind == "extra_forbidden":
            key = loc[-1] if loc else "?"
            near = did_you_mean(str(key), fields) if fields else None
            problems.append(source.problem(
                path, f"unknown parameter '{key}'", key=True,
                expected=("one of: " + ", ".join(sorted(fields))) if fields and not near else None,
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


def _layer_type_problem(raw: Any, path: tuple, source: SourceMap) -> Problem:
    """Why the union found no layer type for ``raw`` (the discriminator's "no tag"), said for a person."""
    from ..layers import known_type_names

    if not isinstance(raw, dict):
        return source.problem(path, "a layer is a mapping like {type: Dense, units: 10}", found=_describe(raw))
    type_name = raw.get("type")
    if type_name is None:
        return source.problem(path, "layer has no `type:`",
                              hint="e.g. `type: Dense`; `layerforge layers` lists every type")
    if not isinstance(type_name, str):
        return source.problem(path + ("type",), "`type:` must be a layer name", found=_describe(type_name))
    if type_name in ABSTRACT_TYPES:
        return source.problem(path + ("type",), f"'{type_name}' cannot be used as a layer",
                              hint=ABSTRACT_TYPES[type_name])
    near = did_you_mean(type_name, known_type_names())
    return source.problem(path + ("type",), f"unknown layer type '{type_name}'",
                          hint=(f"did you mean {near}?" if near else "`layerforge layers` lists every type"))


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


def _clean_loc(data: Any, loc: tuple, *, missing: bool) -> tuple[tuple, type[LayerConfig] | None]:
    """The keys and indices the user wrote for a pydantic error location, and the Config of the innermost layer on
    the way. pydantic's internal tags (``function-after[...]``, ``list[int]``) are dropped; a union tag (the
    canonical type) says which Config reads the mapping there, which is then seen as that Config sees it (Keras 1
    names translated), and a key it renamed is given back as the Keras 1 name written."""
    from ..layers import REGISTRY
    from ..layers.union import canonical_type

    out: list = []
    cur, renamed, layer_cls = data, {}, None
    for i, part in enumerate(loc):
        if isinstance(cur, dict):
            if isinstance(part, str) and part in REGISTRY and canonical_type(cur) == part:
                layer_cls = REGISTRY[part].Config
                try:
                    cur, renamed = layer_cls.from_keras1(cur)
                except Keras1Error:
                    renamed = {}
            elif part in cur:
                out.append(renamed.get(part, part))
                cur, renamed = cur[part], {}
            elif missing and i == len(loc) - 1:
                out.append(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur, renamed = cur[part], {}
    return tuple(out), layer_cls


# ---------------------------------------------------------------------- layers

def parse_layer(raw: Any, path: tuple, source: SourceMap, problems: list[Problem], *, allow_code: bool = False):
    """Validate one layer mapping into its typed Config; append problems instead of raising. ``allow_code``: a
    Lambda `function:` in it (or in a layer it wraps) may run Python code."""
    return parse_layers([(path, raw)], source, problems, allow_code=allow_code)[0]


def parse_layers(located: list[tuple[tuple, Any]], source: SourceMap, problems: list[Problem], *,
                 allow_code: bool = False) -> list:
    """Validate layer mappings, each given with its config path, through one discriminated union of the types
    they use; a layer that fails is None, its problems appended."""
    from ..layers.union import layer_adapter, types_in

    adapter = layer_adapter(types_in(raw for _, raw in located
                                     if not (isinstance(raw, dict) and raw.get("type") in ABSTRACT_TYPES)))
    out = []
    for path, raw in located:
        try:
            parsed = adapter.validate_python(raw)
        except ValidationError as exc:
            problems.extend(validation_problems(exc, path, source, raw))
            out.append(None)
            continue
        _allow_code(parsed, allow_code)
        out.append(parsed)
    return out


def _allow_code(cfg: LayerConfig, allowed: bool) -> None:
    """Mark a parsed layer, and every layer it holds, as loaded with (or without) allow_code."""
    cfg._code_allowed = allowed
    for value in cfg.__dict__.values():  # the field values
        if isinstance(value, LayerConfig):
            _allow_code(value, allowed)
        elif isinstance(value, list):
            for inner in value:
                if isinstance(inner, LayerConfig):
                    _allow_code(inner, allowed)


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
    layers = parse_layers([(("layers", i), raw) for i, raw in enumerate(raw_layers)], source, problems,
                          allow_code=allow_code)
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


__all__ = ["ModelConfig", "ModelSpec", "InputSpec", "load_config", "parse_model", "parse_layer", "format_path"]
