"""Reusable pydantic field types for layer configs.

Everything here is pure Python (no numpy maths, no Numba) so that validation and
`summary` stay instant. Values are normalised to one canonical form:
activations to a name, initializers/constraints to ``{"type": name, ...args}``
(or a bare name when there are no arguments), regularizers to ``{"l1": a, "l2": b}``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from ..activations import ACTIVATIONS as _REGISTERED_ACTIVATIONS
from ..activations import ALIASES as _ACTIVATION_ALIASES
from ..errors import did_you_mean

# --------------------------------------------------------------------------- activations

# the names `activation:` accepts, from the activation registry (layerforge/activations.py; no numpy is loaded)
ACTIVATIONS = set(_REGISTERED_ACTIVATIONS)
ACTIVATION_ALIASES = dict(_ACTIVATION_ALIASES)


def _activation(value: Any) -> str:
    if value is None:
        return "linear"
    if not isinstance(value, str):
        raise ValueError(f"an activation is a name such as 'relu', not {value!r}")
    name = ACTIVATION_ALIASES.get(value.lower(), value.lower())
    if name not in ACTIVATIONS:
        near = did_you_mean(value, sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {value!r}" + (f"; did you mean {near!r}?" if near else
                                                        f" (known: {', '.join(sorted(ACTIVATIONS))})"))
    return name


ActivationName = Annotated[
    str | None,
    BeforeValidator(_activation),
    WithJsonSchema({"anyOf": [{"enum": sorted(ACTIVATIONS)}, {"type": "null"}]}),
]

# --------------------------------------------------------------------------- initializers

# canonical name -> {argument: default}
INITIALIZERS: dict[str, dict[str, Any]] = {
    "zeros": {}, "ones": {}, "constant": {"value": 0.0},
    "random_uniform": {"minval": -0.05, "maxval": 0.05, "seed": None},
    "random_normal": {"mean": 0.0, "stddev": 0.05, "seed": None},
    "truncated_normal": {"mean": 0.0, "stddev": 0.05, "seed": None},
    "glorot_uniform": {"seed": None}, "glorot_normal": {"seed": None},
    "he_uniform": {"seed": None}, "he_normal": {"seed": None},
    "lecun_uniform": {"seed": None}, "lecun_normal": {"seed": None},
    "orthogonal": {"gain": 1.0, "seed": None}, "identity": {"gain": 1.0},
    "variance_scaling": {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None},
}
INITIALIZER_ALIASES = {
    "zero": "zeros", "one": "ones", "uniform": "random_uniform", "normal": "random_normal",
    "glorotuniform": "glorot_uniform", "glorotnormal": "glorot_normal", "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal", "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal",
    "randomuniform": "random_uniform", "randomnormal": "random_normal", "truncatednormal": "truncated_normal",
    "variancescaling": "variance_scaling", "eye": "identity",
}


def _canonical(name: str, table: dict, aliases: dict, kind: str) -> str:
    key = name.lower()
    key = aliases.get(key, key)
    if key not in table:
        near = did_you_mean(name, sorted(table))
        raise ValueError(f"unknown {kind} {name!r}" + (f"; did you mean {near!r}?" if near else
                                                        f" (known: {', '.join(sorted(table))})"))
    return key


def _finite(v) -> str | None:
    return None if math.isfinite(v) else "must be a finite number"


def _at_least_zero(v) -> str | None:
    return None if math.isfinite(v) and v >= 0 else "must be a finite number >= 0"


def _positive(v) -> str | None:
    return None if math.isfinite(v) and v > 0 else "must be a finite number > 0"


def _fraction(v) -> str | None:
    return None if 0 <= v <= 1 else "must be a number from 0 to 1"


def _seed(v) -> str | None:
    return None if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) else \
        "must be a non-negative integer or null"


def _axis(v) -> str | None:
    ok = all(isinstance(a, int) and not isinstance(a, bool) for a in (v if isinstance(v, list) else [v]))
    return None if ok and (not isinstance(v, list) or v) else "must be an integer or a list of integers"


def _one_of(*names):
    def check(v) -> str | None:
        return None if v in names else "must be one of " + ", ".join(names)

    return check


# argument -> check (None when the engine can use the value): what `validate` verifies so that training does not
# fail when the weights are initialised or constrained
_ARG_RULES = {
    "mean": _finite, "stddev": _at_least_zero, "minval": _finite, "maxval": _finite, "value": _finite,
    "gain": _finite, "scale": _positive, "seed": _seed,
    "mode": _one_of("fan_in", "fan_out", "fan_avg"),
    "distribution": _one_of("truncated_normal", "untruncated_normal", "normal", "uniform"),
    "max_value": _at_least_zero, "min_value": _at_least_zero, "rate": _fraction, "axis": _axis,
}


def _with_args(value: Any, table: dict, aliases: dict, kind: str, arg_renames: dict | None = None):
    if isinstance(value, str):
        return _canonical(value, table, aliases, kind)
    if isinstance(value, dict):
        args = dict(value)
        name = args.pop("type", None) or args.pop("class_name", None)
        if name is None:
            raise ValueError(f"a {kind} mapping needs `type:` (one of {', '.join(sorted(table))})")
        if "config" in args and isinstance(args["config"], dict):  # Keras' serialised form
            args.update(args.pop("config"))
        canon = _canonical(str(name), table, aliases, kind)
        for old, new in (arg_renames or {}).items():
            if old in args and new not in args:
                args[new] = args.pop(old)
        unknown = [k for k in args if k not in table[canon]]
        if unknown:
            near = did_you_mean(unknown[0], table[canon])
            raise ValueError(f"{kind} {canon!r} has no argument {unknown[0]!r}"
                             + (f"; did you mean {near!r}?" if near else "")
                             + (f" (it takes: {', '.join(table[canon])})" if table[canon] else " (it takes none)"))
        for k, v in args.items():
            default = table[canon][k]
            if isinstance(default, float) and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                raise ValueError(f"{kind} {canon!r}: {k} must be a number, not {v!r}")
            why = _ARG_RULES[k](v) if k in _ARG_RULES else None
            if why:
                raise ValueError(f"{kind} {canon!r}: {k} {why}, not {v!r}")
        lo, hi = ("minval", "maxval") if "minval" in table[canon] else ("min_value", "max_value")
        if lo in table[canon] and hi in table[canon]:
            low, high = args.get(lo, table[canon][lo]), args.get(hi, table[canon][hi])
            if low > high:
                raise ValueError(f"{kind} {canon!r}: {lo} ({low}) must not exceed {hi} ({high})")
        return {"type": canon, **args} if args else canon
    raise ValueError(f"a {kind} is a name or a mapping with `type:`, not {value!r}")


def _initializer(value: Any):
    return _with_args(value, INITIALIZERS, INITIALIZER_ALIASES, "initializer")


_SPEC_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"type": {"type": "string"}},
                                                "required": ["type"]}]}
InitializerSpec = Annotated[Any, BeforeValidator(_initializer),
                            WithJsonSchema({**_SPEC_SCHEMA, "description": "initializer name or {type: ..., args}"})]

# --------------------------------------------------------------------------- regularizers

REGULARIZERS = {"l1": {"l1": 0.01}, "l2": {"l2": 0.01}, "l1_l2": {"l1": 0.01, "l2": 0.01},
                "l1l2": {"l1": 0.01, "l2": 0.01}}


def _regularizer(value: Any):
    if value is None:
        return None
    if isinstance(value, str):
        key = value.lower().replace("regularizer", "")
        if key in ("l1l2", "l1_l2", "weightregularizer"):
            key = "l1_l2"
        if key not in REGULARIZERS:
            near = did_you_mean(value, ["l1", "l2", "l1_l2"])
            raise ValueError(f"unknown regularizer {value!r}" + (f"; did you mean {near!r}?" if near else "")
                             + " (known: l1, l2, l1_l2, or {l1: 0.01, l2: 0.001})")
        d = REGULARIZERS[key]
        return {"l1": float(d.get("l1", 0.0)), "l2": float(d.get("l2", 0.0))}
    if isinstance(value, dict):
        args = dict(value)
        name = str(args.pop("type", args.pop("name", "l1_l2"))).lower().replace("regularizer", "")
        if "config" in args and isinstance(args["config"], dict):
            args.update(args.pop("config"))
        if name in ("l1", "l2") and "l" in args:  # Keras 1 shortcut l1(l=...)
            args[name] = args.pop("l")
        unknown = [k for k in args if k not in ("l1", "l2")]
        if unknown:
            raise ValueError(f"regularizer has no argument {unknown[0]!r} (it takes l1 and l2)")
        for k, v in args.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"regularizer {k} must be a number >= 0, not {v!r}")
        if name not in ("l1", "l2", "l1_l2", "l1l2", "weight", "activity", "activity_l1", "activity_l2"):
            raise ValueError(f"unknown regularizer {name!r} (known: l1, l2, l1_l2)")
        # {type: l1} alone means Keras' L1() default factor 0.01
        base = REGULARIZERS.get(name, {}) if name in ("l1", "l2") and not args else {}
        return {"l1": float(args.get("l1", base.get("l1", 0.0))), "l2": float(args.get("l2", base.get("l2", 0.0)))}
    raise ValueError(f"a regularizer is l1, l2, l1_l2 or {{l1: .., l2: ..}}, not {value!r}")


RegularizerSpec = Annotated[
    Any, BeforeValidator(_regularizer),
    WithJsonSchema({"anyOf": [{"enum": ["l1", "l2", "l1_l2"]},
                              {"type": "object", "properties": {"l1": {"type": "number"}, "l2": {"type": "number"}}},
                              {"type": "null"}], "description": "l1/l2 penalty on the weights"}),
]

# --------------------------------------------------------------------------- constraints

CONSTRAINTS: dict[str, dict[str, Any]] = {
    "max_norm": {"max_value": 2.0, "axis": 0},
    "non_neg": {},
    "unit_norm": {"axis": 0},
    "min_max_norm": {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0},
}
CONSTRAINT_ALIASES = {"maxnorm": "max_norm", "nonneg": "non_neg", "unitnorm": "unit_norm",
                      "minmaxnorm": "min_max_norm"}


def _constraint(value: Any):
    if value is None:
        return None
    return _with_args(value, CONSTRAINTS, CONSTRAINT_ALIASES, "constraint",
                      arg_renames={"m": "max_value", "low": "min_value", "high": "max_value"})


ConstraintSpec = Annotated[Any, BeforeValidator(_constraint),
                           WithJsonSchema({"anyOf": [*_SPEC_SCHEMA["anyOf"], {"type": "null"}],
                                           "description": "max_norm, non_neg, unit_norm, min_max_norm"})]

# --------------------------------------------------------------------------- tuples of ints


def int_tuple(n: int, *, minimum: int = 1, name: str = "value"):
    """A field that takes an int (same on every axis) or a list of ``n`` ints."""

    def check(value: Any):
        if isinstance(value, bool):
            raise ValueError(f"expected an integer or a list of {n} integers, not {value!r}")
        if isinstance(value, int):
            value = [value] * n
        if not isinstance(value, (list, tuple)) or len(value) != n \
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"expected an integer or a list of {n} integers, not {value!r}")
        if any(v < minimum for v in value):
            raise ValueError(f"every {name} must be >= {minimum}, got {list(value)}")
        return tuple(value)

    schema = {"anyOf": [{"type": "integer", "minimum": minimum},
                        {"type": "array", "items": {"type": "integer", "minimum": minimum},
                         "minItems": n, "maxItems": n}]}
    return Annotated[tuple[int, ...], BeforeValidator(check), WithJsonSchema(schema),
                     PlainSerializer(lambda v: list(v) if len(set(v)) > 1 else v[0], return_type=Any)]


def _data_format(value: Any) -> str:
    if value is None:
        return "channels_last"
    v = str(value).lower()
    table = {"channels_last": "channels_last", "channels_first": "channels_first", "tf": "channels_last",
             "th": "channels_first", "default": "channels_last"}
    if v not in table:
        raise ValueError(f"data_format must be channels_last or channels_first (Keras 1: tf / th), not {value!r}")
    return table[v]


DataFormat = Annotated[str, BeforeValidator(_data_format),
                       WithJsonSchema({"enum": ["channels_last", "channels_first"]})]


def seed_value(value: Any):
    """A seed is a non-negative integer (numpy's generators refuse the rest) or null."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"a seed is a non-negative integer or null, not {value!r}")
    return value


def strict_dims(value: Any):
    """A shape list as written: integers or null only (pydantic would read true as 1 and "4" as 4)."""
    if isinstance(value, list):
        for d in value:
            if isinstance(d, (bool, str)) or (isinstance(d, float) and not d.is_integer()):
                raise ValueError(f"every dimension is a positive integer or null, not {d!r}")
    return value


Shape = tuple  # a shape without the batch axis: ints, or None for a variable length
