"""A small, safe expression language with reverse-mode gradients (numpy only).

Used by the ``Lambda`` layer (``expression: "x * 2 + tanh(x)"``) and by scalar
settings such as a learning-rate schedule (``"lr * 0.5 if epoch >= 10 else lr"``).

The text is parsed with Python's :mod:`ast` (``mode="eval"``) and every node is
checked against a whitelist while it is compiled into a tiny graph of
primitives; nothing is ever handed to ``eval``. What the language has:

* numbers, ``pi``, ``e``, the declared inputs and the named constants (``arguments:``);
* ``+ - * / **``, unary ``-``/``+``;
* comparisons ``< <= > >= == !=`` (chains allowed), ``and``, ``or``, ``not``: they give
  0/1 floats and pass no gradient;
* ``a if cond else b``: both branches are computed and picked elementwise; the gradient
  flows into the chosen one;
* the functions in :data:`FUNCTIONS` (elementwise maths, ``clip``, ``maximum``,
  ``where``, reductions with ``axis=``/``keepdims=``, ``softmax``, ``l2_normalize``,
  ``concatenate``, ``reshape``);
* basic slicing ``x[:, 0]``, ``x[:, ::-1]``, ``x[..., 1:3]``, ``x[:, None]`` with integer literals.

Axes count the batch axis as in Keras/numpy: ``axis=-1`` is the last axis and
``axis=0`` is the batch axis, which no reduction, softmax, concatenation or index
may touch. Every error is a :class:`ExpressionError` (a ``ValueError``) whose
message starts with the column inside the expression, e.g.
``column 5: unknown function 'foo'; did you mean 'exp'?``.

Gradients are derived automatically: ``forward`` records every intermediate value,
``backward`` walks the graph in reverse and returns the gradient of each input.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import did_you_mean

MAX_LENGTH = 4000  # characters; longer "expressions" are surely a mistake
CONSTANTS = {"pi": math.pi, "e": math.e}


@dataclass(frozen=True)
class FunctionSpec:
    """A callable of the language: positional arity and the keyword arguments it accepts (with defaults)."""

    min_args: int
    max_args: int
    keywords: dict = field(default_factory=dict)
    doc: str = ""


_UNARY_DOCS = {
    "exp": "e**x", "log": "natural logarithm", "log1p": "log(1 + x)", "expm1": "exp(x) - 1", "tanh": "tanh",
    "sigmoid": "1 / (1 + exp(-x))", "relu": "max(x, 0)", "softplus": "log(1 + exp(x))", "sin": "sine",
    "cos": "cosine", "sqrt": "square root", "abs": "absolute value", "square": "x * x",
    "sign": "-1, 0 or 1 (no gradient)",
}
FUNCTIONS: dict[str, FunctionSpec] = {name: FunctionSpec(1, 1, doc=doc) for name, doc in _UNARY_DOCS.items()}
FUNCTIONS.update({
    "pow": FunctionSpec(2, 2, doc="pow(a, b) = a ** b"),
    "clip": FunctionSpec(3, 3, doc="clip(x, lo, hi)"),
    "maximum": FunctionSpec(2, 2, doc="elementwise maximum(a, b)"),
    "minimum": FunctionSpec(2, 2, doc="elementwise minimum(a, b)"),
    "where": FunctionSpec(3, 3, doc="where(cond, a, b): a where cond != 0, else b"),
    "sum": FunctionSpec(1, 1, {"axis": None, "keepdims": False}, "sum(x, axis=-1, keepdims=False)"),
    "mean": FunctionSpec(1, 1, {"axis": None, "keepdims": False}, "mean(x, axis=-1, keepdims=False)"),
    "max": FunctionSpec(1, 2, {"axis": None, "keepdims": False},
                        "max(x, axis=-1, keepdims=False) reduces; max(a, b) is maximum(a, b)"),
    "min": FunctionSpec(1, 2, {"axis": None, "keepdims": False},
                        "min(x, axis=-1, keepdims=False) reduces; min(a, b) is minimum(a, b)"),
    "softmax": FunctionSpec(1, 1, {"axis": -1}, "softmax(x, axis=-1)"),
    "l2_normalize": FunctionSpec(1, 1, {"axis": -1, "epsilon": 1e-12},
                                 "x / sqrt(max(sum(x*x, axis), epsilon)) (Keras)"),
    "concatenate": FunctionSpec(1, 1, {"axis": -1}, "concatenate([a, b, ...], axis=-1)"),
    "reshape": FunctionSpec(2, 2, doc="reshape(x, (a, b)): target shape without the batch axis; one -1 allowed"),
})

# Operators in the language, for messages.
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_CMPOPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
_OP_SYMBOLS = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
               ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Invert: "~", ast.In: "in",
               ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
_FORBIDDEN = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed", ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed", ast.GeneratorExp: "generator expressions are not allowed",
    ast.Dict: "dicts are not allowed", ast.Set: "sets are not allowed",
    ast.JoinedStr: "f-strings are not allowed", ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignments (:=) are not allowed", ast.Starred: "* unpacking is not allowed",
    ast.Await: "await is not allowed", ast.Yield: "yield is not allowed", ast.YieldFrom: "yield is not allowed",
}


class ExpressionError(ValueError):
    """A mistake in an expression; the message starts with the column (1-based) inside the text."""

    def __init__(self, message: str, column: int | None = None, line: int | None = None):
        self.column = column
        self.line = line
        if column is None:
            where = ""
        elif line is not None and line > 1:
            where = f"line {line}, column {column}: "
        else:
            where = f"column {column}: "
        super().__init__(where + message)


class Node:
    """One primitive of a compiled expression."""

    __slots__ = ("op", "args", "static", "line", "col", "idx", "grad", "batched")

    def __init__(self, op: str, args: tuple = (), static: Any = None, pos: tuple = (None, None)):
        self.op = op
        self.args = tuple(args)
        self.static = static
        self.line, self.col = pos
        self.idx = -1  # position in the evaluation order
        self.grad = False  # depends on an input through differentiable operations
        self.batched = False  # carries the batch axis first

    def error(self, message: str) -> ExpressionError:
        return ExpressionError(message, self.col, self.line)

    def __repr__(self) -> str:  # for debugging
        return f"Node({self.op}, {self.static!r}, {list(self.args)!r})"


# ====================================================================== compiling

_NO_GRAD = {"lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not", "sign"}
_INDEXED_NAME = "x"  # default input names: x, or x0, x1, ... when there are several


def _is_default_input(name: str) -> bool:
    return name == _INDEXED_NAME or (name.startswith(_INDEXED_NAME) and name[1:].isdigit()
                                     and (name[1:] == "0" or not name[1:].startswith("0")))


class _Compiler:
    def __init__(self, text: str, input_names, constants: dict, batched: bool):
        self.text = text
        self.lines = text.split("\n")
        self.input_names = None if input_names is None else list(input_names)
        self.constants = constants
        self.batched = batched
        self.used: list[str] = []

    # --------------------------------------------------------------- positions
    def pos(self, node) -> tuple[int, int]:
        """1-based (line, column in characters) of an ast node inside the user's text."""
        line = getattr(node, "lineno", 1)
        offset = getattr(node, "col_offset", 0)
        return self._pos(line, offset)

    def _pos(self, line: int, byte_offset: int) -> tuple[int, int]:
        src_line = ("(" + self.lines[0]) if line == 1 else self.lines[min(line, len(self.lines)) - 1]
        col = len(src_line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))
        if line == 1:
            col -= 1  # the opening parenthesis we added
        return line, max(col, 0) + 1

    def fail(self, node, message: str) -> ExpressionError:
        line, col = self.pos(node)
        return ExpressionError(message, col, line)

    # --------------------------------------------------------------- entry
    def compile(self) -> Node:
        if not self.text.strip():
            raise ExpressionError("the expression is empty")
        if len(self.text) > MAX_LENGTH:
            raise ExpressionError(f"the expression is {len(self.text)} characters long (at most {MAX_LENGTH})")
        self._check_parentheses()
        # The parentheses let an expression span several lines (YAML block scalars) and
        # tolerate leading spaces; the whitelist below is what makes it safe.
        try:
            tree = ast.parse("(" + self.text + "\n)", mode="eval")
        except SyntaxError as exc:
            raise self._syntax_error(exc) from None
        except (RecursionError, MemoryError, ValueError):
            raise ExpressionError("the expression is nested too deeply or too large") from None
        try:
            return self.expr(tree.body)
        except RecursionError:
            raise ExpressionError("the expression is nested too deeply") from None

    def _check_parentheses(self) -> None:
        """Unbalanced round brackets, located (the parser would blame the parentheses we add)."""
        opened: list[tuple[int, int]] = []
        quote = None
        for line_no, line in enumerate(self.lines, start=1):
            for col, ch in enumerate(line, start=1):
                if quote:
                    quote = None if ch == quote else quote
                elif ch in "'\"":
                    quote = ch
                elif ch == "#":
                    break
                elif ch == "(":
                    opened.append((line_no, col))
                elif ch == ")":
                    if not opened:
                        raise ExpressionError("unmatched ')'", col, line_no)
                    opened.pop()
        if opened:
            line_no, col = opened[-1]
            raise ExpressionError("'(' is never closed", col, line_no)

    def _syntax_error(self, exc: SyntaxError) -> ExpressionError:
        line = exc.lineno or 1
        msg = exc.msg or "invalid syntax"
        if line > len(self.lines):  # the parser reached the closing parenthesis we added
            return ExpressionError(f"incomplete expression ({msg})", len(self.lines[-1]) + 1, len(self.lines))
        col = (exc.offset or 1) - (1 if line == 1 else 0)
        return ExpressionError(msg, max(col, 1), line)

    # --------------------------------------------------------------- nodes
    def expr(self, n) -> Node:
        pos = self.pos(n)
        if isinstance(n, ast.Constant):
            value = n.value
            if isinstance(value, bool):
                return Node("const", (), float(value), pos)
            if isinstance(value, (int, float)):
                return Node("const", (), float(value), pos)
            if isinstance(value, str):
                raise self.fail(n, "strings are not allowed")
            if value is None:
                raise self.fail(n, "None is only allowed inside [...] (to add an axis)")
            if value is Ellipsis:
                raise self.fail(n, "... is only allowed inside [...]")
            raise self.fail(n, f"the constant {value!r} is not allowed (only real numbers)")
        if isinstance(n, ast.Name):
            return self.name(n)
        if isinstance(n, ast.BinOp):
            op = _BINOPS.get(type(n.op))
            if op is None:
                raise self.fail(n, f"the operator '{_OP_SYMBOLS.get(type(n.op), '?')}' is not supported "
                                   "(use + - * / **)")
            return Node(op, (self.expr(n.left), self.expr(n.right)), None, pos)
        if isinstance(n, ast.UnaryOp):
            if isinstance(n.op, ast.USub):
                return Node("neg", (self.expr(n.operand),), None, pos)
            if isinstance(n.op, ast.UAdd):
                return self.expr(n.operand)
            if isinstance(n.op, ast.Not):
                return Node("not", (self.expr(n.operand),), None, pos)
            raise self.fail(n, "the operator '~' is not supported")
        if isinstance(n, ast.Compare):
            operands = [self.expr(n.left)] + [self.expr(c) for c in n.comparators]
            result = None
            for i, op in enumerate(n.ops):
                name = _CMPOPS.get(type(op))
                if name is None:
                    raise self.fail(n, f"the comparison '{_OP_SYMBOLS.get(type(op), '?')}' is not supported "
                                       "(use < <= > >= == !=)")
                cmp = Node(name, (operands[i], operands[i + 1]), None, pos)
                result = cmp if result is None else Node("and", (result, cmp), None, pos)
            return result
        if isinstance(n, ast.BoolOp):
            op = "and" if isinstance(n.op, ast.And) else "or"
            values = [self.expr(v) for v in n.values]
            result = values[0]
            for v in values[1:]:
                result = Node(op, (result, v), None, pos)
            return result
        if isinstance(n, ast.IfExp):
            return Node("where", (self.expr(n.test), self.expr(n.body), self.expr(n.orelse)), None, pos)
        if isinstance(n, ast.Call):
            return self.call(n)
        if isinstance(n, ast.Subscript):
            return self.subscript(n)
        if isinstance(n, ast.Attribute):
            raise self.attribute_error(n)
        if isinstance(n, (ast.List, ast.Tuple)):
            kind = "a list" if isinstance(n, ast.List) else "a tuple"
            raise self.fail(n, f"{kind} is only allowed as the first argument of concatenate([a, b], axis=-1) "
                               "or as the shape of reshape")
        for kind, message in _FORBIDDEN.items():
            if isinstance(n, kind):
                raise self.fail(n, message)
        raise self.fail(n, f"{type(n).__name__} is not allowed in an expression (allowed: numbers, names, "
                           "+ - * / **, comparisons, `a if c else b`, function calls, x[...] slicing)")

    def attribute_error(self, n: ast.Attribute) -> ExpressionError:
        # point at the dot
        line = getattr(n, "end_lineno", n.lineno) or n.lineno
        end = getattr(n, "end_col_offset", None)
        if end is not None and line == n.lineno:
            line, col = self._pos(line, end - len(n.attr.encode("utf-8")) - 1)
        else:
            line, col = self.pos(n)
        hint = f"; call {n.attr}(...) directly" if n.attr in FUNCTIONS else ""
        return ExpressionError(f"attribute access '.{n.attr}' is not allowed{hint}", col, line)

    def name(self, n: ast.Name) -> Node:
        name = n.id
        pos = self.pos(n)
        if name.startswith("__"):
            raise self.fail(n, f"'{name}' is not available (names starting with '__' are never allowed)")
        if self.input_names is not None and name in self.input_names \
                or self.input_names is None and _is_default_input(name):
            if name not in self.used:
                self.used.append(name)
            node = Node("input", (), name, pos)
            node.grad = True
            node.batched = self.batched
            return node
        if name in self.constants:
            value = self.constants[name]
            if isinstance(value, (list, tuple)):
                return Node("const", (), np.asarray(value, dtype=np.float64), pos)
            return Node("const", (), float(value), pos)
        if name in CONSTANTS:
            return Node("const", (), CONSTANTS[name], pos)
        if name in FUNCTIONS:
            raise self.fail(n, f"'{name}' is a function; call it as {name}(...)")
        known = self.known_names()
        near = did_you_mean(name, known)
        raise self.fail(n, f"unknown name '{name}'" + (f"; did you mean '{near}'?" if near else "")
                        + f" (available: {', '.join(known)})")

    def known_names(self) -> list[str]:
        inputs = self.input_names if self.input_names is not None else ["x", "x0", "x1"]
        return [*inputs, *self.constants, *CONSTANTS]

    # --------------------------------------------------------------- calls
    def call(self, n: ast.Call) -> Node:
        pos = self.pos(n)
        if isinstance(n.func, ast.Attribute):
            raise self.attribute_error(n.func)
        if not isinstance(n.func, ast.Name):
            self.expr(n.func)  # a more precise error for lambdas, subscripts, ...
            raise self.fail(n.func, "only the built-in functions can be called (e.g. exp(x))")
        fname = n.func.id
        if fname.startswith("__"):
            raise self.fail(n.func, f"'{fname}' is not available (names starting with '__' are never allowed)")
        spec = FUNCTIONS.get(fname)
        if spec is None:
            near = did_you_mean(fname, list(FUNCTIONS))
            raise self.fail(n.func, f"unknown function '{fname}'" + (f"; did you mean '{near}'?" if near else
                                                                    f" (known: {', '.join(sorted(FUNCTIONS))})"))
        for a in n.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "* unpacking is not allowed")
        kwargs: dict[str, ast.keyword] = {}
        for kw in n.keywords:
            if kw.arg is None:
                raise self.fail(kw, "** unpacking is not allowed")
            if kw.arg not in spec.keywords:
                if not spec.keywords:
                    raise self.fail(kw, f"{fname}() takes no keyword arguments (got '{kw.arg}=')")
                near = did_you_mean(kw.arg, list(spec.keywords))
                raise self.fail(kw, f"{fname}() has no argument '{kw.arg}'"
                                + (f"; did you mean '{near}'?" if near else "")
                                + f" (it takes: {', '.join(spec.keywords)})")
            kwargs[kw.arg] = kw
        nargs = len(n.args)
        if not spec.min_args <= nargs <= spec.max_args:
            want = str(spec.min_args) if spec.min_args == spec.max_args else f"{spec.min_args} or {spec.max_args}"
            raise self.fail(n, f"{fname}() takes {want} positional argument{'s' if want != '1' else ''}, "
                               f"got {nargs}" + (f"; keywords: {', '.join(k + '=' for k in spec.keywords)}"
                                                 if spec.keywords and nargs > spec.max_args else ""))
        if fname == "concatenate":
            return self.concatenate(n, kwargs, pos)
        if fname == "reshape":
            shape = self.static_ints(n.args[1], "the target shape", allow_tuple=True, tuple_only=True)
            return self.reshape(n, self.expr(n.args[0]), shape, pos)
        args = [self.expr(a) for a in n.args]
        if fname in ("max", "min") and nargs == 2:
            if kwargs:
                raise self.fail(n, f"{fname}(a, b) is the elementwise {fname}imum and takes no keywords; "
                                   f"{fname}(x, axis=...) reduces one value")
            fname = fname + "imum"
        if fname in ("maximum", "minimum", "pow", "where"):
            return Node(fname, args, None, pos)
        if fname == "clip":
            x, lo, hi = args
            return Node("minimum", (Node("maximum", (x, lo), None, pos), hi), None, pos)
        if fname in _UNARY_DOCS:
            return Node(fname, args, None, pos)
        opts = {k: v for k, v in spec.keywords.items()}
        if "axis" in kwargs:
            opts["axis"] = self.static_ints(kwargs["axis"].value, "axis", allow_tuple=fname in
                                            ("sum", "mean", "max", "min"), allow_none=fname in
                                            ("sum", "mean", "max", "min"))
        if "keepdims" in kwargs:
            v = kwargs["keepdims"].value
            if not (isinstance(v, ast.Constant) and isinstance(v.value, bool)):
                raise self.fail(v, "keepdims must be True or False")
            opts["keepdims"] = v.value
        if "epsilon" in kwargs:
            opts["epsilon"] = self.static_number(kwargs["epsilon"].value, "epsilon")
        x = args[0]
        where = kwargs["axis"].value if "axis" in kwargs else n
        self.check_axis_literal(x, opts["axis"], fname, where)
        if fname == "l2_normalize":
            # x / sqrt(maximum(sum(x*x, axis, keepdims=True), epsilon))
            s = Node("sum", (Node("square", (x,), None, pos),), (opts["axis"], True), pos)
            eps = Node("const", (), float(opts["epsilon"]), pos)
            return Node("div", (x, Node("sqrt", (Node("maximum", (s, eps), None, pos),), None, pos)), None, pos)
        if fname == "softmax":
            return Node("softmax", (x,), opts["axis"], pos)
        return Node(fname, (x,), (opts["axis"], opts["keepdims"]), pos)

    def check_axis_literal(self, x: Node, axis, fname: str, where) -> None:
        """Reject axis 0 on a batched value early (negative axes are checked with the shapes)."""
        axes = axis if isinstance(axis, tuple) else (axis,)
        if self.batched and 0 in axes and _depends_on_input(x):
            raise self.fail(where, f"{fname}() over axis 0 would mix the samples of a batch: axes count the "
                                   "batch axis, so the first feature axis is 1 (use -1 for the last)")

    def concatenate(self, n: ast.Call, kwargs, pos) -> Node:
        first = n.args[0]
        if not isinstance(first, (ast.List, ast.Tuple)):
            raise self.fail(first, "concatenate takes a list: concatenate([a, b], axis=-1)")
        if len(first.elts) < 1:
            raise self.fail(first, "concatenate needs at least one value")
        parts = [self.expr(e) for e in first.elts]
        axis = -1
        if "axis" in kwargs:
            axis = self.static_ints(kwargs["axis"].value, "axis")
        if self.batched and axis == 0:
            raise self.fail(kwargs["axis"].value, "concatenate() along axis 0 would join batches: axes count "
                                                  "the batch axis, so the first feature axis is 1")
        return Node("concat", parts, axis, pos)

    def reshape(self, n, x: Node, shape: tuple, pos) -> Node:
        if sum(1 for d in shape if d == -1) > 1:
            raise self.fail(n.args[1], "reshape allows at most one -1")
        if any(d == 0 or d < -1 for d in shape):
            raise self.fail(n.args[1], f"reshape sizes must be positive (or one -1), got {shape}")
        return Node("reshape", (x,), shape, pos)

    # --------------------------------------------------------------- static arguments
    def static_int(self, n) -> int | None:
        if isinstance(n, ast.Constant) and isinstance(n.value, int) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            v = self.static_int(n.operand)
            return None if v is None else (-v if isinstance(n.op, ast.USub) else v)
        if isinstance(n, ast.Name) and n.id in self.constants:
            v = self.constants[n.id]
            if isinstance(v, int) and not isinstance(v, bool):
                return v
            if isinstance(v, float) and v.is_integer():
                return int(v)
        return None

    def static_ints(self, n, what: str, *, allow_tuple: bool = False, allow_none: bool = False,
                    tuple_only: bool = False):
        if allow_none and isinstance(n, ast.Constant) and n.value is None:
            return None
        if (allow_tuple or tuple_only) and isinstance(n, (ast.Tuple, ast.List)):
            values = []
            for e in n.elts:
                v = self.static_int(e)
                if v is None:
                    raise self.fail(e, f"{what} must be integer literals")
                values.append(v)
            if not tuple_only and len(set(values)) != len(values):
                raise self.fail(n, f"{what} repeats an axis: {tuple(values)}")
            return tuple(values)
        if not tuple_only:
            v = self.static_int(n)
            if v is not None:
                return v
        if tuple_only:
            v = self.static_int(n)
            if v is not None:
                return (v,)
        raise self.fail(n, f"{what} must be an integer literal" + (" or a tuple of them" if allow_tuple else "")
                        + (" (or None)" if allow_none else ""))

    def static_number(self, n, what: str) -> float:
        v = self.static_int(n)
        if v is not None:
            return float(v)
        if isinstance(n, ast.Constant) and isinstance(n.value, float):
            return n.value
        if isinstance(n, ast.Name) and isinstance(self.constants.get(n.id), (int, float)):
            return float(self.constants[n.id])
        raise self.fail(n, f"{what} must be a number literal")

    # --------------------------------------------------------------- slicing
    def subscript(self, n: ast.Subscript) -> Node:
        value = self.expr(n.value)
        sl = n.slice
        items = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        index: list = []
        for item in items:
            if isinstance(item, ast.Slice):
                parts = []
                for p in (item.lower, item.upper, item.step):
                    if p is None or isinstance(p, ast.Constant) and p.value is None:
                        parts.append(None)
                        continue
                    v = self.static_int(p)
                    if v is None:
                        raise self.fail(p, "slice bounds must be integer literals, e.g. x[:, 1:3] or x[:, ::-1]")
                    parts.append(v)
                if parts[2] == 0:
                    raise self.fail(item, "slice step cannot be zero")
                index.append(slice(*parts))
            elif isinstance(item, ast.Constant) and item.value is Ellipsis:
                if any(i is Ellipsis for i in index):
                    raise self.fail(item, "an index can only have one ...")
                index.append(Ellipsis)
            elif isinstance(item, ast.Constant) and item.value is None:
                index.append(None)
            else:
                v = self.static_int(item)
                if v is None:
                    raise self.fail(item, "indices must be integer literals, slices (1:3, ::-1), ... or None; "
                                          "indexing with arrays is not supported")
                index.append(v)
        if self.batched and _depends_on_input(value):
            for item, where in zip(index, items, strict=True):
                if item is Ellipsis:
                    break
                if item is None:
                    raise self.fail(where, "cannot insert an axis before the batch axis; start the index with ':' "
                                           "(x[:, None])")
                if isinstance(item, slice) and item.start is None and item.stop is None and item.step in (None, 1):
                    break
                raise self.fail(where, "the first index applies to the batch axis; keep every sample with ':' "
                                       "(e.g. x[:, 0] or x[..., 0])")
        return Node("getitem", (value,), tuple(index), self.pos(items[0]))


