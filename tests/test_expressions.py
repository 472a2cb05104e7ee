"""The safe expression language: parsing/whitelist, shapes, values and reverse-mode gradients."""

import re

import numpy as np
import pytest

from layerforge.expressions import (
    FUNCTIONS,
    ExpressionError,
    check_scalar_expression,
    compile_expression,
    evaluate_scalar,
)

# ---------------------------------------------------------------------- gradients

W = [0.5, -1.0, 2.0]
# (expression, {input: (shape without batch, positive?)})
XY = {"x": ((3,), False), "y": ((3,), False)}
XYPOS = {"x": ((3,), True), "y": ((3,), True)}
Z = {"z": ((2, 3), False)}
GRAD_CASES = [
    ("x * 2 + tanh(x)", XY),
    ("exp(x)", XY), ("log(x)", XYPOS), ("log1p(x)", XYPOS), ("expm1(x)", XY), ("tanh(x)", XY),
    ("sigmoid(x)", XY), ("relu(x) * y", XY), ("softplus(x)", XY), ("sin(x)", XY), ("cos(x)", XY),
    ("sqrt(x)", XYPOS), ("abs(x) * y", XY), ("square(x)", XY), ("sign(x) * x + sign(y)", XY),
    ("pow(x, 3) + x ** 2", XY), ("x ** y", XYPOS), ("pow(x, y) * y", XYPOS), ("2 ** x", XY),
    ("clip(x, -0.5, 0.5) + clip(y, x, 1.5)", XY), ("maximum(x, y) - minimum(x, 0.1 * y)", XY),
    ("max(x, y) * min(x, y)", XY),
    ("where(x > y, x * y, x - y)", XY), ("x * y if x > 0 else y / (1 + x * x)", XY),
    ("x / y - y / (x * x + 1)", XYPOS), ("-x + +y - 3", XY),
    ("x * (x > 0.3) + (y <= x) * y + (x >= y) * x + (x < y) * 2 + (x == x) * y + (x != y) * x", XY),
    ("x * (x > 0 and y > 0) + y * (not x > 0) + (x > 1 or y < 0) * y + (-1 < x < 1) * x", XY),
    ("sum(x * y, axis=-1)", XY), ("sum(x, axis=1, keepdims=True) * y", XY),
    ("mean(x, axis=-1, keepdims=True) * y + mean(z, axis=(1, 2))[:, None]", {**XY, **Z}),
    ("max(x * y, axis=-1) + min(z, axis=1)[:, 0]", {**XY, **Z}), ("sum(z * z, axis=(1, 2))", Z),
    ("max(z, axis=(-2, -1), keepdims=True) * z", Z),
    ("softmax(x, axis=-1) * y", XY), ("softmax(z, axis=1) * z", Z), ("softmax(z) * z", Z),
    ("l2_normalize(x) * y", XY), ("l2_normalize(z, axis=1) * z", Z),
    ("l2_normalize(x, axis=-1, epsilon=0.001) * y", XY),
    ("concatenate([x, y * 2], axis=-1) * concatenate([y, x], axis=1)", XY),
    ("concatenate([z, z * z], axis=1)", Z), ("concatenate([x], axis=-1) * y", XY),
    ("reshape(z, (6,)) * concatenate([x, y])", {**XY, **Z}), ("reshape(z, (3, -1)) * 2", Z),
    ("x[:, ::-1] * y", XY), ("z[:, 1, 0:2] * z[:, 0, ::2]", Z), ("z[..., 1:3] * z[:, :, :-1]", Z),
    ("x[:, None] * z + z[:, :, None, 0]", {**XY, **Z}), ("z[:, -1] + x", {**XY, **Z}),
    ("x * pi + e * y", XY), ("x * w + sum(w * y, axis=-1, keepdims=True)", XY),
    ("x * x * x + x - tanh(x * y) * x", XY),
    ("log(x + 1) if x > 0.5 else sqrt(x)", XYPOS),
]


def _inputs(spec, rng, batch=2):
    out = {}
    for name, (shape, positive) in spec.items():
        v = rng.standard_normal((batch,) + shape)
        out[name] = np.abs(v) + 0.3 if positive else v
    return out


