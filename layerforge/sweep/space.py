"""The search space file: config paths mapped to distributions, read with source positions.

    training.optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}
    layers.0.units: {choice: [16, 32, 64]}
    layers.1.rate: {uniform: [0.0, 0.5]}
    training.batch_size: {int: [8, 64], step: 8}
    training.epochs: 20                      # a fixed value
    training.optimizer.type:                 # a conditional choice: each option may bring its own parameters
      choice:
        - adam
        - value: sgd
          space:
            training.optimizer.momentum: {uniform: [0.0, 0.95]}

Any path `layerforge train CONFIG KEY=VALUE` accepts is a valid key. ``check_space`` validates the file like a
config (file:line:column errors) and tries the bounds and every choice against the model config, so a space
that would produce an invalid model is rejected before any trial runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config.source import SourceMap
from ..errors import ConfigError, Problem, did_you_mean

KINDS = ("loguniform", "uniform", "int", "choice")
EXTRA_KEYS = {"loguniform": (), "uniform": ("step",), "int": ("step", "log"), "choice": ()}
_SCALARS = (type(None), bool, int, float, str)
_EXAMPLE_BOUNDS = {"loguniform": "1.0e-4, 1.0e-1", "uniform": "0.0, 0.5", "int": "8, 64"}


@dataclass
class Option:
    """One value of a choice, with the parameters it brings when chosen (a conditional choice)."""

    value: object
    space: list = field(default_factory=list)  # list[Param]
    where: tuple = ()  # the source path of the option's value in the space file
    base: tuple = ()  # the source path of the option itself (its `space:` is below it)


@dataclass
class Param:
    path: str  # the config path as written, e.g. "layers.0.units"
    parts: tuple  # ("layers", 0, "units")
    kind: str  # loguniform, uniform, int, choice or fixed
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    options: list = field(default_factory=list)  # list[Option] for a choice
    value: object = None  # for a fixed value
    where: tuple = ()  # the source path of this entry in the space file
    name: str = ""  # the Optuna parameter name (the path, qualified inside a conditional option)

    def candidates(self):
        """The values that bound this parameter, tried against the config before the sweep starts."""
        if self.kind == "choice":
            return [(o.value, o.where) for o in self.options]
        if self.kind == "fixed":
            return [(self.value, self.where)]
        return [(self.low, self.where + (self.kind, 0)), (self.high, self.where + (self.kind, 1))]


@dataclass
class Space:
    params: list  # list[Param], top level
    source: SourceMap
    text: str  # the file as read (copied into the sweep directory)

    def all_params(self):
        def walk(params):
            for p in params:
                yield p
                for o in p.options:
                    yield from walk(o.space)

        return list(walk(self.params))


def parse_key(key: str) -> tuple:
    from ..config.overrides import _parse_key

    return tuple(_parse_key(key))


def override(path: str, value) -> str:
    """``path=value`` as `layerforge train` takes it (JSON is valid YAML flow, and reads back unchanged)."""
    return f"{path}={json.dumps(value)}"


def _label(value, k: int) -> str:
    if isinstance(value, _SCALARS):
        return json.dumps(value)
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value["type"]
    return f"#{k}"


def load_space(path: str | Path) -> Space:
    from ..config.source import load_yaml

    data, smap = load_yaml(path)
    return parse_space(data, smap, Path(path).read_text(encoding="utf-8-sig"))


def parse_space(data, smap: SourceMap, text: str = "") -> Space:
    problems: list[Problem] = []
    if not isinstance(data, dict) or not data:
        raise ConfigError(problems=[smap.problem((), "a search space is a mapping of config paths to "
                                                     "distributions", found=type(data).__name__,
                                                 hint="e.g. `training.optimizer.learning_rate: {loguniform: "
                                                      "[1.0e-4, 1.0e-1]}`")])
    params = _parse_entries(data, (), smap, problems, prefix="")
    if problems:
        raise ConfigError(problems=problems)
    return Space(params=params, source=smap, text=text)


def _parse_entries(entries: dict, where: tuple, smap: SourceMap, problems: list, prefix: str) -> list:
    params = []
    for key, spec in entries.items():
        loc = where + (key,)
        try:
            parts = parse_key(str(key))
        except ValueError as exc:
            problems.append(smap.problem(loc, f"'{key}' is not a config path: {exc}", key=True,
                                         hint="write the path as on the command line: layers.0.units"))
            continue
        param = _parse_one(str(key), parts, spec, loc, smap, problems)
        if param is not None:
            param.name = f"{key}{prefix}"
            for k, option in enumerate(param.options):
                qualifier = f" | {key}={_label(option.value, k)}{prefix}"
                option.space = _parse_entries(option.space, option.base + ("space",), smap, problems, qualifier) \
                    if isinstance(option.space, dict) else []
            params.append(param)
    return params


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_one(path: str, parts: tuple, spec, loc: tuple, smap: SourceMap, problems: list) -> Param | None:
    if not isinstance(spec, dict):
        return Param(path=path, parts=parts, kind="fixed", value=spec, where=loc)
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        unknown = [k for k in spec if k not in KINDS and k not in ("step", "log")]
        near = did_you_mean(str(unknown[0]), KINDS) if unknown else None
        what = f"unknown distribution '{unknown[0]}'" if unknown and not kinds else \
            "several distributions in one entry" if len(kinds) > 1 else "no distribution"
        problems.append(smap.problem(loc + ((unknown[0],) if unknown and not kinds else ()), what,
                                     key=bool(unknown and not kinds), expected="one of " + ", ".join(KINDS),
                                     hint=f"did you mean '{near}'?" if near else
                                     "e.g. {loguniform: [1.0e-4, 1.0e-1]} or {choice: [16, 32]}; a fixed "
                                     "mapping is written {choice: [{...}]}"))
        return None
    kind = kinds[0]
    for extra in spec:
        if extra != kind and extra not in EXTRA_KEYS[kind]:
            allowed = ", ".join(EXTRA_KEYS[kind]) or "nothing"
            problems.append(smap.problem(loc + (extra,), f"'{extra}' does not apply to {kind}", key=True,
                                         expected=f"{kind} takes {allowed} besides its values"))
    args = spec[kind]
    if kind == "choice":
        if not isinstance(args, list) or not args:
            problems.append(smap.problem(loc + (kind,), "choice needs a non-empty list of values",
                                         found=repr(args), hint="e.g. {choice: [16, 32, 64]}"))
            return None
        options = []
        for k, item in enumerate(args):
            oloc = loc + (kind, k)
            if isinstance(item, dict) and "space" in item and set(item) <= {"value", "space"}:
                if "value" not in item:
                    problems.append(smap.problem(oloc, "a conditional option needs `value:` next to `space:`"))
                    continue
                sub = item["space"]
                if not isinstance(sub, dict) or not sub:
                    problems.append(smap.problem(oloc + ("space",), "`space:` of an option is a mapping of "
                                                                    "config paths to distributions",
                                                 found=repr(sub)))
                    continue
                options.append(Option(value=item["value"], space=sub, where=oloc + ("value",), base=oloc))
            else:
                options.append(Option(value=item, where=oloc))
        seen = []
        for o in options:
            if any(o.value == s and type(o.value) is type(s) for s in seen):
                problems.append(smap.problem(o.where, f"choice lists {o.value!r} twice"))
            seen.append(o.value)
        return Param(path=path, parts=parts, kind=kind, options=options, where=loc)
    if not isinstance(args, list) or len(args) != 2 or not all(_number(a) for a in args):
        problems.append(smap.problem(loc + (kind,), f"{kind} needs [low, high], two numbers", found=repr(args),
                                     hint=f"e.g. {{{kind}: [{_EXAMPLE_BOUNDS[kind]}]}}"))
        return None
    low, high = args
    if kind == "int" and not all(isinstance(a, int) for a in args):
        problems.append(smap.problem(loc + (kind,), "int bounds must be whole numbers", found=repr(args)))
        return None
    if not low < high:
        problems.append(smap.problem(loc + (kind,), f"the low bound {low} is not below the high bound {high}",
                                     hint="write [low, high]; for a single value write it directly"))
        return None
    if kind == "loguniform" and low <= 0:
        problems.append(smap.problem(loc + (kind, 0), f"loguniform needs a positive low bound, got {low}",
                                     hint="use uniform for ranges that include 0"))
        return None
    step = spec.get("step")
    if step is not None and (not _number(step) or step <= 0 or (kind == "int" and not isinstance(step, int))):
        problems.append(smap.problem(loc + ("step",), f"step must be a positive {'whole ' if kind == 'int' else ''}"
                                                      f"number", found=repr(step)))
        return None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        problems.append(smap.problem(loc + ("log",), "log is true or false", found=repr(log)))
        return None
    if log and step not in (None, 1):
        problems.append(smap.problem(loc + ("log",), "log and step cannot be combined (Optuna)"))
        return None
    return Param(path=path, parts=parts, kind=kind, low=low, high=high, step=step, log=log, where=loc)


# ---------------------------------------------------------------------- against the model config

def _relocate(exc: ConfigError, space: Space, where: tuple, assignment: str) -> list[Problem]:
    """Problems a candidate value causes in the model config, pointed at that value in the space file."""
    out = []
    for p in exc.problems:
        located = space.source.problem(where, f"{assignment} makes the config invalid: {p.message}", found=p.found,
                                       expected=p.expected, hint=p.hint)
        out.append(located)
    return out


def check_space(space: Space, config: Path, base_overrides: list[str], *, allow_code: bool = False) -> None:
    """Try each parameter's bounds and each choice on the config (one at a time, with the options that
    enable a conditional parameter applied); every failure is reported at its place in the space file."""
    from ..config import load_config
    from ..graph import build_graph

    problems: list[Problem] = []
    load_config(config, base_overrides, allow_code=allow_code)  # the config itself must be valid first
    seen: set = set()

    def attempt(param: Param, assignments: list[tuple[str, object]], where: tuple) -> None:
        overrides = list(base_overrides) + ordered_overrides(assignments)
        try:
            check_model_config(load_config(config, overrides, allow_code=allow_code), build_graph)
        except ConfigError as exc:
            fresh = [p for p in exc.problems if (param.where, p.message) not in seen]  # e.g. a bad path: once
            seen.update((param.where, p.message) for p in fresh)
            if fresh:
                shown = ", ".join(f"{p}={json.dumps(v)}" for p, v in assignments[-1:])
                problems.extend(_relocate(ConfigError(problems=fresh), space, where, shown))

    def walk(params: list, enabled: list[tuple[str, object]]) -> None:
        for p in params:
            for value, where in p.candidates():
                attempt(p, enabled + [(p.path, value)], where)
            for o in p.options:
                if o.space:
                    walk(o.space, enabled + [(p.path, o.value)])

    walk(space.params, [])
    if problems:
        raise ConfigError(problems=problems)


def check_model_config(model_spec, build_graph) -> None:
    """What training would reject before its first step: the graph, and the optimizer's settings (checked
    when the optimizer is made)."""
    build_graph(model_spec)
    from ..engine.optimizers import make_optimizer

    try:
        make_optimizer(model_spec.config.training.optimizer)
    except (ValueError, TypeError) as exc:
        raise ConfigError(problems=[model_spec.source.problem(("training", "optimizer"), str(exc))]) from None


def ordered_overrides(assignments: list[tuple[str, object]]) -> list[str]:
    """KEY=VALUE overrides, a path before the paths inside it (`training.optimizer` before
    `training.optimizer.learning_rate`), whatever order the space file lists them in."""
    ranked = sorted(enumerate(assignments), key=lambda item: (len(parse_key(item[1][0])), item[0]))
    return [override(path, value) for _, (path, value) in ranked]


# ---------------------------------------------------------------------- sampling

def sample(trial, space: Space) -> list[tuple[str, object]]:
    """Ask ``trial`` (an optuna Trial) for a value of every parameter that applies; (path, value) pairs."""
    out: list[tuple[str, object]] = []

    def walk(params):
        for p in params:
            if p.kind == "fixed":
                out.append((p.path, p.value))
            elif p.kind == "loguniform":
                out.append((p.path, trial.suggest_float(p.name, p.low, p.high, log=True)))
            elif p.kind == "uniform":
                out.append((p.path, trial.suggest_float(p.name, p.low, p.high, step=p.step)))
            elif p.kind == "int":
                out.append((p.path, trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log)))
            else:
                values = [o.value for o in p.options]
                if all(isinstance(v, _SCALARS) for v in values):
                    picked = trial.suggest_categorical(p.name, values)
                    k = next(i for i, v in enumerate(values) if v == picked and type(v) is type(picked))
                else:  # mappings and lists: Optuna stores the option's index
                    k = trial.suggest_categorical(p.name, list(range(len(values))))
                out.append((p.path, p.options[k].value))
                walk(p.options[k].space)

    walk(space.params)
    return out