def _depends_on_input(node: Node) -> bool:
    if node.op == "input":
        return True
    return any(_depends_on_input(a) for a in node.args)


def _order(root: Node) -> list[Node]:
    """Post-order over the (possibly shared) nodes; sets idx, grad and batched."""
    order: list[Node] = []
    seen: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            if id(node) in seen:
                continue
            seen.add(id(node))
            node.idx = len(order)
            order.append(node)
            if node.op != "input":
                node.batched = any(a.batched for a in node.args)
                node.grad = node.op not in _NO_GRAD and node.op != "const" and any(a.grad for a in node.args)
            continue
        if id(node) in seen:
            continue
        stack.append((node, True))
        for a in reversed(node.args):
            if id(a) not in seen:
                stack.append((a, False))
    return order


# ====================================================================== shapes

def _show(shape: tuple, batched: bool) -> str:
    dims = ["None" if d is None else str(d) for d in shape]
    if batched and dims:
        dims[0] = "batch"
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _broadcast(node: Node, shapes: list[tuple], batched: list[bool]) -> tuple:
    rank = max(len(s) for s in shapes)
    for s, b in zip(shapes, batched, strict=True):
        if b and len(s) != rank:
            shown = " and ".join(_show(t, c) for t, c in zip(shapes, batched, strict=True))
            raise node.error(f"cannot combine values of shapes {shown}: the batch axes would not line up "
                             "(keepdims=True on a reduction, or x[:, None], keeps them aligned)")
    if any(batched):
        for s, b in zip(shapes, batched, strict=True):
            if not b and len(s) == rank and s[0] != 1:
                shown = " and ".join(_show(t, c) for t, c in zip(shapes, batched, strict=True))
                raise node.error(f"cannot combine values of shapes {shown}: the constant would broadcast over the "
                                 "batch axis (give it one axis less, or size 1 first)")
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            shown = " and ".join(_show(t, c) for t, c in zip(shapes, batched, strict=True))
            raise node.error(f"shapes {shown} do not broadcast (axis {i}: sizes {sorted(known)})")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def _norm_axis(node: Node, axis: int, rank: int, batched: bool, fname: str) -> int:
    if not -rank <= axis < rank:
        raise node.error(f"{fname}(): axis {axis} is out of range for a value with {rank} ax"
                         f"{'is' if rank == 1 else 'es'}" + (" (counting the batch axis)" if batched else ""))
    a = axis % rank
    if batched and a == 0:
        raise node.error(f"{fname}() over axis {axis} would mix the samples of a batch (axis {axis} is the batch "
                         "axis here); axes count the batch axis: use -1 for the last, 1 for the first feature axis")
    return a


