"""`layerforge layers`: the catalogue of layer types and each layer's parameters."""

from __future__ import annotations

from .errors import ConfigError, Problem, did_you_mean
from .layers import REGISTRY, TYPE_NAMES, ensure_type, known_type_names, load_all
from .layers.base import LayerConfig
from .layers.documented import ALL_DOCUMENTED

COMMON_FIELDS = set(LayerConfig.model_fields)

FAMILY_ORDER = ["core", "convolution", "reshaping", "pooling", "locally_connected", "recurrent", "embedding",
                "advanced_activations", "normalization", "attention", "noise", "wrappers"]


def catalogue() -> list[dict]:
    """One row per canonical layer type: {type, aliases, family, trainable, description}."""
    load_all()
    rows = []
    for name, cls in REGISTRY.items():
        rows.append({
            "type": name,
            "aliases": list(cls.aliases),
            "family": cls.family,
            "trainable": True,  # every layer has a backward pass (kept for scripts reading the JSON)
            "description": _first_sentence(cls.__doc__ or ""),
        })
    order = {f: i for i, f in enumerate(FAMILY_ORDER)}
    rows.sort(key=lambda r: (order.get(r["family"], 99), r["type"]))
    return rows


def _first_sentence(doc: str, limit: int = 72) -> str:
    """The docstring's first sentence, cut at a word boundary to fit a table cell."""
    import re

    text = " ".join(doc.split()).replace("``", "`")
    match = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", text)
    text = text[: match.start() + 1] if match else text
    if len(text) > limit:
        text = text[: limit].rsplit(" ", 1)[0].rstrip(",;:(") + " …"
    return text


def keras1_names(cls) -> dict[str, list[str]]:
    """Modern field name -> the Keras 1 names accepted for it."""
    fields = set(cls.Config.model_fields)
    out: dict[str, list[str]] = {}
    for old, new in {**cls.Config.keras1_rename_table(), **cls.Config.keras1_structural}.items():
        if old not in fields and old not in out.get(new, []):
            out.setdefault(new, []).append(old)
    return out


def _type_text(schema: dict) -> str:
    if "enum" in schema:
        names = list(map(str, schema["enum"]))
        return " | ".join(names) if len(names) <= 5 else f"str: {', '.join(names[:4])}, … ({len(names)} names)"
    if "const" in schema:
        return repr(schema["const"])
    if "anyOf" in schema:
        parts = [_type_text(s) for s in schema["anyOf"]]
        return " | ".join(dict.fromkeys(p for p in parts if p))
    t = schema.get("type")
    if t == "array":
        items = schema.get("items", {})
        return f"list[{_type_text(items) if items else 'any'}]"
    if t == "object":
        return "mapping"
    return {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "null"}.get(t, t or "any")


def layer_info(type_name: str) -> dict:
    if not ensure_type(type_name):
        near = did_you_mean(type_name, known_type_names())
        raise ConfigError(problems=[Problem(message=f"unknown layer type '{type_name}'",
                                            hint=f"did you mean {near}?" if near else "run `layerforge layers`")])
    canonical, preset = TYPE_NAMES[type_name]
    cls = REGISTRY[canonical]
    schema = cls.Config.model_json_schema()
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    old_names = keras1_names(cls)
    params = []
    for name, field in cls.Config.model_fields.items():
        if name in ("type",):
            continue
        default = None if name in required else field.get_default(call_default_factory=True)
        if isinstance(default, tuple):
            default = list(default)
        params.append({
            "name": name,
            "type": _type_text(props.get(name, {})),
            "required": name in required,
            "default": default,
            "keras1": old_names.get(name, []),
            "description": field.description or "",
            "common": name in COMMON_FIELDS,
        })
    from .layers.weighted import KernelBiasConfig

    shared = set(KernelBiasConfig.model_fields) - COMMON_FIELDS
    params.sort(key=lambda p: p["name"] in shared)  # the layer's own parameters (units, ...) first
    return {
        "type": canonical,
        "requested": type_name,
        "preset": preset,
        "aliases": list(cls.aliases),
        "family": cls.family,
        "trainable": True,  # every layer has a backward pass (kept for scripts reading the JSON)
        "documented_keras1": [n for n in [canonical, *cls.aliases] if n in ALL_DOCUMENTED],
        "description": " ".join((cls.__doc__ or "").split()),
        "parameters": params,
    }


