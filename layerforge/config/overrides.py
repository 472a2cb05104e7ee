"""`key=value` overrides from the command line, applied before validation."""

from __future__ import annotations

import yaml

from ..errors import ConfigError, Problem
from .source import MAX_DEPTH, SourceMap


def _parse_key(key: str) -> list:
    parts: list = []
    for piece in key.replace("]", "").replace("[", ".").split("."):
        if piece == "":
            raise ValueError("empty path element")
        if len(parts) >= MAX_DEPTH:
            raise ValueError(f"the key has more than {MAX_DEPTH} parts")
        parts.append(int(piece) if piece.lstrip("-").isdigit() else piece)
    return parts


def _parse_value(text: str):
    """A value as the YAML loader reads it (so 1e-3 is a float here too)."""
    from .source import parse_yaml_value

    return parse_yaml_value(text, "<command line>")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Keras 1 spellings outside the layers: training.nb_epoch, an optimizer's lr, a callback's epsilon
_SECTION_SPELLINGS = {("training",): {"nb_epoch": "epochs"}, ("training", "optimizer"): {"lr": "learning_rate"},
                      ("training", "callbacks", int): {"epsilon": "min_delta"}}


def _layer_spellings(layer: dict) -> dict[str, str]:
    """Keras 1 name -> modern name for the parameters of a layer mapping (by its `type:`)."""
    config_cls = _layer_config(layer)
    if config_cls is None:
        return {}
    fields = set(config_cls.model_fields)
    renames = {**config_cls.keras1_rename_table(), **config_cls.keras1_structural}
    return {old: new for old, new in renames.items() if old not in fields}


def _layer_config(layer):
    """The Config class that reads a layer mapping (by its `type:`), or None."""
    from ..layers import REGISTRY, TYPE_NAMES, ensure_type

    type_name = layer.get("type") if isinstance(layer, dict) else None
    if not isinstance(type_name, str) or not ensure_type(type_name):
        return None
    return REGISTRY[TYPE_NAMES[type_name][0]].Config


def _is_layer_path(data, parent: tuple) -> bool:
    """Whether ``parent`` is a layer mapping: ("layers", 2) at the top, then inside a layer the fields its Config
    types as layers (``layers.union.layer_fields``): ("layers", 2, "layer"), ("layers", 0, "layers", 1) ..."""
    from ..layers.union import layer_fields

    if len(parent) < 2 or parent[0] != "layers" or not isinstance(parent[1], int):
        return False
    i, cur = 2, data["layers"][parent[1]]
    while i < len(parent):
        config_cls = _layer_config(cur)
        many = layer_fields(config_cls).get(parent[i]) if config_cls is not None else None
        if many is None or not isinstance(cur.get(parent[i]), list if many else dict):
            return False
        cur = cur[parent[i]]
        if many:
            if i + 1 >= len(parent) or not isinstance(parent[i + 1], int):
                return False
            cur, i = cur[parent[i + 1]], i + 1
        i += 1
    return True


def other_spellings(data, parts: list) -> list[str]:
    """The keys beside ``parts[-1]`` that name the same parameter under another spelling (Keras 1 or modern)."""
    parent, last = tuple(parts[:-1]), parts[-1]
    cur = data
    for p in parent:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            return []
    if not isinstance(cur, dict) or not isinstance(last, str):
        return []
    if _is_layer_path(data, parent):
        spellings = _layer_spellings(cur)
    else:
        shape = tuple(int if isinstance(p, int) else p for p in parent)
        spellings = _SECTION_SPELLINGS.get(shape, {})
    meaning = spellings.get(last, last)
    return [k for k in cur if k != last and spellings.get(k, k) == meaning]


def apply_overrides(data, overrides: list[str], source: SourceMap):
    """Set ``training.epochs=5`` or ``layers.2.units=64`` (``layers[2].units`` works too)."""
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(Problem(message=f"override '{item}' is not KEY=VALUE", file="<command line>",
                                    hint="e.g. training.epochs=5 or layers.2.units=64"))
            continue
        key, text = item.split("=", 1)
        try:
            parts = _parse_key(key.strip())
            value = _parse_value(text) if text.strip() else ""
        except ConfigError as exc:
            problems.extend(Problem(message=f"override '{_short(item)}': {p.message}", file="<command line>",
                                    found=p.found, expected=p.expected, hint=p.hint) for p in exc.problems)
            continue
        except (ValueError, yaml.YAMLError) as exc:
            problems.append(Problem(message=f"override '{_short(item)}': {exc}", file="<command line>"))
            continue
        cur = data
        ok = True
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(cur, list):
                if not isinstance(part, int) or not -len(cur) <= part < len(cur):
                    problems.append(Problem(message=f"override '{key}': index {part} is out of range "
                                            f"(the list has {len(cur)} items)", file="<command line>"))
                    ok = False
                    break
                cur = cur[part]
            elif isinstance(cur, dict):
                if part not in cur or cur[part] is None:
                    cur[part] = [] if isinstance(nxt, int) else {}
                cur = cur[part]
            else:
                problems.append(Problem(message=f"override '{key}': '{part}' is not a mapping or a list",
                                        file="<command line>"))
                ok = False
                break
        if not ok:
            continue
        last = parts[-1]
        if isinstance(cur, list):
            if not isinstance(last, int) or not -len(cur) <= last < len(cur):
                problems.append(Problem(message=f"override '{key}': index {last} is out of range",
                                        file="<command line>"))
                continue
            cur[last] = value
        elif isinstance(cur, dict):
            for other in other_spellings(data, parts):
                cur.pop(other, None)  # the override replaces the value whatever the file called it
            cur[last] = value
        else:
            problems.append(Problem(message=f"override '{key}' does not point into a mapping or list",
                                    file="<command line>"))
            continue
        source.overridden.add(tuple(p if not isinstance(p, int) or p >= 0 else p for p in parts))
    if problems:
        raise ConfigError(problems=problems)
    return data