def _slice_len(d: int | None, s: slice) -> int | None:
    return None if d is None else len(range(*s.indices(d)))


def _shape_of(node: Node, args: list[tuple]) -> tuple:
    op = node.op
    bs = [a.batched for a in node.args]
    if op in ("neg", *_UNARY_DOCS):
        return args[0]
    if op in ("add", "sub", "mul", "div", "pow", "lt", "le", "gt", "ge", "eq", "ne", "and", "or",
              "maximum", "minimum", "where"):
        return _broadcast(node, args, bs)
    if op == "not":
        return args[0]
    if op in ("sum", "mean", "max", "min"):
        (shape,), (axis, keepdims) = args, node.static
        rank = len(shape)
        if axis is None:
            if bs[0]:
                raise node.error(f"{op}() without axis= would reduce over the batch axis too; give axis=-1 "
                                 "(or a tuple of feature axes, e.g. axis=(1, 2))")
            axes = tuple(range(rank))
        else:
            axes = tuple(_norm_axis(node, a, rank, bs[0], op) for a in (axis if isinstance(axis, tuple) else (axis,)))
            if len(set(axes)) != len(axes):
                raise node.error(f"{op}(): axis {axis} names the same axis twice")
        if keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(shape))
        return tuple(d for i, d in enumerate(shape) if i not in axes)
    if op == "softmax":
        _norm_axis(node, node.static, len(args[0]), bs[0], "softmax")
        return args[0]
    if op == "concat":
        if len(set(bs)) > 1:
            raise node.error("concatenate() cannot join a constant with a batched value "
                             "(a constant has no batch axis)")
        ranks = {len(s) for s in args}
        if len(ranks) > 1:
            raise node.error("concatenate() needs values with the same number of axes, got "
                             + ", ".join(_show(s, b) for s, b in zip(args, bs, strict=True)))
        rank = ranks.pop()
        axis = _norm_axis(node, node.static, rank, bs[0], "concatenate")
        out = list(args[0])
        for s in args[1:]:
            for i in range(rank):
                if i == axis:
                    continue
                if out[i] is not None and s[i] is not None and out[i] != s[i]:
                    raise node.error("concatenate() needs equal sizes except on the joined axis, got "
                                     + ", ".join(_show(t, b) for t, b in zip(args, bs, strict=True)))
                if out[i] is None:
                    out[i] = s[i]
        sizes = [s[axis] for s in args]
        out[axis] = None if any(d is None for d in sizes) else sum(sizes)
        return tuple(out)
    if op == "reshape":
        shape = args[0]
        target = node.static
        feature = shape[1:] if bs[0] else shape
        lead = (shape[0],) if bs[0] else ()
        if any(d is None for d in feature):
            if -1 not in target:
                return lead + target
            return lead + tuple(None if d == -1 else d for d in target)
        size = math.prod(feature)
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if size % known:
                raise node.error(f"cannot reshape {_show(shape, bs[0])} ({size} values per sample) to "
                                 f"{target}: {size} is not a multiple of {known}")
            return lead + tuple(size // known if d == -1 else d for d in target)
        if known != size:
            raise node.error(f"cannot reshape {_show(shape, bs[0])} ({size} values"
                             f"{' per sample' if bs[0] else ''}) to {target} ({known} values)")
        return lead + target
    if op == "getitem":
        shape = args[0]
        index = node.static
        consuming = sum(1 for i in index if i is not None and i is not Ellipsis)
        if consuming > len(shape):
            raise node.error(f"too many indices ({consuming}) for a value of shape {_show(shape, bs[0])}")
        expanded: list = []
        for item in index:
            if item is Ellipsis:
                expanded.extend([slice(None)] * (len(shape) - consuming))
            else:
                expanded.append(item)
        if Ellipsis not in index:
            expanded.extend([slice(None)] * (len(shape) - consuming))
        out: list = []
        axis = 0
        for item in expanded:
            if item is None:
                if bs[0] and axis == 0:
                    raise node.error("cannot insert an axis before the batch axis")
                out.append(1)
                continue
            d = shape[axis]
            if bs[0] and axis == 0 and not (isinstance(item, slice) and item == slice(None)
                                            or item == slice(None, None, 1)):
                raise node.error("this index applies to the batch axis (nothing is left for ... to cover); "
                                 "keep every sample with ':'")
            if isinstance(item, slice):
                out.append(_slice_len(d, item))
            else:
                if d is not None and not -d <= item < d:
                    raise node.error(f"index {item} is out of range for axis {axis} of size {d} "
                                     f"(shape {_show(shape, bs[0])})")
            axis += 1
        return tuple(out)
    raise node.error(f"internal: no shape rule for {op}")  # pragma: no cover


# ====================================================================== evaluation

def _sigmoid(a):
    return 0.5 * (np.tanh(0.5 * a) + 1.0)


def _reduce_axes(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim for a in axes)


_UNARY_FWD = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": lambda a: np.maximum(a, 0), "softplus": lambda a: np.logaddexp(0, a), "sin": np.sin, "cos": np.cos,
    "sqrt": np.sqrt, "abs": np.abs, "square": np.square, "sign": np.sign,
}
_UNARY_BWD = {
    "exp": lambda a, y, g: g * y,
    "log": lambda a, y, g: g / a,
    "log1p": lambda a, y, g: g / (1 + a),
    "expm1": lambda a, y, g: g * (y + 1),
    "tanh": lambda a, y, g: g * (1 - y * y),
    "sigmoid": lambda a, y, g: g * y * (1 - y),
    "relu": lambda a, y, g: g * (a > 0),
    "softplus": lambda a, y, g: g * _sigmoid(a),
    "sin": lambda a, y, g: g * np.cos(a),
    "cos": lambda a, y, g: -g * np.sin(a),
    "sqrt": lambda a, y, g: g * 0.5 / y,
    "abs": lambda a, y, g: g * np.sign(a),
    "square": lambda a, y, g: g * a * 2,
    "sign": lambda a, y, g: None,
}
_CMP_FWD = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
            "ne": np.not_equal}


