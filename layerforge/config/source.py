"""Read YAML while remembering where every value came from.

``load_yaml`` returns plain Python data plus a ``SourceMap`` that maps a config
path (a tuple of keys and list indices) to the line and column of that value in
the file, so every later error can point at the exact spot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError, Problem

PathKey = tuple  # e.g. ("layers", 3, "filters")


def format_path(path: PathKey) -> str:
    """("layers", 3, "filters") -> "layers[3].filters"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class SourceMap:
    file: str | None = None
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    overridden: set[PathKey] = field(default_factory=set)

    def locate(self, path: PathKey, *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column (1-based) of the value at ``path``, or of its nearest parent."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while True:
            if path in self.values:
                return self.values[path]
            if not path:
                return None, None
            path = path[:-1]

    def problem(self, path: PathKey, message: str, *, key: bool = False, **kw) -> Problem:
        line, col = self.locate(path, key=key)
        file = self.file
        path = tuple(path)
        if any(path[: len(o)] == o or o[: len(path)] == path and path for o in self.overridden):
            file, line, col = "<command line>", None, None
        return Problem(message=message, path=format_path(path), file=file, line=line, column=col, **kw)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The safe loader (libyaml's when installed: several times faster); we compose nodes with it and
    construct only plain scalars."""


# YAML 1.1 (PyYAML) reads 1e-3 as a string; accept the YAML 1.2 / JSON float forms users write.
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:float"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _to_python(node, path: PathKey, smap: SourceMap, loader: _Loader, problems: list[Problem]):
    smap.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                problems.append(smap.problem(path, "mapping keys must be plain names",
                                             found=repr(key)))
                continue
            key = str(key) if not isinstance(key, str) else key
            child = path + (key,)
            if key in out:
                first = smap.keys.get(child, (None, None))
                line, col = _mark(key_node)
                problems.append(Problem(
                    message=f"duplicate key '{key}' (first defined on line {first[0]})",
                    path=format_path(child), file=smap.file, line=line, column=col,
                    hint="YAML keeps only one of the two; delete or rename one of them"))
                continue
            smap.keys[child] = _mark(key_node)
            out[key] = _to_python(value_node, child, smap, loader, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, path + (i,), smap, loader, problems) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml_text(text: str, file: str | None) -> tuple[object, SourceMap]:
    smap = SourceMap(file=file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(problems=[Problem(
            message=f"not valid YAML: {exc.problem or exc.context}",
            file=file, line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
            hint="check the indentation and the brackets on this line or the one above")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(problems=[Problem(message=f"not valid YAML: {exc}", file=file)]) from None
    finally:
        loader.dispose()
    if node is None:
        raise ConfigError(problems=[Problem(
            message="the config file is empty", file=file,
            expected="a mapping with at least `layers:` and an input shape",
            hint="see configs/iris.yaml for a complete example")])
    problems: list[Problem] = []
    data = _to_python(node, (), smap, _Loader(""), problems)
    if problems:
        raise ConfigError(problems=problems)
    return data, smap


def load_yaml(path: str | Path) -> tuple[object, SourceMap]:
    """Read a YAML file; every failure is a ConfigError naming the file."""
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise ConfigError(problems=[Problem(message="file not found", file=name,
                                            hint="check the path; relative paths start from the current folder")])
    if p.is_dir():
        raise ConfigError(problems=[Problem(message="this is a directory, not a config file", file=name,
                                            hint="pass the YAML file inside it, e.g. " + str(p / "model.yaml"))])
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(problems=[Problem(
            message=f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})", file=name, line=line, column=col,
            hint="save the file as UTF-8")]) from None
    return parse_yaml_text(text, name)
