"""Lambda: an expression in a small safe language (gradients derived automatically), or opt-in Python code.

``expression: "x * 2 + tanh(x)"`` is parsed when the config is validated
(:mod:`layerforge.expressions`); errors name the column inside the expression.
``function: "package.module:callable"`` imports and runs user code, which only
happens when the config was loaded with ``allow_code=True`` (``load_config``, the
CLI's ``--allow-code``); otherwise building the graph refuses the config.

Inputs: Lambda is a multi-input layer. The graph hands it a list of arrays (one
per input, even when there is one); called directly with a single array/shape it
works the same and returns a single gradient. In an expression the inputs are
``x`` (the first input) and ``x0, x1, ...``, or the names listed in ``input_names``.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..errors import ConfigError, Problem, ShapeError
from .base import Example, Layer, LayerConfig, register, show_shape

_REF_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
_DUMMY_SIZES = (2, 3)  # sizes tried for variable (None) axes when a function's output shape is inferred


def _default_name_index(name: str) -> int:
    return 0 if name == "x" else int(name[1:])


@register
class Lambda(Layer):
    """Applies an expression to its input(s), e.g. ``expression: "x * 2 + tanh(x)"``, in a small safe language
    (arithmetic, comparisons, ``a if c else b``, exp/log/tanh/sigmoid/relu/softplus/..., sum/mean/max/min with
    ``axis=``, softmax, l2_normalize, concatenate, reshape, slicing ``x[:, ::-1]``; axes count the batch axis)
    whose gradient is derived automatically. Several inputs are ``x0, x1, ...`` (``x`` = the first) or the
    ``input_names``; ``arguments`` are named constants. Alternatively ``function: "pkg.module:fn"`` runs Python
    code (only with ``--allow-code``; training then needs ``gradient:``). The output shape is inferred unless
    ``output_shape`` is given; a mask passes through only when the output shape equals the input shape."""

    type = "Lambda"
    family = "core"
    multi_input = True

    class Config(LayerConfig):
        input_names: list[str] | None = Field(
            None, description="names of the inputs inside `expression` (default: x for one input; x0, x1, ... "
                              "for several, x = the first)")
        function: str | None = Field(
            None, pattern=_REF_PATTERN,
            description="\"package.module:callable\" applied to the input array (a list for several inputs); "
                        "runs Python code, so only with --allow-code")
        gradient: str | None = Field(
            None, pattern=_REF_PATTERN,
            description="\"package.module:callable\" taking (dy, *inputs) and returning dx (or a list of dx); "
                        "needed to train through `function:`")
        arguments: dict[str, Any] | None = Field(
            None, description="named constants usable in `expression` (numbers or lists of numbers); "
                              "with `function:` passed to it (and to `gradient:`) as keyword arguments")
        expression: str | None = Field(
            None, description="e.g. \"x * 2 + tanh(x)\", \"sum(x * x, axis=-1, keepdims=True)\", "
                              "\"x0 * sigmoid(x1)\"; see `layerforge layers Lambda`")
        output_shape: list[int | None] | None = Field(
            None, description="output shape without the batch axis (default: inferred)")
        mask: None = Field(None, description="Keras 3 `mask` argument; only null is supported: the incoming mask "
                                             "passes through when the output shape equals the input shape, "
                                             "otherwise it is dropped")

        @field_validator("input_names")
        @classmethod
        def _check_input_names(cls, v):
            if v is None:
                return v
            from ..expressions import CONSTANTS, FUNCTIONS

            if not v:
                raise ValueError("input_names must list at least one name")
            for name in v:
                if not isinstance(name, str) or not name.isidentifier() or name.startswith("__"):
                    raise ValueError(f"input name {name!r} is not a valid name (letters, digits and _, "
                                     "not starting with __)")
                if name in FUNCTIONS or name in CONSTANTS:
                    raise ValueError(f"input name {name!r} is already a function or constant of the expression "
                                     "language; pick another name")
            if len(set(v)) != len(v):
                raise ValueError(f"input_names repeats a name: {v}")
            return v

        @field_validator("arguments", mode="before")
        @classmethod
        def _check_arguments(cls, v, info):
            if v is None:
                return None
            if not isinstance(v, dict):
                raise ValueError(f"arguments must be a mapping of names to numbers, not {v!r}")
            from ..expressions import check_constant_names

            if info.data.get("function") is not None or "function" not in info.data:
                # keyword arguments of user code (or `function:` itself is wrong): any YAML value
                bad = [k for k in v if not isinstance(k, str) or not k.isidentifier()]
                if bad:
                    raise ValueError(f"argument name {bad[0]!r} is not a valid keyword argument name")
                return v
            names = info.data.get("input_names")
            check_constant_names(v, reserved=set(names or ()))
            if not names:
                for key in v:
                    if key == "x" or key[:1] == "x" and key[1:].isdigit():
                        raise ValueError(f"argument name {key!r} is already an input name; pick another name")
            return v

        @field_validator("expression")
        @classmethod
        def _parse_expression(cls, v, info):
            if v is None:
                return v
            if "input_names" not in info.data or "arguments" not in info.data:
                return v  # those fields failed and are reported; names cannot be checked
            from ..expressions import compile_expression

            expr = compile_expression(v, info.data["input_names"], info.data["arguments"] or {})
            if not expr.used_inputs:
                raise ValueError("the expression does not use any input"
                                 + (f" ({', '.join(info.data['input_names'])})" if info.data["input_names"]
                                    else " (x, or x0, x1, ... for several inputs)"))
            return v

        @field_validator("output_shape")
        @classmethod
        def _positive(cls, v):
            if v is not None and any(d is not None and d <= 0 for d in v):
                raise ValueError(f"every dimension must be a positive integer or null, got {v}")
            return v

        @model_validator(mode="after")
        def _one_of(self):
            if (self.expression is None) == (self.function is None):
                raise ValueError("give exactly one of `expression:` (the safe expression language) and "
                                 "`function:` (\"package.module:callable\", needs --allow-code)")
            if self.gradient is not None and self.function is None:
                raise ValueError("`gradient:` only applies with `function:`; expressions derive their gradient")
            if self.input_names is not None and self.expression is None:
                raise ValueError("`input_names:` only applies with `expression:`")
            return self

    examples = [
        Example({"type": "Lambda", "expression": "x * 2 + tanh(x)"}, (4,), output_shape=(4,), params=0),
        Example({"type": "Lambda", "expression": "x0 * sigmoid(x1) + square(x0)"}, [(3,), (3,)],
                output_shape=(3,), params=0),
        Example({"type": "Lambda", "expression": "sum(x * x, axis=-1, keepdims=True)"}, (2, 3),
                output_shape=(2, 1), params=0),
        Example({"type": "Lambda", "expression": "x[:, ::-1] * 0.5"}, (5,), output_shape=(5,)),
        Example({"type": "Lambda", "expression": "x * 3 if x > 0.1 else exp(x) - 1", "output_shape": [4]},
                (4,), output_shape=(4,)),
        Example({"type": "Lambda", "expression": "softmax(a * scale, axis=-1) + l2_normalize(b)[:, :, 1:3]",
                 "input_names": ["a", "b"], "arguments": {"scale": 0.5}}, [(None, 2), (None, 4)],
                output_shape=(None, 2), note="variable length, named inputs, arguments"),
        Example({"type": "Lambda", "expression": "concatenate([x, mean(x, axis=-1, keepdims=True)], axis=-1)"},
                (6, 3), output_shape=(6, 4), mask=True),
        Example({"type": "Lambda", "expression": "clip(x, -0.5, 0.5) * 2 + maximum(x, 0.2) ** 2"}, (6, 3),
                output_shape=(6, 3), mask=True),
    ]

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self._expr = None
        self._shape_cache: dict = {}

    @property
    def reentrant(self) -> bool:
        """An ``expression:`` is pure (safe to run on several threads at once); a ``function:`` runs user Python
        code, which may keep state or not be thread-safe: its batches run one at a time."""
        return self.config.function is None

    # ------------------------------------------------------------------ helpers
    @property
    def expression(self):
        """The compiled expression (None for `function:` layers)."""
        if self._expr is None and self.config.expression is not None:
            from ..expressions import compile_expression

            self._expr = compile_expression(self.config.expression, self.config.input_names,
                                            self.config.arguments or {})
        return self._expr

    def _code_problem(self, message: str, hint: str | None = None) -> Problem:
        return Problem(message=message, hint=hint)

    def _check_code_allowed(self, error_cls=ShapeError) -> None:
        if not self.config.code_allowed:  # Python code from a config runs only when its loader allowed it
            raise error_cls(problems=[self._code_problem(
                f"this config runs Python code (Lambda layer '{self.name}': function = '{self.config.function}'"
                + (f", gradient = '{self.config.gradient}'" if self.config.gradient else "")
                + "); pass --allow-code to run it",
                hint="only use --allow-code with configs you trust; an `expression:` needs no code")])

    def _load(self, ref: str, what: str, error_cls=ShapeError):
        module_name, _, attr = ref.partition(":")
        try:
            obj = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
            raise error_cls(problems=[self._code_problem(
                f"Lambda layer '{self.name}': cannot import module '{module_name}' for {what} '{ref}': "
                f"{type(exc).__name__}: {exc}", hint="the module must be importable (on PYTHONPATH)")]) from None
        for part in attr.split("."):
            if part.startswith("__") or not hasattr(obj, part):
                raise error_cls(problems=[self._code_problem(
                    f"Lambda layer '{self.name}': module '{module_name}' has no '{attr}' ({what} '{ref}')")])
            obj = getattr(obj, part)
        if not callable(obj):
            raise error_cls(problems=[self._code_problem(
                f"Lambda layer '{self.name}': {what} '{ref}' is not callable")])
        return obj

    def _name_index(self, input_shape) -> dict[str, int]:
        """Input name used by the expression -> index of the input."""
        n = len(input_shape) if isinstance(input_shape, list) else 1
        names = self.config.input_names
        if names is not None:
            if len(names) != n:
                raise self._shape_error(input_shape, f"input_names lists {len(names)} name(s) ({', '.join(names)}) "
                                                    f"but the layer receives {n} input(s)",
                                       "give one name per input, in the order of `inputs:`")
            return {name: i for i, name in enumerate(names)}
        index = {}
        for name in self.expression.used_inputs:
            k = _default_name_index(name)
            if k >= n:
                have = "x (= x0)" if n == 1 else ", ".join(f"x{i}" for i in range(n))
                raise self._shape_error(input_shape, f"the expression uses '{name}' but the layer receives {n} "
                                                    f"input(s): {have}",
                                       "list the inputs with `inputs: [a, b]` or use the available names")
            index[name] = k
        return index

    def _shape_error(self, input_shape, rule: str, hint: str | None = None) -> ShapeError:
        single = isinstance(input_shape, list) and len(input_shape) == 1
        return self.shape_error(input_shape[0] if single else input_shape, rule, hint)

    @staticmethod
    def _shapes(input_shape) -> list[tuple]:
        return [tuple(s) for s in input_shape] if isinstance(input_shape, list) else [tuple(input_shape)]

    # ------------------------------------------------------------------ shape side
    def output_shape(self, input_shape):
        if self.config.function is not None:
            self._check_code_allowed()
        key = repr(input_shape)
        if key in self._shape_cache:
            return self._shape_cache[key]
        shapes = self._shapes(input_shape)
        if self.config.function is not None:
            fn = self._load(self.config.function, "function")
            if self.config.gradient is not None:
                self._load(self.config.gradient, "gradient")
            out = tuple(self.config.output_shape) if self.config.output_shape is not None \
                else self._infer_function_shape(fn, input_shape, shapes)
        else:
            out = self._expression_shape(input_shape, shapes)
        if len(self._shape_cache) > 64:  # many different variable lengths
            self._shape_cache.clear()
        self._shape_cache[key] = out
        return out

    def _expression_shape(self, input_shape, shapes):
        from ..expressions import ExpressionError

        index = self._name_index(input_shape)
        try:
            inferred = self.expression.output_shape({name: shapes[k] for name, k in index.items()})
        except ExpressionError as exc:
            raise self._shape_error(input_shape, f"expression {self.config.expression!r}: {exc}",
                                   "axes count the batch axis (axis=-1 is the last); check the sizes the "
                                   "expression combines") from None
        declared = self.config.output_shape
        if declared is None:
            return inferred
        if len(declared) != len(inferred) or any(
                d is not None and i is not None and d != i for d, i in zip(declared, inferred, strict=False)):
            raise self._shape_error(input_shape, f"the expression gives {show_shape(inferred)} but output_shape "
                                                f"says {show_shape(tuple(declared))}",
                                   "fix output_shape or leave it out (it is inferred)")
        return tuple(d if d is not None else i for d, i in zip(declared, inferred, strict=False))

    def _infer_function_shape(self, fn, input_shape, shapes):
        import numpy as np

        outs = []
        tries = _DUMMY_SIZES if any(d is None for s in shapes for d in s) else _DUMMY_SIZES[:1]
        for fill in tries:
            xs = [np.zeros((2,) + tuple(fill if d is None else d for d in s), dtype=np.float32) for s in shapes]
            try:
                y = np.asarray(self._call_function(fn, xs, isinstance(input_shape, list)))
            except Exception as exc:  # noqa: BLE001 - user code
                raise self._shape_error(input_shape, f"calling {self.config.function} on a zero batch to infer the "
                                                    f"output shape failed: {type(exc).__name__}: {exc}",
                                       "give `output_shape:` (without the batch axis)") from None
            if y.ndim < 1 or y.shape[0] != 2:
                raise self._shape_error(input_shape, f"{self.config.function} returned shape {y.shape} for a "
                                                    "batch of 2; the first axis must stay the batch axis")
            outs.append(y.shape[1:])
        if len(outs) == 2 and len(outs[0]) != len(outs[1]):
            raise self._shape_error(input_shape, f"{self.config.function} returns a different number of axes for "
                                                "different lengths", "give `output_shape:`")
        return tuple(None if len(outs) == 2 and a != b else a for a, b in zip(outs[0], outs[-1], strict=True))

    def flops(self, input_shape, output_shape):
        if self.config.expression is None:
            return 0
        shapes = self._shapes(input_shape)
        try:
            index = self._name_index(input_shape)
            return self.expression.flops({name: shapes[k] for name, k in index.items()})
        except (ValueError, ShapeError):
            return 0

    # ------------------------------------------------------------------ maths
    def _call_function(self, fn, xs, as_list: bool):
        arg = xs if as_list and len(xs) > 1 else xs[0]
        return fn(arg, **(self.config.arguments or {}))

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        import numpy as np

        xs = list(x) if isinstance(x, list) else [x]
        if self.config.function is not None:
            self._check_code_allowed(ConfigError)
            fn = self._load(self.config.function, "function", ConfigError)
            y = np.asarray(self._call_function(fn, xs, isinstance(x, list)))
            dtype = xs[0].dtype
            if np.issubdtype(y.dtype, np.floating) and np.issubdtype(dtype, np.floating) and y.dtype != dtype:
                y = y.astype(dtype)
            declared = self.config.output_shape
            if declared is not None and (y.ndim != len(declared) + 1 or any(
                    d is not None and d != g for d, g in zip(declared, y.shape[1:], strict=False))):
                raise ShapeError(problems=[Problem(
                    message=f"Lambda layer '{self.name}': {self.config.function} returned shape {y.shape} but "
                            f"output_shape says {show_shape(tuple(declared))}")])
            return y, ("function", xs, isinstance(x, list))
        index = self._name_index([tuple(v.shape[1:]) for v in xs] if isinstance(x, list) else tuple(x.shape[1:]))
        y, tape = self.expression.forward({name: xs[k] for name, k in index.items()})
        return y, ("expression", xs, isinstance(x, list), index, tape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        import numpy as np

        kind, xs, as_list = cache[:3]
        if kind == "function":
            dxs = self._function_backward(dy, xs)
        else:
            index, tape = cache[3:]
            grads = self.expression.backward(tape, dy)
            dxs = [None] * len(xs)
            for name, k in index.items():
                g = grads.get(name)  # None: a named input the expression does not use
                if g is not None:
                    dxs[k] = g if dxs[k] is None else dxs[k] + g
            for k, v in enumerate(xs):
                if not np.issubdtype(v.dtype, np.floating):
                    dxs[k] = None
                elif dxs[k] is None:
                    dxs[k] = np.zeros_like(v)
                elif dxs[k].dtype != v.dtype:
                    dxs[k] = dxs[k].astype(v.dtype)
        return (dxs if as_list else dxs[0]), {}

    def _function_backward(self, dy, xs):
        import numpy as np

        c = self.config
        if c.gradient is None:
            raise ConfigError(problems=[Problem(
                message=f"Lambda layer '{self.name}' runs function = '{c.function}' without `gradient:`, so it "
                        "cannot be trained through (forward/predict-only use works without one)",
                hint="add `gradient: \"package.module:callable\"` taking (dy, *inputs) and returning dx (a list "
                     "of dx for several inputs), or write the layer as an `expression:` (gradients are derived "
                     "automatically)")])
        self._check_code_allowed(ConfigError)
        gfn = self._load(c.gradient, "gradient", ConfigError)
        result = gfn(dy, *xs, **(c.arguments or {}))
        parts = list(result) if isinstance(result, (list, tuple)) else [result]
        if len(parts) != len(xs):
            raise ConfigError(problems=[Problem(
                message=f"Lambda layer '{self.name}': gradient {c.gradient} returned {len(parts)} array(s) for "
                        f"{len(xs)} input(s)")])
        dxs = []
        for g, v in zip(parts, xs, strict=True):
            if g is None or not np.issubdtype(v.dtype, np.floating):
                dxs.append(None if not np.issubdtype(v.dtype, np.floating) else np.zeros_like(v))
                continue
            g = np.asarray(g, dtype=v.dtype)
            if g.shape != v.shape:
                raise ConfigError(problems=[Problem(
                    message=f"Lambda layer '{self.name}': gradient {c.gradient} returned shape {g.shape} for an "
                            f"input of shape {v.shape}")])
            dxs.append(g)
        return dxs

    def compute_mask(self, x, mask):
        """Pass the mask through when the output shape equals every input's shape; drop it otherwise."""
        if mask is None:
            return None
        masks = mask if isinstance(mask, list) else [mask]
        if all(m is None for m in masks):
            return None
        xs = x if isinstance(x, list) else [x]
        in_shapes = [tuple(v.shape[1:]) for v in xs]
        out = tuple(self.output_shape(in_shapes if isinstance(x, list) else in_shapes[0]))
        for s in in_shapes:
            if len(s) != len(out) or any(o is not None and o != d for o, d in zip(out, s, strict=True)):
                return None
        result = None
        for m in masks:
            if m is not None:
                result = m if result is None else (result & m)
        return result
