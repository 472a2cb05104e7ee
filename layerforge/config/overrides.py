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
            cur[last] = value
        else:
            problems.append(Problem(message=f"override '{key}' does not point into a mapping or list",
                                    file="<command line>"))
            continue
        source.overridden.add(tuple(p if not isinstance(p, int) or p >= 0 else p for p in parts))
    if problems:
        raise ConfigError(problems=problems)
    return data