def _forward_op(node: Node, vals: list, dtype):
    op = node.op
    if op in _UNARY_FWD:
        return _UNARY_FWD[op](vals[0])
    if op == "neg":
        return -vals[0]
    if op == "add":
        return vals[0] + vals[1]
    if op == "sub":
        return vals[0] - vals[1]
    if op == "mul":
        return vals[0] * vals[1]
    if op == "div":
        return vals[0] / vals[1]
    if op == "pow":
        return np.power(vals[0], vals[1])
    if op in _CMP_FWD:
        return _CMP_FWD[op](vals[0], vals[1]).astype(dtype)
    if op == "and":
        return np.logical_and(vals[0] != 0, vals[1] != 0).astype(dtype)
    if op == "or":
        return np.logical_or(vals[0] != 0, vals[1] != 0).astype(dtype)
    if op == "not":
        return (vals[0] == 0).astype(dtype)
    if op == "where":
        return np.where(vals[0] != 0, vals[1], vals[2])
    if op == "maximum":
        return np.maximum(vals[0], vals[1])
    if op == "minimum":
        return np.minimum(vals[0], vals[1])
    if op in ("sum", "mean", "max", "min"):
        axis, keepdims = node.static
        a = np.asarray(vals[0])
        axes = _reduce_axes(axis, a.ndim)
        fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[op]
        return fn(a, axis=axes, keepdims=keepdims)
    if op == "softmax":
        a = vals[0]
        z = np.exp(a - np.max(a, axis=node.static, keepdims=True))
        return z / np.sum(z, axis=node.static, keepdims=True)
    if op == "concat":
        return np.concatenate([np.asarray(v) for v in vals], axis=node.static)
    if op == "reshape":
        a = np.asarray(vals[0])
        return a.reshape(((a.shape[0],) if node.args[0].batched else ()) + node.static)
    if op == "getitem":
        return np.asarray(vals[0])[node.static]
    raise RuntimeError(f"internal: no forward rule for {op}")  # pragma: no cover


