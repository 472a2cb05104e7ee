"""Parallel predict: whole batches on several threads, each with its own workspace, for every reentrant model;
results bit-identical to one thread. Layers answer for themselves (Layer.reentrant, Layer.training_mode)."""

import numpy as np
import pytest

from layerforge.config.model import load_config
from layerforge.engine.inference import batches_in_parallel, predict
from layerforge.engine.model import CompiledModel
from layerforge.graph import build_graph
from layerforge.kernels.threads import current_threads, set_threads

MODELS = {
    "conv": ({"inputs": [{"name": "x", "shape": [8, 8, 2]}],
              "layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                         {"type": "Conv2D", "filters": 3, "kernel_size": 1, "activation": "tanh"},
                         {"type": "Flatten"}, {"type": "Dense", "units": 2}]}, (8, 8, 2)),
    "recurrent": ({"inputs": [{"name": "x", "shape": [5, 3]}],
                   "layers": [{"type": "LSTM", "units": 4, "return_sequences": True},
                              {"type": "GRU", "units": 3}, {"type": "Dense", "units": 2}]}, (5, 3)),
    "batchnorm": ({"inputs": [{"name": "x", "shape": [6]}],
                   "layers": [{"type": "Dense", "units": 5}, {"type": "BatchNormalization"},
                              {"type": "Dense", "units": 2, "activation": "softmax"}]}, (6,)),
    "lambda": ({"inputs": [{"name": "x", "shape": [6]}],
                "layers": [{"type": "Dense", "units": 4},
                           {"type": "Lambda", "expression": "tanh(x) * 2 + x ** 2"}]}, (6,)),
}


def _compiled(config):
    return CompiledModel(build_graph(load_config(config)), seed=3)


@pytest.fixture
def restore_threads():
    before = current_threads()
    yield
    set_threads(before)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_predict_is_bit_identical_on_one_and_several_threads(kind, restore_threads):
    config, shape = MODELS[kind]
    model = _compiled(config)
    assert model.reentrant
    x = np.random.default_rng(0).standard_normal((37,) + shape).astype(np.float32)
    set_threads(1)
    one = predict(model, [x], batch_size=8)
    set_threads(2)
    from layerforge.kernels.blocks import blas_controllers

    if blas_controllers():
        assert batches_in_parallel(model)
    for _ in range(2):  # the second time with the workspaces already holding buffers
        two = predict(model, [x], batch_size=8)
        for a, b in zip(one, two, strict=True):
            assert np.array_equal(a, b)
    set_threads(3)
    three = predict(model, [x], batch_size=8)
    for a, b in zip(one, three, strict=True):
        assert np.array_equal(a, b)


def test_layers_that_must_run_batches_in_order_say_so():
    stateful = _compiled({"batch_size": 2, "inputs": [{"name": "x", "shape": [4, 3]}],
                          "layers": [{"type": "LSTM", "units": 2, "stateful": True}]})
    assert not stateful.reentrant and not batches_in_parallel(stateful)
    wrapped = _compiled({"batch_size": 2, "inputs": [{"name": "x", "shape": [4, 3]}],
                         "layers": [{"type": "Bidirectional", "layer": {"type": "GRU", "units": 2, "stateful": True}}]})
    assert not wrapped.reentrant
    plain = _compiled({"inputs": [{"name": "x", "shape": [4, 3]}],
                       "layers": [{"type": "Bidirectional", "layer": {"type": "GRU", "units": 2}}]})
    assert plain.reentrant


def test_frozen_batch_normalization_runs_in_inference_mode_by_its_own_answer():
    from layerforge.testing import build_layer

    bn = build_layer({"type": "BatchNormalization", "trainable": False}, (3,)).layer
    assert bn.training_mode(True) is False
    dense = build_layer({"type": "Dense", "units": 2, "trainable": False}, (3,)).layer
    assert dense.training_mode(True) is True


def test_workspace_stays_within_its_byte_cap():
    from layerforge.kernels.workspace import Workspace

    ws = Workspace(max_bytes=1000)
    pool = ws.pool("a")
    kept = np.empty(100, np.float64)  # 800 bytes
    pool.give(kept)
    pool.give(np.empty(50, np.float64))  # 400 more: over the cap, dropped
    assert ws.kept_bytes == 800
    assert pool.take((100,), np.float64) is kept and ws.kept_bytes == 0
    assert pool.take((50,), np.float64).shape == (50,)  # fresh


def test_every_stateful_layer_example_is_not_reentrant():
    from layerforge.layers import REGISTRY, load_all
    from layerforge.testing import build_layer

    load_all()
    seen = 0
    for cls in REGISTRY.values():
        for ex in cls.examples:
            layer_cfg = ex.config.get("layer", ex.config)
            if ex.config.get("stateful") or (isinstance(layer_cfg, dict) and layer_cfg.get("stateful")):
                built = build_layer(ex.config, ex.input_shape, batch_size=ex.batch_size)
                assert not built.layer.reentrant, cls.type
                seen += 1
    assert seen >= 3