def _numeric(expr, inputs, dy, name, eps=1e-6):
    x = inputs[name]
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        plus = np.sum(expr.forward(inputs)[0] * dy)
        x[i] = old - eps
        minus = np.sum(expr.forward(inputs)[0] * dy)
        x[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return g


@pytest.mark.parametrize("text,spec", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradient_matches_finite_differences(text, spec):
    rng = np.random.default_rng(abs(hash(text)) % 2**32)
    expr = compile_expression(text, list(spec), {"w": W})
    inputs = _inputs(spec, rng)
    y, tape = expr.forward(inputs)
    assert y.dtype == np.float64
    dy = rng.standard_normal(y.shape)
    grads = expr.backward(tape, dy)
    for name in expr.used_inputs:
        assert grads[name].shape == inputs[name].shape
        num = _numeric(expr, inputs, dy, name)
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-7, err_msg=f"{text}: d/d{name}")


def test_every_function_has_a_gradient_case():
    used = set()
    for text, _ in GRAD_CASES:
        used |= set(re.findall(r"([a-z_0-9]+)\(", text))
    assert set(FUNCTIONS) <= used, sorted(set(FUNCTIONS) - used)


def test_gradient_of_unused_input_is_zero_and_comparisons_pass_none():
    expr = compile_expression("(x > 0) * 3 + y * 0 + y", ["x", "y"])
    inputs = {"x": np.array([[1.0, -2.0]]), "y": np.array([[0.5, 0.5]])}
    y, tape = expr.forward(inputs)
    np.testing.assert_array_equal(y, [[3.5, 0.5]])
    grads = expr.backward(tape, np.ones((1, 2)))
    np.testing.assert_array_equal(grads["x"], 0)
    np.testing.assert_array_equal(grads["y"], 1)


def test_conditional_gradient_flows_to_the_chosen_branch_only():
    expr = compile_expression("x * 10 if x > 0 else x * -3", ["x"])
    x = np.array([[2.0, -1.0, 0.5]])
    y, tape = expr.forward({"x": x})
    np.testing.assert_allclose(y, [[20.0, 3.0, 5.0]])
    np.testing.assert_allclose(expr.backward(tape, np.ones_like(x))["x"], [[10.0, -3.0, 10.0]])


# ---------------------------------------------------------------------- values and dtypes

def test_values_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5))
    cases = {
        "softmax(x, axis=-1)": np.exp(x) / np.exp(x).sum(-1, keepdims=True),
        "l2_normalize(x, axis=1)": x / np.sqrt(np.maximum((x * x).sum(1, keepdims=True), 1e-12)),
        "x[:, ::-1, 1:4]": x[:, ::-1, 1:4],
        "x[..., 0]": x[..., 0],
        "x[:, 2]": x[:, 2],
        "x[:, None, 1]": x[:, None, 1],
        "sigmoid(x)": 1 / (1 + np.exp(-x)),
        "softplus(x)": np.log1p(np.exp(x)),
        "mean(x, axis=(1, 2))": x.mean(axis=(1, 2)),
        "max(x, axis=-1, keepdims=True)": x.max(axis=-1, keepdims=True),
        "reshape(x, (5, 3))": x.reshape(4, 5, 3),
        "concatenate([x, -x], axis=1)": np.concatenate([x, -x], axis=1),
        "clip(x, -0.5, 0.25)": np.clip(x, -0.5, 0.25),
        "where(x > 0, x, 0.1 * x)": np.where(x > 0, x, 0.1 * x),
        "x ** 2 / 2 - 1e-3": x ** 2 / 2 - 1e-3,
    }
    for text, want in cases.items():
        got, _ = compile_expression(text).forward({"x": x})
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=text)
        assert got.shape[1:] == compile_expression(text).output_shape({"x": (3, 5)}), text