def _backward_op(node: Node, vals: list, y, g) -> list:
    """Gradients for each argument of ``node`` (None where none flows), before un-broadcasting."""
    op = node.op
    if op in _UNARY_BWD:
        return [_UNARY_BWD[op](vals[0], y, g)]
    if op == "neg":
        return [-g]
    if op == "add":
        return [g, g]
    if op == "sub":
        return [g, -g]
    if op == "mul":
        return [g * vals[1], g * vals[0]]
    if op == "div":
        return [g / vals[1], -g * y / vals[1]]
    if op == "pow":
        a, b = vals
        ga = g * b * np.power(a, b - 1) if node.args[0].grad else None
        gb = None
        if node.args[1].grad:
            positive = a > 0
            gb = g * y * np.log(np.where(positive, a, 1)) * positive
        return [ga, gb]
    if op == "where":
        cond = vals[0] != 0
        zero = np.zeros((), dtype=np.asarray(g).dtype)
        return [None, np.where(cond, g, zero), np.where(cond, zero, g)]
    if op in ("maximum", "minimum"):
        pick_a = vals[0] >= vals[1] if op == "maximum" else vals[0] <= vals[1]
        return [g * pick_a, g * ~pick_a]
    if op in ("sum", "mean", "max", "min"):
        axis, keepdims = node.static
        a = np.asarray(vals[0])
        axes = _reduce_axes(axis, a.ndim)
        gk = np.asarray(g) if keepdims else np.expand_dims(g, axes)
        if op == "sum":
            return [np.broadcast_to(gk, a.shape)]
        if op == "mean":
            count = math.prod(a.shape[i] for i in axes)
            return [np.broadcast_to(gk / count, a.shape)]
        yk = np.asarray(y) if keepdims else np.expand_dims(y, axes)
        hit = a == yk
        return [gk * hit / np.sum(hit, axis=axes, keepdims=True)]
    if op == "softmax":
        return [y * (g - np.sum(g * y, axis=node.static, keepdims=True))]
    if op == "concat":
        sizes = [np.shape(v)[node.static] for v in vals]
        cuts = np.cumsum(sizes)[:-1]
        return list(np.split(g, cuts, axis=node.static))
    if op == "reshape":
        return [np.reshape(g, np.shape(vals[0]))]
    if op == "getitem":
        a = np.asarray(vals[0])
        out = np.zeros(a.shape, dtype=np.asarray(g).dtype)
        out[node.static] = g
        return [out]
    return [None] * len(vals)  # comparisons, logic, sign: no gradient


