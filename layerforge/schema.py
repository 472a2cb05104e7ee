"""JSON Schema of the config format, derived from the pydantic models and the layer registry."""

from __future__ import annotations

from .catalog import keras1_names
from .config.model import ModelConfig
from .layers import REGISTRY, load_all
from .layers.union import layer_fields

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def _layer_schema(cls) -> dict:
    schema = cls.Config.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.pop("$defs", {})
    props = schema.setdefault("properties", {})
    props["type"] = {"enum": [cls.type, *cls.aliases], "description": (cls.__doc__ or "").strip().split("\n")[0]}
    for new, olds in keras1_names(cls).items():
        for old in olds:
            props.setdefault(old, {"description": f"Keras 1 name of `{new}`"})
    for key, many in layer_fields(cls.Config).items():  # a field holding layers points at the Layer union
        layer = {"$ref": "#/$defs/Layer"}
        if many:
            layer = {"type": "array", "minItems": props[key].get("minItems", 1), "items": layer}
        props[key] = {**layer, "description": props[key].get("description", "the wrapped layer")}
    for key in ("input_dim", "input_length"):
        if cls.Config.accepts_input_dim and key not in props:
            props[key] = {"type": ["integer", "null"], "description": "Keras 1 input size shorthand"}
    schema["additionalProperties"] = False
    # a required field may be given under its Keras 1 name instead (output_dim for units, nb_row+nb_col ...)
    old_names = keras1_names(cls)
    required = set(schema.get("required", []))
    alternatives = []
    for name in sorted(required):
        if old_names.get(name):
            required.discard(name)
            alternatives.append({"anyOf": [{"required": [n]} for n in [name, *old_names[name]]]})
    schema["required"] = sorted(required | {"type"})
    if alternatives:
        schema["allOf"] = alternatives
    schema.pop("title", None)
    return schema, defs


def config_schema() -> dict:
    load_all()
    top = ModelConfig.model_json_schema(ref_template="#/$defs/{model}")
    defs = top.pop("$defs", {})
    branches = []
    for name, cls in sorted(REGISTRY.items()):  # sorted: the same schema whatever order layers were imported in
        s, d = _layer_schema(cls)
        defs.update(d)
        defs[f"layer_{name}"] = s
        branches.append({"if": {"properties": {"type": {"enum": [name, *cls.aliases]}}, "required": ["type"]},
                         "then": {"$ref": f"#/$defs/layer_{name}"}})
    all_types = sorted({t for cls in REGISTRY.values() for t in (cls.type, *cls.aliases)})
    defs["Layer"] = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": all_types, "description": "layer type (see `layerforge layers`)"}},
        "allOf": branches,
    }
    top["properties"]["layers"] = {"type": "array", "items": {"$ref": "#/$defs/Layer"}, "minItems": 1,
                                   "description": "the layers, in order"}
    training = defs.get("TrainingConfig", {}).get("properties")
    if training is not None:  # accepted by TrainingConfig's Keras 1 converter
        training["nb_epoch"] = {"type": "integer", "minimum": 1, "description": "Keras 1 name of `epochs`"}
    _callback_schemas(defs)
    top["$schema"] = SCHEMA_URI
    top["title"] = "layerforge model config"
    top["$defs"] = defs
    return top


def _callback_schemas(defs: dict) -> None:
    """Each callback's `type` is required; a bare name (`- TerminateOnNaN`) and Keras 1 `epsilon` are accepted."""
    from .config.training import CALLBACK_ARG_RENAMES, CALLBACK_MODELS

    training = defs.get("TrainingConfig", {}).get("properties", {})
    if "callbacks" not in training:
        return
    for model in CALLBACK_MODELS.values():
        d = defs.get(model.__name__)
        if d is None:
            continue
        d["required"] = sorted({"type", *d.get("required", [])})
        for old, new in CALLBACK_ARG_RENAMES.items():
            if new in d.get("properties", {}):
                d["properties"][old] = {"type": "number", "description": f"Keras 1 name of `{new}`"}
    items = training["callbacks"]["items"]
    items.pop("discriminator", None)  # an OpenAPI keyword; JSON Schema validators go by oneOf
    items["oneOf"] = [{"enum": list(CALLBACK_MODELS), "description": "a callback with its default parameters"},
                      *items["oneOf"]]