def test_sigmoid_and_softplus_are_stable_for_large_inputs():
    x = np.array([[-1000.0, 0.0, 1000.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s, _ = compile_expression("sigmoid(x)").forward({"x": x})
        p, _ = compile_expression("softplus(x)").forward({"x": x})
        m, _ = compile_expression("softmax(x * 10, axis=-1)").forward({"x": x})
    np.testing.assert_allclose(s, [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(p, [[0.0, np.log(2), 1000.0]])
    np.testing.assert_allclose(m, [[0.0, 0.0, 1.0]])


@pytest.mark.parametrize("text", ["x * 2.5 + pi + tanh(x) ** 2", "softmax(x, axis=-1) * w",
                                  "x if x > 0.5 else exp(x) - e", "l2_normalize(x) + mean(x, axis=-1, keepdims=True)"])
def test_float32_stays_float32(text):
    expr = compile_expression(text, None, {"w": [1.0, 2.0, 3.0]})
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    y, tape = expr.forward({"x": x})
    assert y.dtype == np.float32
    assert expr.backward(tape, np.ones_like(y))["x"].dtype == np.float32


# ---------------------------------------------------------------------- errors with columns

ERROR_CASES = [
    ("x.__class__", 2, "attribute access '.__class__' is not allowed"),
    ("x * 2 + x.__class__", 10, "attribute access"),
    ("__import__('os')", 1, "'__import__' is not available"),
    ("__import__('os').system('touch /tmp/layerforge-pwned')", 17, "attribute access '.system'"),
    ("open('f')", 1, "unknown function 'open'"),
    ("[i for i in x]", 1, "comprehensions are not allowed"),
    ("lambda: 1", 1, "lambda is not allowed"),
    ("x + (lambda: 1)()", 6, "lambda is not allowed"),
    ("x + y", 5, "unknown name 'y'"),
    ("exp(x, foo=1)", 8, "exp() takes no keyword arguments"),
    ("sum(x, axis=-1, axes=2)", 17, "sum() has no argument 'axes'; did you mean 'axis'?"),
    ("tahn(x)", 1, "unknown function 'tahn'; did you mean 'tanh'?"),
    ("x * 2 + expp(x)", 9, "unknown function 'expp'; did you mean 'exp'?"),
    ("np.exp(x)", 3, "attribute access '.exp' is not allowed; call exp(...) directly"),
    ("x +* 2", 4, "invalid syntax"),
    ("x * (2 + 1", 5, "'(' is never closed"),
    ("x + 1)", 6, "unmatched ')'"),
    ("'abc'", 1, "strings are not allowed"),
    ("x @ x", 1, "'@' is not supported"),
    ("x // 2", 1, "'//' is not supported"),
    ("x in x", 1, "'in' is not supported"),
    ("exp", 1, "'exp' is a function"),
    ("x[0]", 3, "the first index applies to the batch axis"),
    ("x[None, 0]", 3, "cannot insert an axis before the batch axis"),
    ("x[:, x]", 6, "indices must be integer literals"),
    ("x[:, 1:x]", 8, "slice bounds must be integer literals"),
    ("x[:, ::0]", 6, "slice step cannot be zero"),
    ("sum(x, axis=0)", 13, "over axis 0 would mix the samples"),
    ("concatenate([x, x], axis=0)", 26, "along axis 0"),
    ("exp(x, x)", 1, "exp() takes 1 positional argument, got 2"),
    ("max(x, x, axis=-1)", 1, "max(a, b) is the elementwise maximum"),
    ("sum(x, axis=x)", 13, "axis must be an integer literal"),
    ("sum(x, axis=-1, keepdims=1)", 26, "keepdims must be True or False"),
    ("concatenate(x, axis=-1)", 13, "concatenate takes a list"),
    ("reshape(x, (2, -1, -1))", 12, "at most one -1"),
    ("exp(*x)", 5, "* unpacking is not allowed"),
    ("{1: x}", 1, "dicts are not allowed"),
    ("(x, x)", 1, "a tuple is only allowed"),
    ("f'{x}'", 1, "f-strings are not allowed"),
    ("(y := x)", 2, "assignments (:=) are not allowed"),
    ("None", 1, "None is only allowed inside [...]"),
    ("1j * x", 1, "only real numbers"),
    ("~x", 1, "'~' is not supported"),
    ("x + é", 5, "unknown name 'é'"),
]


@pytest.mark.parametrize("text,column,fragment", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_forbidden_and_wrong_expressions_report_the_column(text, column, fragment):
    with pytest.raises(ValueError) as info:
        compile_expression(text)
    err = info.value
    assert isinstance(err, ExpressionError)
    assert str(err).startswith(f"column {column}: "), str(err)
    assert fragment in str(err), str(err)


def test_nothing_is_executed(tmp_path):
    target = tmp_path / "pwned"
    for text in [f"__import__('os').system('touch {target}')", f"open('{target}', 'w')",
                 "().__class__.__bases__[0].__subclasses__()", "exec('1')", "eval('1')", "globals()"]:
        with pytest.raises(ExpressionError):
            compile_expression(text)
    assert not target.exists()


def test_multiline_expression_reports_line_and_column():
    with pytest.raises(ExpressionError, match=r"^line 2, column 3: unknown function 'foo'"):
        compile_expression("x * 2 +\n  foo(x)")
    assert compile_expression("x * 2\n + tanh(x)\n").output_shape({"x": (3,)}) == (3,)


def test_empty_too_long_and_too_deep():
    with pytest.raises(ExpressionError, match="empty"):
        compile_expression("   ")
    with pytest.raises(ExpressionError, match="characters long"):
        compile_expression("x + " * 2000 + "x")
    with pytest.raises(ExpressionError, match="nested too deeply|too many nested"):
        compile_expression("-" * 3000 + "x")


def test_declared_input_names_and_constants():
    expr = compile_expression("a * scale + b[:, 0:1]", ["a", "b"], {"scale": 2})
    assert expr.used_inputs == ["a", "b"]
    with pytest.raises(ExpressionError, match=r"column 1: unknown name 'x'.*available: a, b, scale, pi, e"):
        compile_expression("x + a", ["a", "b"], {"scale": 2})
    with pytest.raises(ExpressionError, match="did you mean 'scale'"):
        compile_expression("a * scal", ["a"], {"scale": 2})
    # default names: x, x0, x1, ... (the count is checked against the layer's inputs later)
    assert compile_expression("x0 * x1 + x").used_inputs == ["x0", "x1", "x"]
    with pytest.raises(ExpressionError, match="unknown name 'x01'"):
        compile_expression("x01")


# ---------------------------------------------------------------------- shapes

@pytest.mark.parametrize("text,shapes,want", [
    ("sum(x * x, axis=-1, keepdims=True)", {"x": (2, 3)}, (2, 1)),
    ("sum(x, axis=-1)", {"x": (None, 3)}, (None,)),
    ("mean(x, axis=(1, 2))", {"x": (None, 3)}, ()),
    ("x[:, 1:3]", {"x": (None, 4)}, (None, 4)),
    ("x[:, :, 1:3]", {"x": (None, 4)}, (None, 2)),
    ("x[..., 0]", {"x": (None, 4)}, (None,)),
    ("x[:, ::-1]", {"x": (5,)}, (5,)),
    ("x[:, 1:3]", {"x": (None,)}, (None,)),
    ("x[:, None, -1]", {"x": (7, 2)}, (1, 2)),
    ("concatenate([x, x * 2], axis=-1)", {"x": (None, 3)}, (None, 6)),
    ("concatenate([x, x], axis=1)", {"x": (None, 3)}, (None, 3)),
    ("concatenate([x0, x1], axis=-1)", {"x0": (4, 3), "x1": (4, 2)}, (4, 5)),
    ("reshape(x, (-1,))", {"x": (None, 3)}, (None,)),
    ("reshape(x, (3, -1))", {"x": (2, 3)}, (3, 2)),
    ("x0 * sigmoid(x1) + square(x0)", {"x0": (3,), "x1": (3,)}, (3,)),
    ("x0 + x1", {"x0": (None, 3), "x1": (1, 3)}, (None, 3)),
    ("x0 + x1", {"x0": (5, None), "x1": (5, 1)}, (5, None)),
    ("x + w", {"x": (4, 3)}, (4, 3)),
    ("x + v1", {"x": (3,)}, (3,)),
    ("softmax(x, axis=1) + l2_normalize(x, axis=-2)", {"x": (None, 3)}, (None, 3)),
])
def test_shape_inference(text, shapes, want):
    expr = compile_expression(text, None, {"w": W, "v1": [W]})
    assert expr.output_shape(shapes) == want
    # the inferred shape is what the forward pass produces (None filled with 5)
    rng = np.random.default_rng(0)
    inputs = {k: rng.standard_normal((2,) + tuple(5 if d is None else d for d in s)) for k, s in shapes.items()}
    y, _ = expr.forward(inputs)
    assert y.shape[0] == 2
    assert all(w is None or w == g for w, g in zip(want, y.shape[1:], strict=True))


@pytest.mark.parametrize("text,shapes,column,fragment", [
    ("x * 2 + sum(x, axis=-2)", {"x": (3,)}, 9, "would mix the samples"),
    ("sum(x)", {"x": (3,)}, 1, "without axis= would reduce over the batch axis"),
    ("x + sum(x, axis=-1)", {"x": (3,)}, 1, "batch axes would not line up"),
    ("x0 + x1", {"x0": (3,), "x1": (4,)}, 1, "do not broadcast"),
    ("x[:, 5]", {"x": (3,)}, 3, "index 5 is out of range"),
    ("x[..., 0]", {"x": ()}, 3, "applies to the batch axis"),
    ("x[:, 0, 0]", {"x": (3,)}, 3, "too many indices"),
    ("softmax(x, axis=2)", {"x": (3,)}, 1, "out of range"),
    ("reshape(x, (4,))", {"x": (3,)}, 1, "cannot reshape"),
    ("reshape(x, (4, -1))", {"x": (6,)}, 1, "not a multiple"),
    ("v + x", {"x": (3,)}, 1, "would broadcast over the batch axis"),
    ("u + x", {"x": (3,)}, 1, "batch axes would not line up"),
    ("concatenate([x, w], axis=-1)", {"x": (3,)}, 1, "constant"),
    ("concatenate([x0, x1], axis=-1)", {"x0": (3, 2), "x1": (4, 2)}, 1, "equal sizes"),
    ("concatenate([x0, x1])", {"x0": (3, 2), "x1": (3,)}, 1, "same number of axes"),
    ("sum(x, axis=(1, -2))", {"x": (3,)}, 1, "would mix"),
    ("sum(x, axis=(1, -1))", {"x": (3,)}, 1, "names the same axis twice"),
])
def test_shape_errors_carry_the_column(text, shapes, column, fragment):
    expr = compile_expression(text, None, {"w": W, "v": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "u": [[[1.0]]]})
    with pytest.raises(ExpressionError) as info:
        expr.output_shape(shapes)
    assert str(info.value).startswith(f"column {column}: "), str(info.value)
    assert fragment in str(info.value)


def test_constant_only_expression_has_no_batch_axis():
    expr = compile_expression("x * 0 + 1")
    assert expr.output_shape({"x": (3,)}) == (3,)
    with pytest.raises(ExpressionError, match="does not use any input"):
        compile_expression("pi * 2", ["x"]).output_shape({})


def test_flops_counts_elementwise_work():
    expr = compile_expression("x * 2 + tanh(x)")
    assert expr.flops({"x": (4,)}) == 12  # mul, tanh, add on 4 elements


# ---------------------------------------------------------------------- scalar evaluator

def test_evaluate_scalar_schedule():
    text = "lr * 0.5 if epoch >= 10 else lr"
    assert evaluate_scalar(text, {"lr": 0.1, "epoch": 12}) == pytest.approx(0.05)
    assert evaluate_scalar(text, {"lr": 0.1, "epoch": 3}) == pytest.approx(0.1)
    value = evaluate_scalar("lr * exp(-0.1 * epoch)", {"lr": 0.01, "epoch": 5})
    assert isinstance(value, float) and value == pytest.approx(0.01 * np.exp(-0.5))
    assert evaluate_scalar("max(lr * 0.5 ** epoch, 1e-4)", {"lr": 0.1, "epoch": 20}) == pytest.approx(1e-4)
    assert evaluate_scalar("lr * (0.1 if 10 <= epoch < 20 else 1)", {"lr": 1.0, "epoch": 15}) == pytest.approx(0.1)
    assert evaluate_scalar("epoch > 3 and lr < 1", {"lr": 0.5, "epoch": 4}) == 1.0
    assert evaluate_scalar("2 * pi", {}) == pytest.approx(2 * np.pi)


def test_evaluate_scalar_errors():
    with pytest.raises(ValueError, match=r"^column 6: unknown name 'epoc'; did you mean 'epoch'\?"):
        evaluate_scalar("lr * epoc", {"lr": 0.1, "epoch": 1})
    with pytest.raises(ValueError, match="^column 14: the operator '//' is not supported"):
        evaluate_scalar("lr * 0.1 ** (epoch // 10)", {"lr": 0.1, "epoch": 1})
    with pytest.raises(ValueError, match="attribute access"):
        evaluate_scalar("lr.real", {"lr": 0.1})
    with pytest.raises(ValueError, match="out of range"):
        evaluate_scalar("sum(lr, axis=-1)", {"lr": 0.1})
    with pytest.raises(ValueError, match="must be a number"):
        evaluate_scalar("lr", {"lr": "0.1"})
    with pytest.raises(ValueError, match="single number"):
        check_scalar_expression("reshape(lr, (1,))", ["lr"])
    check_scalar_expression("lr * 0.5 if epoch >= 10 else lr", ["lr", "epoch"])
    assert np.isinf(evaluate_scalar("1 / lr", {"lr": 0.0}))