def _unbroadcast(g, shape: tuple):
    g = np.asarray(g)
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    elif extra < 0:
        return np.broadcast_to(g, shape)
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if g.shape != tuple(shape):
        g = np.broadcast_to(g, shape)
    return g


@dataclass
class Tape:
    """The values recorded by a forward pass (one per node, in evaluation order)."""

    values: list
    dtype: Any


class Expression:
    """A compiled expression: shape inference, forward with a tape, reverse-mode backward."""

    def __init__(self, text: str, input_names=None, constants: dict | None = None, *, batched: bool = True):
        self.text = text
        self.constants = dict(constants or {})
        self.batched = batched
        compiler = _Compiler(text, input_names, self.constants, batched)
        self.root = compiler.compile()
        self.order = _order(self.root)
        self.used_inputs: list[str] = compiler.used  # in order of first use

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    # ------------------------------------------------------------------ shapes
    def node_shapes(self, input_shapes: dict[str, tuple]) -> list[tuple]:
        """The shape of every node (batched ones start with the batch size, None); raise ExpressionError."""
        shapes: list[tuple] = []
        for node in self.order:
            if node.op == "input":
                shape = tuple(input_shapes[node.static])
                shapes.append(((None,) + shape) if self.batched else shape)
            elif node.op == "const":
                shapes.append(tuple(np.shape(node.static)))
            else:
                shapes.append(_shape_of(node, [shapes[a.idx] for a in node.args]))
        return shapes

    def output_shape(self, input_shapes: dict[str, tuple]) -> tuple:
        """Output shape (batch axis excluded when batched) for the inputs' shapes (batch axis excluded)."""
        shape = self.node_shapes(input_shapes)[-1]
        if not self.batched:
            return shape
        if not self.root.batched:
            raise ExpressionError("the expression does not use any input, so its value has no batch axis "
                                  "(use e.g. `x * 0 + 1` for a constant per sample)", 1)
        return shape[1:]

    def flops(self, input_shapes: dict[str, tuple]) -> int:
        """Elementwise operations per sample (a rough count: one per output element of each primitive)."""
        total = 0
        for node, shape in zip(self.order, self.node_shapes(input_shapes), strict=True):
            if node.op in ("input", "const", "getitem", "reshape") or not node.batched:
                continue
            total += math.prod(d or 1 for d in shape[1:])
        return total

    # ------------------------------------------------------------------ maths
    def forward(self, inputs: dict[str, Any], dtype=None) -> tuple[Any, Tape]:
        """Evaluate; ``inputs`` maps every used input name to an array. Returns ``(y, tape)``."""
        if dtype is None:
            floats = [np.asarray(v).dtype for v in inputs.values()
                      if np.issubdtype(np.asarray(v).dtype, np.floating)]
            dtype = np.result_type(*floats) if floats else np.dtype(np.float32 if self.batched else np.float64)
        values: list = [None] * len(self.order)
        for node in self.order:
            if node.op == "input":
                v = np.asarray(inputs[node.static])
                values[node.idx] = v if v.dtype == dtype else v.astype(dtype)
            elif node.op == "const":
                values[node.idx] = np.asarray(node.static, dtype=dtype)
            else:
                values[node.idx] = _forward_op(node, [values[a.idx] for a in node.args], dtype)
        y = np.asarray(values[-1])
        if y.dtype != dtype:
            y = y.astype(dtype)
        return y, Tape(values, dtype)

    def backward(self, tape: Tape, dy) -> dict[str, Any]:
        """Gradient of ``sum(y * dy)`` for each used input name (zeros when no gradient reaches it)."""
        values = tape.values
        grads: list = [None] * len(self.order)
        grads[-1] = np.asarray(dy, dtype=tape.dtype)
        out: dict[str, Any] = {}
        for node in reversed(self.order):
            g = grads[node.idx]
            if node.op == "input":
                if g is not None:
                    g = _unbroadcast(g, values[node.idx].shape)
                    out[node.static] = g if node.static not in out else out[node.static] + g
                continue
            if g is None or not node.grad:
                continue
            parts = _backward_op(node, [values[a.idx] for a in node.args], values[node.idx], g)
            for a, ga in zip(node.args, parts, strict=True):
                if ga is None or not a.grad:
                    continue
                ga = _unbroadcast(ga, np.shape(values[a.idx]))
                grads[a.idx] = ga if grads[a.idx] is None else grads[a.idx] + ga
            grads[node.idx] = None  # free memory as we go
        for name in self.used_inputs:
            if name not in out:
                out[name] = np.zeros_like(values[self._input_node(name).idx])
            elif out[name].dtype != tape.dtype or not out[name].flags.writeable:
                out[name] = np.array(out[name], dtype=tape.dtype)
        return out

    def _input_node(self, name: str) -> Node:
        return next(n for n in self.order if n.op == "input" and n.static == name)


