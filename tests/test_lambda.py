"""The Lambda layer: config validation, shapes, masks, expression and opt-in Python functions."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from layerforge.config.model import load_config, parse_layer
from layerforge.config.source import SourceMap
from layerforge.errors import ConfigError, ShapeError
from layerforge.graph import build_graph
from layerforge.testing import build_layer, check_layer_gradients


def _parse(raw, path=("layers", 2)):
    problems = []
    cfg = parse_layer(dict(raw), path, SourceMap(file="m.yaml"), problems)
    return cfg, problems


# ---------------------------------------------------------------------- config validation

@pytest.mark.parametrize("raw,path,fragment", [
    ({"expression": "x.__class__"}, "layers[2].expression", "column 2: attribute access '.__class__'"),
    ({"expression": "__import__('os')"}, "layers[2].expression", "column 1: '__import__' is not available"),
    ({"expression": "open('f')"}, "layers[2].expression", "column 1: unknown function 'open'"),
    ({"expression": "[i for i in x]"}, "layers[2].expression", "column 1: comprehensions are not allowed"),
    ({"expression": "lambda: 1"}, "layers[2].expression", "column 1: lambda is not allowed"),
    ({"expression": "exp(x, foo=1)"}, "layers[2].expression", "column 8: exp() takes no keyword arguments"),
    ({"expression": "x * 2 + tahn(x)"}, "layers[2].expression", "column 9: unknown function 'tahn'; did you "
                                                                 "mean 'tanh'?"),
    ({"expression": "a + c", "input_names": ["a", "b"]}, "layers[2].expression", "column 5: unknown name 'c'"),
    ({"expression": "x * k2", "arguments": {"k": 2}}, "layers[2].expression", "column 5: unknown name 'k2'; "
                                                                               "did you mean 'k'?"),
    ({"expression": "sum(x, axis=0)"}, "layers[2].expression", "over axis 0 would mix the samples"),
    ({"expression": "pi * 2"}, "layers[2].expression", "does not use any input"),
    ({"expression": "x", "function": "m:f"}, "layers[2]", "give exactly one of"),
    ({}, "layers[2]", "give exactly one of"),
    ({"expression": "x", "gradient": "m:g"}, "layers[2]", "`gradient:` only applies with `function:`"),
    ({"function": "m:f", "input_names": ["a"]}, "layers[2]", "`input_names:` only applies"),
    ({"function": "os.system"}, "layers[2].function", "should match pattern"),
    ({"expression": "a", "input_names": ["a", "a"]}, "layers[2].input_names", "repeats a name"),
    ({"expression": "a", "input_names": ["__a"]}, "layers[2].input_names", "not a valid name"),
    ({"expression": "exp", "input_names": ["exp"]}, "layers[2].input_names", "already a function"),
    ({"expression": "x * exp", "arguments": {"exp": 1}}, "layers[2].arguments", "already a function"),
    ({"expression": "x * x1", "arguments": {"x1": 1}}, "layers[2].arguments", "already an input name"),
    ({"expression": "x * k", "arguments": {"k": "two"}}, "layers[2].arguments", "must be a number"),
    ({"expression": "x", "output_shape": [0]}, "layers[2].output_shape", "positive"),
    ({"expression": "x", "mask": True}, "layers[2].mask", "None"),
])
def test_config_errors_are_located(raw, path, fragment):
    cfg, problems = _parse({"type": "Lambda", **raw})
    assert cfg is None
    assert problems, "expected a problem"
    assert problems[0].path == path, problems[0].render_plain()
    assert fragment in problems[0].message, problems[0].message


def test_expression_error_points_at_the_yaml_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent("""\
        input_shape: [4]
        layers:
          - type: Dense
            units: 3
          - type: Lambda
            expression: "x * 2 + x.__class__"
        """))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    p = info.value.problems[0]
    assert (p.path, p.line) == ("layers[1].expression", 6)
    assert p.message.startswith("column 10: attribute access")


def test_valid_configs_and_round_trip():
    cfg, problems = _parse({"type": "Lambda", "expression": "a * k + b", "input_names": ["a", "b"],
                            "arguments": {"k": [1, 2, 3]}, "output_shape": [3]})
    assert not problems
    again, problems = _parse(cfg.public_dict())
    assert not problems and again == cfg
    cfg, problems = _parse({"type": "Lambda", "function": "pkg.mod:fn", "gradient": "pkg.mod:fn_grad",
                            "arguments": {"mode": "fast", "sizes": [1, 2]}})
    assert not problems and cfg.function == "pkg.mod:fn" and cfg.arguments["mode"] == "fast"


# ---------------------------------------------------------------------- expression layers

def test_two_inputs_forward_matches_numpy_and_gradients():
    rng = np.random.default_rng(3)
    built = build_layer({"type": "Lambda", "expression": "x0 * sigmoid(x1) + square(x0)"}, [(3,), (3,)])
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    y, _ = built.layer.forward({}, [a, b])
    np.testing.assert_allclose(y, a / (1 + np.exp(-b)) + a * a, rtol=1e-12)
    check_layer_gradients(built, [a, b])


def test_named_inputs_with_variable_length_and_arguments():
    cfg = {"type": "Lambda", "expression": "query * scale + key[:, ::-1]", "input_names": ["query", "key"],
           "arguments": {"scale": 0.5}}
    built = build_layer(cfg, [(None, 2), (None, 2)])
    assert built.output_shape == (None, 2)
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 7, 2)), rng.standard_normal((2, 7, 2))
    y, _ = built.layer.forward({}, [q, k])
    np.testing.assert_allclose(y, q * 0.5 + k[:, ::-1])
    check_layer_gradients(built, [q, k])


def test_single_input_array_or_list_of_one():
    built = build_layer({"type": "Lambda", "expression": "x * 2 + x0"}, (3,))
    x = np.arange(6.0).reshape(2, 3)
    y1, c1 = built.layer.forward({}, x)
    y2, c2 = built.layer.forward({}, [x])
    np.testing.assert_array_equal(y1, 3 * x)
    np.testing.assert_array_equal(y1, y2)
    dx1, grads = built.layer.backward({}, np.ones_like(x), c1)
    dx2, _ = built.layer.backward({}, np.ones_like(x), c2)
    assert grads == {}
    assert isinstance(dx1, np.ndarray) and isinstance(dx2, list) and len(dx2) == 1
    np.testing.assert_array_equal(dx1, 3.0)
    np.testing.assert_array_equal(dx2[0], 3.0)
    assert built.layer.output_shape([(3,)]) == (3,)


def test_unused_input_gets_a_zero_gradient():
    built = build_layer({"type": "Lambda", "expression": "x1 * 2"}, [(3,), (3,)])
    a, b = np.ones((2, 3)), np.ones((2, 3))
    y, cache = built.layer.forward({}, [a, b])
    dx, _ = built.layer.backward({}, np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[0], 0.0)
    np.testing.assert_array_equal(dx[1], 2.0)
    named = build_layer({"type": "Lambda", "expression": "b * 3", "input_names": ["a", "b"]}, [(3,), (3,)])
    y, cache = named.layer.forward({}, [a, b])
    dx, _ = named.layer.backward({}, np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[0], 0.0)
    np.testing.assert_array_equal(dx[1], 3.0)


def test_float32_in_float32_out():
    built = build_layer({"type": "Lambda", "expression": "x0 * pi + softmax(x1, axis=-1)"}, [(3,), (3,)],
                        dtype=np.float32)
    xs = [np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)]
    y, cache = built.layer.forward({}, xs)
    assert y.dtype == np.float32
    dx, _ = built.layer.backward({}, np.ones_like(y), cache)
    assert all(d.dtype == np.float32 for d in dx)


@pytest.mark.parametrize("cfg,shape,fragment", [
    ({"expression": "x0 + x2"}, [(3,), (3,)], "uses 'x2' but the layer receives 2 input(s): x0, x1"),
    ({"expression": "x1"}, (3,), "uses 'x1' but the layer receives 1 input(s)"),
    ({"expression": "a + b", "input_names": ["a", "b"]}, [(3,), (3,), (3,)], "input_names lists 2 name(s)"),
    ({"expression": "x0 * x1"}, [(3,), (4,)], "do not broadcast"),
    ({"expression": "x * 2 + sum(x, axis=-2)"}, (3,), "column 9: sum() over axis -2 would mix the samples"),
    ({"expression": "x", "output_shape": [4]}, (3,), "the expression gives (None, 3) but output_shape says (None, 4)"),
])
def test_shape_errors(cfg, shape, fragment):
    with pytest.raises(ShapeError) as info:
        build_layer({"type": "Lambda", **cfg}, shape)
    assert fragment in info.value.problems[0].message, info.value.problems[0].message


def test_declared_output_shape_fills_variable_dims():
    built = build_layer({"type": "Lambda", "expression": "x[:, :, 0:2]", "output_shape": [10, 2]}, (None, 4))
    assert built.output_shape == (10, 2)
    built = build_layer({"type": "Lambda", "expression": "x[:, :, 0:2]", "output_shape": [None, 2]}, (None, 4))
    assert built.output_shape == (None, 2)


def test_mask_passes_only_when_shape_is_unchanged():
    mask = np.array([[True, False, True]])
    same = build_layer({"type": "Lambda", "expression": "x * 2"}, (3, 4)).layer
    assert same.compute_mask(np.zeros((1, 3, 4)), mask) is mask
    assert same.compute_mask(np.zeros((1, 3, 4)), None) is None
    reduced = build_layer({"type": "Lambda", "expression": "sum(x, axis=-1)"}, (3, 4)).layer
    assert reduced.compute_mask(np.zeros((1, 3, 4)), mask) is None
    two = build_layer({"type": "Lambda", "expression": "x0 + x1"}, [(3, 4), (3, 4)]).layer
    other = np.array([[True, True, False]])
    np.testing.assert_array_equal(two.compute_mask([np.zeros((1, 3, 4))] * 2, [mask, other]), mask & other)
    np.testing.assert_array_equal(two.compute_mask([np.zeros((1, 3, 4))] * 2, [None, other]), other)


def test_graph_with_lambda_and_flops():
    spec = load_config({"inputs": [{"name": "a", "shape": [4]}, {"name": "b", "shape": [4]}],
                        "layers": [{"type": "Lambda", "name": "mix", "inputs": ["a", "b"],
                                    "expression": "concatenate([x0, x1 * 2], axis=-1)"},
                                   {"type": "Dense", "units": 2}]})
    graph = build_graph(spec)
    node = graph.node("mix")
    assert node.output_shape == (8,)
    assert node.param_count == 0 and node.flops == 4 + 8


# ---------------------------------------------------------------------- opt-in Python functions

USER_MODULE = '''
import numpy as np

def double(x, scale=2.0):
    return x * scale

def double_grad(dy, x, scale=2.0):
    return dy * scale

def pair(xs):
    a, b = xs
    return a * b

def pair_grad(dy, a, b):
    return [dy * b, dy * a]

def repeat_time(x):
    return np.concatenate([x, x], axis=1)

def broken(x):
    raise RuntimeError("boom")

not_callable = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "lf_lambda_user_fns.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lf_lambda_user_fns", raising=False)
    return "lf_lambda_user_fns"


def test_function_is_refused_without_allow_code(user_module):
    cfg = {"type": "Lambda", "function": f"{user_module}:double"}
    with pytest.raises(ConfigError) as info:
        build_layer(cfg, (3,))
    msg = info.value.problems[0].message
    assert "this config runs Python code" in msg and f"'{user_module}:double'" in msg
    assert "pass --allow-code to run it" in msg
    assert user_module not in sys.modules  # nothing was imported
    # through the graph: located at the layer
    with pytest.raises(ConfigError) as info:
        build_graph(load_config({"input_shape": [3], "layers": [{"type": "Dense", "units": 3}, cfg]}))
    p = info.value.problems[0]
    assert p.path == "layers[1]" and "--allow-code" in p.message


def test_allow_code_belongs_to_the_config_it_was_loaded_with(user_module):
    # a parameter of loading, not a process-wide switch: one config allowed leaves every other refused
    cfg = {"type": "Lambda", "function": f"{user_module}:double"}
    config = {"input_shape": [3], "layers": [cfg]}
    assert build_graph(load_config(config, allow_code=True)).output_shapes == [(3,)]
    with pytest.raises(ConfigError):
        build_graph(load_config(config))
    stack = {"input_shape": [3], "layers": [{"type": "Sequential", "layers": [{"type": "Dense", "units": 2}]}]}
    assert load_config(stack, allow_code=True).layers[0].layers[0].code_allowed  # nested layers carry it too
    assert not load_config(stack).layers[0].layers[0].code_allowed
    with pytest.raises(ConfigError):
        build_layer(cfg, (3,))


def test_function_runs_with_allow_code(user_module):
    cfg = {"type": "Lambda", "function": f"{user_module}:double", "gradient": f"{user_module}:double_grad",
           "arguments": {"scale": 3.0}}
    built = build_layer(cfg, (3,), allow_code=True)
    assert built.output_shape == (3,)  # inferred by calling the function on zeros
    x = np.random.default_rng(0).standard_normal((2, 3))
    y, _ = built.layer.forward({}, x)
    np.testing.assert_allclose(y, 3 * x)
    check_layer_gradients(built, x)
    y32, _ = built.layer.forward({}, x.astype(np.float32))
    assert y32.dtype == np.float32


def test_function_with_several_inputs_gets_a_list(user_module):
    cfg = {"type": "Lambda", "function": f"{user_module}:pair", "gradient": f"{user_module}:pair_grad"}
    built = build_layer(cfg, [(2,), (2,)], allow_code=True)
    assert built.output_shape == (2,)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((3, 2)), rng.standard_normal((3, 2))]
    check_layer_gradients(built, xs)


def test_function_output_shape_inference_keeps_variable_dims(user_module):
    built = build_layer({"type": "Lambda", "function": f"{user_module}:repeat_time"}, (None, 3), allow_code=True)
    assert built.output_shape == (None, 3)
    built = build_layer({"type": "Lambda", "function": f"{user_module}:repeat_time"}, (4, 3), allow_code=True)
    assert built.output_shape == (8, 3)
    built = build_layer({"type": "Lambda", "function": f"{user_module}:repeat_time", "output_shape": [8, 3]},
                        (4, 3), allow_code=True)
    assert built.output_shape == (8, 3)


def test_function_without_gradient_predicts_but_cannot_train(user_module):
    built = build_layer({"type": "Lambda", "function": f"{user_module}:double"}, (3,), allow_code=True)
    x = np.ones((2, 3))
    y, cache = built.layer.forward({}, x)
    np.testing.assert_array_equal(y, 2.0)
    with pytest.raises(ConfigError) as info:
        built.layer.backward({}, np.ones_like(y), cache)
    msg = info.value.problems[0].message
    assert "without `gradient:`" in msg and "predict-only use works" in msg and "double" in msg


@pytest.mark.parametrize("ref,fragment", [
    ("lf_no_such_module_xyz:f", "cannot import module 'lf_no_such_module_xyz'"),
    ("{mod}:missing", "has no 'missing'"),
    ("{mod}:not_callable", "is not callable"),
    ("{mod}:broken", "RuntimeError: boom"),
])
def test_function_errors(user_module, ref, fragment):
    with pytest.raises(ConfigError) as info:
        build_layer({"type": "Lambda", "function": ref.format(mod=user_module)}, (3,), allow_code=True)
    assert fragment in info.value.problems[0].message


def test_validation_and_shapes_do_not_load_numba():
    code = textwrap.dedent("""
        import sys
        from layerforge.testing import build_layer
        built = build_layer({"type": "Lambda", "expression": "softmax(x, axis=-1) * 2"}, (None, 3))
        built.layer.forward({}, __import__("numpy").ones((1, 2, 3)))
        assert "numba" not in sys.modules, "numba was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
