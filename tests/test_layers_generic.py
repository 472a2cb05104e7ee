"""Generic tests driven by every registered layer's `examples`."""

import numpy as np
import pytest

from layerforge.config.model import parse_layer
from layerforge.config.source import SourceMap
from layerforge.layers import REGISTRY, TYPE_NAMES, load_all
from layerforge.layers.documented import ALL_DOCUMENTED
from layerforge.testing import build_layer, check_layer_gradients, random_input, random_mask

load_all()
CASES = [(cls.type, i, ex) for cls in REGISTRY.values() for i, ex in enumerate(cls.examples)]
IDS = [f"{t}-{i}" for t, i, _ in CASES]


def _fill(shape, batch):
    return (batch,) + tuple(5 if d is None else d for d in shape)


def test_every_documented_layer_is_a_type():
    missing = [n for n in ALL_DOCUMENTED if n not in TYPE_NAMES]
    assert not missing, f"documented but not a valid type: {missing}"


def test_type_index_matches_the_registry():
    """layers/_index.py (used to import only the families a config needs) is generated from the registry."""
    from pathlib import Path

    from layerforge.layers import _make_index
    from layerforge.layers._index import TYPE_MODULES

    registered = {name: _make_index.family_of(cls) for cls in REGISTRY.values()
                  for name in (cls.type, *cls.aliases)}
    assert TYPE_MODULES == registered
    committed = (Path(_make_index.__file__).with_name("_index.py")).read_text()
    assert committed == _make_index.render(), "run `python -m layerforge.layers._make_index`"


def test_every_layer_has_two_examples():
    few = [t for t, cls in REGISTRY.items() if len(cls.examples) < 2]
    assert not few, f"layers with fewer than two examples: {few}"


@pytest.mark.parametrize("type_name,index,example", CASES, ids=IDS)
def test_shape_and_params(type_name, index, example):
    built = build_layer(example.config, example.input_shape, batch_size=example.batch_size)
    specs = built.layer.param_specs(example.input_shape)
    if example.output_shape is not None:
        expected = example.output_shape
        got = built.output_shape
        if isinstance(expected, list):
            assert [tuple(s) for s in got] == [tuple(s) for s in expected]
        else:
            assert tuple(got) == tuple(expected)
    if example.params is not None:
        assert sum(s.size for s in specs) == example.params
    if example.trainable_params is not None:
        assert sum(s.size for s in specs if s.trainable) == example.trainable_params


@pytest.mark.parametrize("type_name,index,example", CASES, ids=IDS)
def test_config_round_trip(type_name, index, example):
    built = build_layer(example.config, example.input_shape, batch_size=example.batch_size)
    dumped = built.layer.config.public_dict()
    if "layer" in dumped:
        dumped["layer"] = built.layer.config.layer.public_dict()
    problems = []
    again = parse_layer(dumped, (), SourceMap(), problems)
    assert not problems, [p.render_plain() for p in problems]
    assert again == built.layer.config


@pytest.mark.parametrize("type_name,index,example", CASES, ids=IDS)
def test_forward_shape_matches_declared(type_name, index, example):
    rng = np.random.default_rng(0)
    for batch in ([example.batch_size] if example.batch_size else [1, 3]):
        built = build_layer(example.config, example.input_shape, batch_size=example.batch_size, dtype=np.float32)
        x = random_input(example.input_shape, batch, rng, int_input=example.int_input, dtype=np.float32)
        mask = random_mask(example.input_shape, batch, rng) if example.mask else None
        y, _ = built.layer.forward(built.params, x, training=False, rng=np.random.default_rng(0), mask=mask)
        declared = built.output_shape
        ys = y if isinstance(y, list) else [y]
        shapes = declared if isinstance(y, list) else [declared]
        for arr, shape in zip(ys, shapes):
            want = (batch,) + tuple(shape)
            assert arr.ndim == len(want), (arr.shape, want)
            for got_d, want_d in zip(arr.shape, want):
                assert want_d is None or got_d == want_d, (arr.shape, want)
            assert arr.dtype == np.float32, f"{type_name} returned {arr.dtype} for float32 input"