# ====================================================================== public helpers

def compile_expression(text: str, input_names=None, constants: dict | None = None, *,
                       batched: bool = True) -> Expression:
    """Parse and check ``text``; raise :class:`ExpressionError` (a ValueError with the column).

    ``input_names=None`` accepts the default names ``x`` and ``x0``, ``x1``, ...
    """
    return Expression(text, input_names, constants, batched=batched)


def check_constant_names(constants: dict, reserved=()) -> None:
    """Validate the names and values of named constants (Lambda ``arguments:``)."""
    for name, value in constants.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"argument name {name!r} is not a valid name (letters, digits, _)")
        if name.startswith("__"):
            raise ValueError(f"argument name {name!r} is not allowed (names starting with '__')")
        if name in FUNCTIONS or name in CONSTANTS or name in reserved:
            what = "a function" if name in FUNCTIONS else "a built-in constant" if name in CONSTANTS else "an input"
            raise ValueError(f"argument name {name!r} is already {what}; pick another name")
        if isinstance(value, bool) or isinstance(value, (int, float)):
            continue
        if isinstance(value, (list, tuple)):
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                arr = None
            if arr is not None and arr.ndim >= 1:
                continue
        raise ValueError(f"argument {name!r} must be a number or a (nested) list of numbers, not {value!r}")


