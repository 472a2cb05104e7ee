"""A layer mapping validates through one pydantic discriminated union on `type:`, built from the registry.

``canonical_type`` is the discriminator: it maps any accepted type name (an alias such as Convolution2D or Add
included) to its canonical type, whose ``Config`` validates the mapping; that Config's ``mode="before"`` validator
(``LayerConfig.from_keras1``) first translates the Keras 1 spelling. The union holds only the types a config uses
(``layer_adapter(types_in(...))``): importing their families and building their validators is all a config pays for.

A nested layer field (TimeDistributed's `layer:`, Sequential's `layers:` items) is typed ``LayerSpec``: its value is
validated by the same union, for the types it uses, so a wrapped layer's errors come back located inside it and no
parser needs to know which fields hold layers.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import Discriminator, PlainValidator, Tag, TypeAdapter, ValidationInfo, WithJsonSchema

from .base import REGISTRY, TYPE_NAMES, LayerConfig

# The union's member when a config names no known type: never chosen (canonical_type returns only registered names
# or None), it keeps the union well-formed so the unknown name is reported as a tag error.
_NO_TYPE = "<no known layer type>"


def canonical_type(value: Any) -> str | None:
    """The discriminator: the canonical type a layer mapping (or Config) names; None when it names no registered
    type (not a mapping, no `type:`, or an unknown name: the config floor words each of those)."""
    if isinstance(value, LayerConfig):
        return value.type
    if isinstance(value, dict):
        name = value.get("type")
        if isinstance(name, str) and name in TYPE_NAMES:
            return TYPE_NAMES[name][0]
    return None


def types_in(mappings) -> frozenset[str]:
    """The canonical types the given layer mappings name, their families imported (only those)."""
    from . import ensure_type

    out = set()
    for value in mappings:
        if isinstance(value, LayerConfig):  # already validated: its own type
            out.add(value.type)
            continue
        name = value.get("type") if isinstance(value, dict) else None
        if isinstance(name, str) and ensure_type(name):
            out.add(TYPE_NAMES[name][0])
    return frozenset(out)


@lru_cache(maxsize=256)
def layer_adapter(types: frozenset[str]) -> TypeAdapter:
    """The discriminated union of the given canonical types' Configs (cached: one per set of types)."""
    members = [Annotated[REGISTRY[name].Config, Tag(name)] for name in sorted(types)]
    if not members:
        members = [Annotated[LayerConfig, Tag(_NO_TYPE)]]
    return TypeAdapter(Annotated[Union[tuple(members)], Discriminator(canonical_type)])  # noqa: UP007


def validate_layer(value: Any) -> LayerConfig:
    """A layer mapping (or an already validated Config) as its Config; raises pydantic's ValidationError."""
    return layer_adapter(types_in([value])).validate_python(value)


def _nested_layer(value: Any, info: ValidationInfo) -> LayerConfig:
    if isinstance(value, LayerConfig):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"`{info.field_name}:` must be a layer mapping such as {{type: Dense, units: 8}}, "
                         f"not {value!r}")
    return validate_layer(value)


def layer_fields(config_cls: type[LayerConfig]) -> dict[str, bool]:
    """The fields of a Config that hold layers (typed ``LayerSpec``): name -> True for a list of layers (Sequential's
    `layers:`), False for one layer (TimeDistributed's `layer:`). What the JSON Schema points at its Layer union."""
    out = {}
    for name, info in config_cls.model_fields.items():
        if _NESTED in info.metadata or _holds_layer(info.annotation):
            out[name] = get_origin(info.annotation) is list
    return out


def _holds_layer(annotation) -> bool:
    if get_origin(annotation) is Annotated and _NESTED in annotation.__metadata__:
        return True
    return any(_holds_layer(arg) for arg in get_args(annotation))


_LAYER_SCHEMA = {"type": "object", "description": "a layer mapping, e.g. {type: Dense, units: 8}",
                 "properties": {"type": {"type": "string"}}, "required": ["type"]}

# A field that holds a layer: a mapping validated by the layer union into that layer's Config (a LayerConfig
# subclass). Annotated on Any so that dumping it writes every field of that subclass, not LayerConfig's alone.
_NESTED = PlainValidator(_nested_layer)
LayerSpec = Annotated[Any, _NESTED, WithJsonSchema(_LAYER_SCHEMA)]

__all__ = ["LayerSpec", "canonical_type", "layer_adapter", "layer_fields", "types_in", "validate_layer"]
