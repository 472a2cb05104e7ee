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
# dates stay strings (as in YAML 1.2 and JSON): a config has no use for datetime objects
_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] not in ("tag:yaml.org,2002:float",
                                                                    "tag:yaml.org,2002:timestamp")]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))

# Limits that make a hostile file fail fast instead of exhausting memory or the stack. A real config
# (even a 20,000-layer chain) is far below each of them.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_NODES = 200_000  # values after expanding aliases and merge keys
MAX_DEPTH = 100  # nesting of mappings and lists

_TAG = "tag:yaml.org,2002:"
SAFE_TAGS = {_TAG + t: t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_STR = _TAG + "str"
_KIND = {"int": "an integer", "float": "a number", "bool": "true or false", "null": "null", "str": "a string"}
# characters YAML forbids in a stream (C0 controls except tab/LF/CR, DEL, C1 except NEL, surrogates, non-characters)
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Too(Exception):
    """The document exceeds a limit; carries the problem to report."""

    def __init__(self, problem: Problem):
        self.problem = problem


class _Builder:
    """Nodes -> plain Python with the positions of every value, refusing what a config never needs:
    recursive aliases, alias/merge expansion past MAX_NODES, nesting past MAX_DEPTH, tags outside the safe set."""

    def __init__(self, smap: SourceMap, loader, problems: list[Problem]):
        self.smap, self.loader, self.problems = smap, loader, problems
        self.count = 0
        self.active: set[int] = set()  # ids of the nodes on the current path (a cycle = a recursive alias)

    def _problem(self, node, message: str, **kw) -> Problem:
        line, col = _mark(node)
        return Problem(message=message, file=self.smap.file, line=line, column=col, **kw)

    def build(self, node, path: PathKey, depth: int = 0):
        self.count += 1
        if self.count > MAX_NODES:
            raise _Too(self._problem(node, f"the document expands to more than {MAX_NODES:,} values "
                                           "(an alias or merge-key bomb?)",
                                     hint="a config needs far fewer; write each value out, or use fewer aliases"))
        if depth > MAX_DEPTH:
            raise _Too(self._problem(node, f"values are nested more than {MAX_DEPTH} levels deep",
                                     hint="a config is a few levels deep; check the brackets"))
        if id(node) in self.active:
            raise _Too(self._problem(node, "recursive alias: this value contains itself",
                                     hint="an alias (*name) cannot refer to a value that encloses it"))
        self.smap.values[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if node.tag not in SAFE_TAGS:
            self.problems.append(self._unknown_tag(node))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(v, path + (i,), depth + 1) for i, v in enumerate(node.value)]
            return self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def _unknown_tag(self, node) -> Problem:
        return self._problem(node, f"unknown YAML tag '{node.tag.replace(_TAG, '!!')}'",
                             expected="plain values (tags allowed: " + ", ".join("!!" + t for t in SAFE_TAGS.values())
                             + ")", hint="a `!` starts a YAML tag: remove it, or quote the value")

    def _scalar(self, node):
        if node.tag not in SAFE_TAGS:
            self.problems.append(self._unknown_tag(node))
            return None
        if node.tag == _STR:  # most values: no constructor needed
            return node.value
        try:
            return self.loader.yaml_constructors[node.tag](self.loader, node)
        except (ValueError, yaml.YAMLError):
            kind = SAFE_TAGS[node.tag]
            self.problems.append(self._problem(node, f"cannot read {node.value[:60]!r} as {_KIND[kind]}",
                                               found=f"!!{kind} {node.value[:60]}"))
            return None

    def _key(self, key_node, path: PathKey):
        if not isinstance(key_node, yaml.ScalarNode):
            self.problems.append(self._problem(key_node, "mapping keys must be plain names",
                                               found="a list or mapping used as a key"))
            return None
        key = self._scalar(key_node)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            self.problems.append(self.smap.problem(path, "mapping keys must be plain names", found=repr(key)))
            return None
        return key if isinstance(key, str) else str(key)

    def _merged(self, value_node, path: PathKey, depth: int) -> dict:
        """The mappings named by a merge key (<<: *base or <<: [*a, *b]); earlier ones win."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if isinstance(value_node, yaml.SequenceNode):
            self.active.add(id(value_node))
        out: dict = {}
        try:
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    self.problems.append(self._problem(
                        src, "a merge key (<<) takes a mapping or a list of mappings",
                        found=_node_summary(src), hint="e.g. `<<: *defaults` where `defaults: &defaults {...}`"))
                    continue
                part = self.build(src, path, depth)
                for k, v in (part or {}).items():
                    out.setdefault(k, v)
        finally:
            self.active.discard(id(value_node))
        return out

    def _mapping(self, node, path: PathKey, depth: int) -> dict:
        out: dict = {}
        merged: dict = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _TAG + "merge":
                merged.update({k: v for k, v in self._merged(value_node, path, depth).items() if k not in merged})
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            child = path + (key,)
            if key in out:
                first = self.smap.keys.get(child, (None, None))
                line, col = _mark(key_node)
                self.problems.append(Problem(
                    message=f"duplicate key '{key}' (first defined on line {first[0]})",
                    path=format_path(child), file=self.smap.file, line=line, column=col,
                    hint="YAML keeps only one of the two; delete or rename one of them"))
                continue
            self.smap.keys[child] = _mark(key_node)
            out[key] = self.build(value_node, child, depth + 1)
        for k, v in merged.items():  # keys written in the mapping itself win over merged ones
            out.setdefault(k, v)
        return out


def _node_summary(node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value[:60])
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _check_characters(text: str, file: str | None) -> None:
    bad = _BAD_CHAR.search(text)
    if bad:
        line, col = _position(text, bad.start())
        raise ConfigError(problems=[Problem(
            message=f"control character U+{ord(bad.group()):04X} is not allowed in YAML", file=file, line=line,
            column=col, hint="delete it (a binary file, or a stray byte from copy and paste?)")])


def _check_events(text: str, file: str | None) -> None:
    """Count the parser's values (libyaml keeps its own stack, so this cannot overflow) and refuse too many
    before anything is composed. Nesting is capped by libyaml (1,000 levels) and then by _Builder."""
    loader = _Loader(text)
    counted = (yaml.ScalarEvent, yaml.AliasEvent)
    get, check = loader.get_event, loader.check_event
    count = 0
    try:
        while check():
            event = get()
            if type(event) in counted:
                count += 1
                if count > MAX_NODES:
                    raise _Too(Problem(message=f"the document has more than {MAX_NODES:,} values", file=file,
                                       line=event.start_mark.line + 1, column=event.start_mark.column + 1))
    finally:
        loader.dispose()


def _node_bound(text: str) -> int:
    """An upper bound on the nodes a YAML text composes to: every node but the first follows a separator
    (',' ':' '-' '?' '[' '{' or a line break)."""
    return 1 + sum(text.count(c) for c in ",:-?[{\n")


def _syntax_problem(exc: Exception, text: str, file: str | None) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return Problem(message=f"not valid YAML: {exc.problem or exc.context}",
                       file=file, line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
                       hint="check the indentation and the brackets on this line or the one above")
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        line, col = _position(text, min(position, len(text)))
        return Problem(message=f"not valid YAML: {getattr(exc, 'reason', exc)}", file=file, line=line, column=col)
    return Problem(message=f"not valid YAML: {exc}", file=file)


def _compose(text: str, file: str | None, smap: SourceMap):
    """(data, problems) of one YAML document, or ConfigError for text that is not YAML or exceeds a limit;
    ``missing`` is returned as data for an empty document."""
    _check_characters(text, file)
    try:
        if _node_bound(text) > MAX_NODES:  # only then is the exact (slower) walk over the events needed
            _check_events(text, file)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except _Too as exc:
        raise ConfigError(problems=[exc.problem]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(problems=[_syntax_problem(exc, text, file)]) from None
    if node is None:
        return _EMPTY, []
    problems: list[Problem] = []
    try:
        data = _Builder(smap, _Loader(""), problems).build(node, ())
    except _Too as exc:
        raise ConfigError(problems=[exc.problem]) from None
    return data, problems


_EMPTY = object()


def parse_yaml_value(text: str, file: str = "<command line>"):
    """One value written in YAML (a command-line override), with the same limits and tags as a config file."""
    data, problems = _compose(text, file, SourceMap(file=file))
    if problems:
        raise ConfigError(problems=problems)
    return None if data is _EMPTY else data


def parse_yaml_text(text: str, file: str | None) -> tuple[object, SourceMap]:
    smap = SourceMap(file=file)
    data, problems = _compose(text, file, smap)
    if data is _EMPTY:
        raise ConfigError(problems=[Problem(
            message="the config file is empty", file=file,
            expected="a mapping with at least `layers:` and an input shape",
            hint="see configs/iris.yaml for a complete example")])
    if problems:
        raise ConfigError(problems=problems)
    return data, smap


def read_text_file(path: str | Path, *, what: str = "config file", limit: int = MAX_CONFIG_BYTES,
                   error=ConfigError) -> str:
    """The UTF-8 text of a regular file, refusing before reading what is not one: a missing path, a symlink
    loop, a directory, a device or FIFO (/dev/zero), a file over ``limit`` bytes."""
    import errno
    import os
    import stat

    name = str(path)
    p = Path(path)

    def fail(message: str, hint: str | None = None, **kw):
        raise error(problems=[Problem(message=message, file=name, hint=hint, **kw)])

    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            fail("symbolic link loop: the link points (through others) back to itself",
                 "point the link at a real file, or pass the file itself")
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if p.is_symlink():
                fail(f"broken symbolic link (it points to {os.readlink(p)}, which does not exist)",
                     "fix the link or pass the file itself")
            fail("file not found", "check the path; relative paths start from the current folder")
        fail(f"cannot read the {what}: {exc.strerror or exc}")
    if stat.S_ISDIR(st.st_mode):
        fail(f"this is a directory, not a {what}", "pass the YAML file inside it, e.g. " + str(p / "model.yaml")
             if what == "config file" else "pass a file inside it")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device" if (
            stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket or other special file"
        fail(f"this is {kind}, not a regular file", f"save the {what} to a file and pass that")
    if st.st_size > limit:
        fail(f"the file is {st.st_size:,} bytes; a {what} may be at most {limit:,}",
             f"is this really a {what}?")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(limit + 1)  # the file may grow after stat
    except OSError as exc:
        fail(f"cannot read the {what}: {exc.strerror or exc}")
    if len(raw) > limit:
        fail(f"the file is over {limit:,} bytes, the most a {what} may have")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        fail(f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})", "save the file as UTF-8",
             line=line, column=col)
    raise AssertionError("unreachable")


def load_yaml(path: str | Path) -> tuple[object, SourceMap]:
    """Read a YAML file; every failure is a ConfigError naming the file."""
    return parse_yaml_text(read_text_file(path), str(path))