def render_catalogue(rows: list[dict], console) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("Type", no_wrap=True)
    table.add_column("Also accepted as", overflow="fold", max_width=34)
    wide = console.width >= 110  # below that the descriptions would wrap into towers
    if wide:
        table.add_column("What it does", overflow="fold", ratio=1)
    last = None
    for r in rows:
        if r["family"] != last:
            if last is not None:
                table.add_row(*[""] * (3 if wide else 2))
            table.add_row(f"[bold magenta]{r['family'].replace('_', ' ')}[/]", *[""] * (2 if wide else 1))
            last = r["family"]
        row = [f"  [bold]{r['type']}[/]", ", ".join(r["aliases"])]
        table.add_row(*row, r["description"]) if wide else table.add_row(*row)
    console.print(table)
    console.print(f"{len(rows)} layer types. Details: [bold]layerforge layers TYPE[/]; training callbacks: "
                  "[bold]layerforge callbacks[/]")


def render_layer_info(info: dict, console) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    title = f"[bold]{info['type']}[/] ({info['family'].replace('_', ' ')})"
    if info["requested"] != info["type"]:
        title += f" — '{info['requested']}' is an alias" + (
            f" that sets {', '.join(f'{k}={v}' for k, v in info['preset'].items())}" if info["preset"] else "")
    console.print(title)
    console.print(escape(info["description"]))
    if info["aliases"]:
        console.print(f"[dim]Also accepted as:[/] {', '.join(info['aliases'])}")
    table = Table(box=box.SIMPLE_HEAVY, header_style="bold")
    table.add_column("Parameter")
    table.add_column("Type", overflow="fold")
    table.add_column("Default", overflow="fold")
    table.add_column("Keras 1 name")
    table.add_column("Description", overflow="fold")
    for p in [p for p in info["parameters"] if not p["common"]] + [p for p in info["parameters"] if p["common"]]:
        default = "[red]required[/]" if p["required"] else escape(repr(p["default"]) if p["default"] is not None
                                                                   else "null")
        name = f"[bold]{p['name']}[/]" if not p["common"] else f"[dim]{p['name']}[/]"
        table.add_row(name, escape(p["type"]), default, ", ".join(p["keras1"]), escape(p["description"]))
    console.print(table)


# ---------------------------------------------------------------------- callbacks (`layerforge callbacks`)

def _type_text(annotation) -> str:
    text = str(annotation).replace("typing.", "")
    for full, short in (("<class '", ""), ("'>", ""), ("Annotated[", ""), ("NoneType", "null")):
        text = text.replace(full, short)
    return text.split(", BeforeValidator")[0].rstrip("]") if "BeforeValidator" in text else text


def callback_catalogue(name: str | None = None) -> list[dict]:
    """One row per training callback: {type, description, parameters: [{name, type, default, description}]}."""
    from .config.training import CALLBACK_MODELS
    from .errors import ConfigError, Problem, did_you_mean

    models = CALLBACK_MODELS
    if name is not None:
        match = {k.lower(): k for k in models}.get(name.lower())
        if match is None:
            near = did_you_mean(name, list(models))
            raise ConfigError(problems=[Problem(message=f"unknown callback '{name}'", file="<command line>",
                                                hint=f"did you mean {near}?" if near else
                                                "known: " + ", ".join(models))])
        models = {match: models[match]}
    rows = []
    for cb_name, model in models.items():
        schema = model.model_json_schema()["properties"]
        params = []
        for key, f in model.model_fields.items():
            if key == "type":
                continue
            ptype = schema[key].get("type") or " | ".join(
                a.get("type", str(a.get("enum", a.get("const", "")))) for a in schema[key].get("anyOf", []))
            if "enum" in schema[key]:
                ptype = " | ".join(schema[key]["enum"])
            params.append({"name": key, "type": ptype, "required": f.is_required(),
                           "default": None if f.is_required() else f.default, "description": f.description or ""})
        rows.append({"type": cb_name, "description": " ".join((model.__doc__ or "").split()), "parameters": params})
    return rows


def render_callbacks(rows: list[dict], console) -> None:
    from rich import box
    from rich.table import Table

    for r in rows:
        console.print(f"[bold magenta]{r['type']}[/]  {r['description']}", highlight=False)
        table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
        table.add_column("parameter", no_wrap=True)
        table.add_column("type", no_wrap=True)
        table.add_column("default", no_wrap=True)
        table.add_column("meaning", overflow="fold", ratio=1)
        for p in r["parameters"]:
            default = "(required)" if p["required"] else repr(p["default"]) if isinstance(p["default"], str) \
                else str(p["default"]).lower() if isinstance(p["default"], bool) or p["default"] is None \
                else str(p["default"])
            table.add_row(p["name"], p["type"], default, p["description"])
        console.print(table)
    if len(rows) > 1:
        console.print("In a config: [bold]training: {callbacks: [{type: EarlyStopping, patience: 3}]}[/]")