@pytest.mark.parametrize("type_name,index,example", CASES, ids=IDS)
def test_gradients(type_name, index, example):
    if not example.gradcheck:
        pytest.skip("example opts out of the gradient check: " + example.note)
    rng = np.random.default_rng(42 + index)
    batch = example.batch_size or 2
    built = build_layer(example.config, example.input_shape, batch_size=example.batch_size, seed=index)
    x = random_input(example.input_shape, batch, rng, int_input=example.int_input)
    mask = random_mask(example.input_shape, batch, rng) if example.mask else None
    check_layer_gradients(built, x, mask=mask, training=example.training, rtol=example.tolerance)


@pytest.mark.parametrize("type_name,index,example", CASES, ids=IDS)
def test_forward_modifies_neither_input_nor_params(type_name, index, example):
    # the layer contract (Layer.forward): the engine hands the same arrays to the next layer and to backward
    rng = np.random.default_rng(7 + index)
    batch = example.batch_size or 2
    built = build_layer(example.config, example.input_shape, batch_size=example.batch_size, seed=index)
    for training in (True, False):
        x = random_input(example.input_shape, batch, rng, int_input=example.int_input)
        mask = random_mask(example.input_shape, batch, rng) if example.mask else None
        x_before = [a.copy() for a in (x if isinstance(x, list) else [x])]
        params_before = {k: v.copy() for k, v in built.params.items()}
        built.layer.forward(built.params, x, training=training, rng=np.random.default_rng(0), mask=mask)
        for a, b in zip(x if isinstance(x, list) else [x], x_before, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{type_name} forward(training={training}) changed x")
        for k, v in params_before.items():
            np.testing.assert_array_equal(built.params[k], v,
                                          err_msg=f"{type_name} forward(training={training}) changed {k}")


def test_gradient_check_rtol_is_not_floored():
    # an analytic gradient 3e-6 off (relative) passes a loose check and fails rtol=1e-6: no fixed floor (it was
    # 1e-5) hides errors below it
    built = build_layer({"type": "Dense", "units": 3}, (4,))
    x = np.random.default_rng(0).standard_normal((2, 4))
    backward = built.layer.backward

    def off(params, dy, cache, **kw):
        dx, grads = backward(params, dy, cache, **kw)
        return dx, {k: g * (1 + 3e-6) for k, g in grads.items()}

    built.layer.backward = off
    check_layer_gradients(built, x, rtol=1e-4, check_inputs=False)
    with pytest.raises(AssertionError, match="gradient mismatch"):
        check_layer_gradients(built, x, rtol=1e-6, check_inputs=False)


def test_gradient_check_catches_a_layer_whose_buffer_path_differs():
    # the engine's path (gradients written into preallocated buffers) must give the fresh-array gradients
    built = build_layer({"type": "Dense", "units": 3}, (4,))
    x = np.random.default_rng(0).standard_normal((2, 4))
    backward = built.layer.backward

    def stale(params, dy, cache, *, need_dx=True, out=None, workspace=None):
        dx, grads = backward(params, dy, cache, need_dx=need_dx, workspace=workspace)
        if out:
            grads = {k: out[k] for k in grads}  # "written in place", but nothing was written
        return dx, grads

    built.layer.backward = stale
    with pytest.raises(AssertionError, match="out=buffers"):
        check_layer_gradients(built, x)


def test_a_scalar_weight_keeps_its_shape_through_set_weights_save_and_load(tmp_path):
    # np.ascontiguousarray turns a 0-d array into shape (1,): Attention's `scale` (shape ()) once came back (1,)
    import layerforge

    config = {"inputs": [{"name": "q", "shape": [4, 3]}, {"name": "v", "shape": [4, 3]}],
              "layers": [{"type": "Attention", "use_scale": True, "inputs": ["q", "v"]}]}
    model = layerforge.Model.from_yaml(config, seed=0)
    assert model.get_weights()["attention"][0].shape == ()
    model.set_weights({"attention": [np.float32(0.5)]})
    model.save(tmp_path / "run")
    again = layerforge.load(tmp_path / "run")
    assert again.get_weights()["attention"][0].shape == () and float(again.get_weights()["attention"][0]) == 0.5