@lru_cache(maxsize=64)
def _scalar_expression(text: str, names: tuple) -> Expression:
    expr = Expression(text, names, None, batched=False)
    return expr


def check_scalar_expression(text: str, names) -> None:
    """Validate a scalar expression over ``names`` (e.g. for a config field); raise ExpressionError."""
    expr = _scalar_expression(text, tuple(names))
    shape = expr.output_shape({n: () for n in expr.used_inputs})
    if shape != ():
        raise ExpressionError(f"the expression gives a value of shape {shape}, not a single number", 1)


def evaluate_scalar(text: str, variables: dict) -> float:
    """Evaluate a scalar expression such as ``"lr * 0.5 if epoch >= 10 else lr"``.

    Same safe language as the Lambda layer; every variable is a number. Raises
    :class:`ExpressionError` (a ValueError with the column) for a bad expression."""
    names = tuple(sorted(variables))
    for name in names:
        value = variables[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"variable {name!r} must be a number, not {value!r}")
    expr = _scalar_expression(text, names)
    check_scalar_expression(text, names)
    with np.errstate(all="ignore"):
        y, _ = expr.forward({n: np.float64(variables[n]) for n in expr.used_inputs}, dtype=np.dtype(np.float64))
    return float(y)


__all__ = ["Expression", "ExpressionError", "FUNCTIONS", "CONSTANTS", "compile_expression", "evaluate_scalar",
           "check_scalar_expression", "check_constant_names"]
