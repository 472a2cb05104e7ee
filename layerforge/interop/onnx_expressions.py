"""A Lambda layer's safe expression (layerforge.expressions) as ONNX operators, one primitive at a time."""

from __future__ import annotations

import numpy as np

_UNARY = {"exp": "Exp", "log": "Log", "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "softplus": "Softplus",
          "sin": "Sin", "cos": "Cos", "sqrt": "Sqrt", "abs": "Abs", "sign": "Sign", "neg": "Neg"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max",
           "minimum": "Min"}
_CMP = {"lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal"}
_REDUCE = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin"}
BIG = np.iinfo(np.int64).max
SMALL = np.iinfo(np.int64).min


def expression_to_onnx(b, expr, inputs: dict, input_shapes: dict) -> str:
    """ONNX name of the expression's value; ``inputs`` maps the expression's input names to ONNX names."""
    shapes = expr.node_shapes(input_shapes)
    vals: list = [None] * len(expr.order)
    for node in expr.order:
        args = [vals[a.idx] for a in node.args]
        op = node.op
        if op == "input":
            v = inputs[node.static]
        elif op == "const":
            v = b.const(np.asarray(node.static, np.float32), hint="expr_const")
        elif op in _UNARY:
            v = b.op(_UNARY[op], args)
        elif op == "square":
            v = b.op("Mul", [args[0], args[0]])
        elif op == "log1p":
            v = b.op("Log", [b.op("Add", [args[0], b.scalar(1.0)])])
        elif op == "expm1":
            v = b.op("Sub", [b.op("Exp", args), b.scalar(1.0)])
        elif op in _BINARY:
            v = b.op(_BINARY[op], args)
        elif op in _CMP:
            v = b.op("Cast", [b.op(_CMP[op], args)], to=1)
        elif op == "ne":
            v = b.op("Cast", [b.op("Not", [b.op("Equal", args)])], to=1)
        elif op in ("and", "or"):
            bools = [_truth(b, a) for a in args]
            v = b.op("Cast", [b.op("And" if op == "and" else "Or", bools)], to=1)
        elif op == "not":
            v = b.op("Cast", [b.op("Not", [_truth(b, args[0])])], to=1)
        elif op == "where":
            v = b.op("Where", [_truth(b, args[0]), args[1], args[2]])
        elif op in _REDUCE:
            axis, keepdims = node.static
            ndim = len(shapes[node.args[0].idx])
            axes = list(range(ndim)) if axis is None else [a % ndim for a in
                                                         (axis if isinstance(axis, tuple) else (axis,))]
            v = b.reduce(_REDUCE[op], args[0], axes, keepdims=bool(keepdims))
        elif op == "softmax":
            ndim = len(shapes[node.args[0].idx])
            axis = node.static % ndim
            m = b.reduce("ReduceMax", args[0], [axis], keepdims=True)
            e = b.op("Exp", [b.op("Sub", [args[0], m])])
            v = b.op("Div", [e, b.reduce("ReduceSum", e, [axis], keepdims=True)])
        elif op == "concat":
            v = b.op("Concat", args, axis=int(node.static))
        elif op == "reshape":
            v = b.reshape(args[0], ([0] if node.args[0].batched else []) + list(node.static))
        elif op == "getitem":
            v = _getitem(b, args[0], node.static, len(shapes[node.args[0].idx]))
        else:
            raise b.fail(f"its expression uses '{op}', which has no ONNX mapping here")
        vals[node.idx] = v
    return vals[-1]


def _truth(b, x: str) -> str:
    return b.op("Not", [b.op("Equal", [x, b.scalar(0.0)])])


def _getitem(b, x: str, index, ndim: int) -> str:
    items = list(index) if isinstance(index, tuple) else [index]
    if any(i is Ellipsis for i in items):
        k = items.index(Ellipsis)
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        items = items[:k] + [slice(None)] * (ndim - used) + items[k + 1:]
    axis = 0  # axis of the current tensor the next item applies to
    for item in items:
        if item is None:
            x = b.unsqueeze(x, [axis])
            axis += 1
        elif isinstance(item, slice):
            if item != slice(None):
                step = 1 if item.step is None else int(item.step)
                start = item.start if item.start is not None else (0 if step > 0 else -1)
                stop = item.stop if item.stop is not None else (BIG if step > 0 else SMALL)
                x = b.slice(x, [int(start)], [int(stop)], [axis], [step])
            axis += 1
        else:
            x = b.op("Gather", [x, b.const(np.int64(int(item)), np.int64)], axis=axis)
    return x
