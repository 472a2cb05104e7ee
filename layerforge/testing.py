"""Helpers for testing layers: build one from a config dict, and check its gradients.

``check_layer_gradients`` compares ``backward`` with float64 central differences
of ``sum(forward(x) * dy)`` for the inputs and every trainable param, and checks that
the engine's ways of calling backward (preallocated ``out`` buffers, a workspace,
``need_dx=False``) give the same weight gradients as fresh arrays. Stochastic
layers get a freshly seeded rng on every forward so each evaluation replays the
same noise; carried state (BatchNormalization statistics, stateful RNN state) is
restored before every forward.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .config.model import parse_layer
from .config.source import SourceMap
from .errors import ConfigError
from .layers import Layer, load_all, make_layer


@dataclass
class BuiltLayer:
    layer: Layer
    params: dict
    input_shape: object
    output_shape: object


def build_layer(config: dict, input_shape, *, dtype=np.float64, seed: int = 0, batch_size: int | None = None,
                name: str = "layer", allow_code: bool = False) -> BuiltLayer:
    """Validate ``config``, instantiate the layer and initialise its weights (``allow_code``: as load_config)."""
    from .layers.initializers import initialize

    load_all()
    problems: list = []
    cfg = parse_layer(dict(config), (), SourceMap(file="<test>"), problems, allow_code=allow_code)
    if problems:
        raise ConfigError(problems=problems)
    layer = make_layer(cfg, name)
    layer.batch_size = batch_size
    out_shape = layer.output_shape(input_shape)
    rng = np.random.default_rng(seed)
    params = {}
    for spec in layer.param_specs(input_shape):
        value = initialize(spec.initializer, spec.shape, rng, dtype, spec.fan)
        if spec.trainable:
            params[spec.name] = value
        else:
            layer.state[spec.name] = value
    layer.build(input_shape)
    layer.init_state(batch_size, dtype)
    return BuiltLayer(layer, params, input_shape, out_shape)


def _concrete(shape, fill: int = 5):
    return tuple(fill if d is None else d for d in shape)


def random_input(input_shape, batch: int, rng, *, int_input: int | None = None, dtype=np.float64):
    """Random inputs (a list for multi-input layers)."""
    if isinstance(input_shape, list):
        return [random_input(s, batch, rng, int_input=int_input, dtype=dtype) for s in input_shape]
    shape = (batch,) + _concrete(input_shape)
    if int_input is not None:
        return rng.integers(0, int_input, size=shape).astype(np.int64)
    return rng.standard_normal(shape).astype(dtype)


def random_mask(input_shape, batch: int, rng):
    """A (B, T) mask with at least one valid step per sample and some masked steps."""
    shape = input_shape[0] if isinstance(input_shape, list) else input_shape
    steps = _concrete(shape)[0]
    mask = rng.random((batch, steps)) > 0.3
    mask[:, 0] = True
    if steps > 2:
        mask[0, -1] = False
    if isinstance(input_shape, list):
        return [mask.copy() for _ in input_shape]
    return mask


def _as_list(v):
    return v if isinstance(v, list) else [v]


def check_layer_gradients(built: BuiltLayer, x, *, mask=None, training: bool = True, seed: int = 1234,
                          eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7, max_checks: int = 40,
                          check_inputs: bool = True) -> dict:
    """Raise AssertionError when an analytic gradient disagrees with central differences.

    Returns the worst relative error seen per tensor (for reporting)."""
    layer, params = built.layer, built.params
    saved_state = copy.deepcopy(layer.state)
    proj_rng = np.random.default_rng(seed + 1)

    def run(xv, pv, workspace=None):
        layer.state = copy.deepcopy(saved_state)
        y, cache = layer.forward(pv, xv, training=training, rng=np.random.default_rng(seed), mask=mask,
                                 workspace=workspace)
        return y, cache

    y, cache = run(x, params)
    ys = _as_list(y)
    dys = [proj_rng.standard_normal(np.shape(v)) for v in ys]
    dy = dys if isinstance(y, list) else dys[0]

    def loss(xv, pv):
        out, _ = run(xv, pv)
        return float(sum(np.sum(o * d) for o, d in zip(_as_list(out), dys)))

    layer.state = copy.deepcopy(saved_state)
    y, cache = run(x, params)
    dx, grads = layer.backward(params, dy, cache)
    assert set(grads) == set(params), f"grads keys {sorted(grads)} != params {sorted(params)}"
    for k in params:
        assert np.shape(grads[k]) == params[k].shape, f"grad {k} shape {np.shape(grads[k])} != {params[k].shape}"
    grads = {k: np.array(v, copy=True) for k, v in grads.items()}
    _check_engine_paths(layer, params, x, dy, dx, grads, lambda ws: run(x, params, ws))

    report = {}
    pick_rng = np.random.default_rng(seed + 2)

    def compare(label, array, analytic, evaluate):
        flat = array.reshape(-1)
        an = np.asarray(analytic, dtype=np.float64).reshape(-1)
        assert an.size == flat.size, f"{label}: gradient has {an.size} elements, expected {flat.size}"
        idx = np.arange(flat.size) if flat.size <= max_checks else pick_rng.choice(flat.size, max_checks, replace=False)
        worst = 0.0
        for i in idx:
            old = flat[i]
            flat[i] = old + eps
            plus = evaluate()
            flat[i] = old - eps
            minus = evaluate()
            flat[i] = old
            num = (plus - minus) / (2 * eps)
            err = abs(num - an[i])
            worst = max(worst, err / max(abs(num), abs(an[i]), 1e-3))
            if err > atol + rtol * max(abs(num), abs(an[i]), 1.0):  # relative, and absolute below 1
                raise AssertionError(f"{layer.type} gradient mismatch for {label} at flat index {i}: "
                                     f"analytic {an[i]:.8g}, numeric {num:.8g}")
        report[label] = worst

    if check_inputs:
        xs = _as_list(x)
        dxs = _as_list(dx)
        for j, (xv, dxv) in enumerate(zip(xs, dxs)):
            if np.issubdtype(xv.dtype, np.floating) and dxv is not None:
                compare(f"input[{j}]", xv, dxv, lambda: loss(x, params))
    for k, v in params.items():
        compare(k, v, grads[k], lambda: loss(x, params))
    layer.state = saved_state
    return report


def _engine_buffers(params: dict) -> dict:
    """Gradient arrays laid out as the engine lays them out (views into one flat buffer), holding stale values."""
    arrays = {name: np.asarray(p) for name, p in params.items()}
    if len({a.dtype for a in arrays.values()}) > 1:
        return {name: np.full(a.shape, 7.0, a.dtype) for name, a in arrays.items()}
    dtype = next(iter(arrays.values())).dtype if arrays else np.float64
    flat = np.full(sum(a.size for a in arrays.values()), 7.0, dtype)
    out, off = {}, 0
    for name, a in arrays.items():
        out[name] = flat[off:off + a.size].reshape(a.shape)
        off += a.size
    return out


def _check_engine_paths(layer, params, x, dy, dx, grads, forward) -> None:
    """backward with the engine's preallocated buffers (``out``) and a workspace, and with ``need_dx=False``, gives
    the weight gradients of the fresh-array call (and the same dx when it is asked for)."""
    from .kernels.workspace import Workspace

    ws = Workspace()
    for need_dx, with_out in ((True, True), (False, False), (False, True)):
        _, cache = forward(ws)
        out = _engine_buffers(params) if with_out else None
        dx2, g2 = layer.backward(params, dy, cache, need_dx=need_dx, out=out, workspace=ws)
        label = f"{layer.type} backward(need_dx={need_dx}, out={'buffers' if with_out else 'None'})"
        assert set(g2) == set(grads), f"{label}: grads keys {sorted(g2)} != {sorted(grads)}"
        for k, v in grads.items():
            np.testing.assert_allclose(g2[k], v, rtol=1e-12, atol=1e-14, err_msg=f"{label}: weight gradient {k}")
        if need_dx:
            for a, b in zip(_as_list(dx2), _as_list(dx)):
                if a is not None and b is not None:
                    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"{label}: input gradient")


def check_model_gradients(config: dict, xs: list, ys: list, *, seed: int = 0, eps: float = 1e-6,
                          rtol: float = 1e-5, max_checks: int = 12) -> dict:
    """Central-difference check of a whole model's gradients, loss included (float64, training mode,
    the rng replayed on every evaluation). Returns the worst relative error per weight."""
    from .config.model import load_config
    from .engine.model import CompiledModel
    from .engine.training import Trainer
    from .graph import build_graph

    spec = load_config(config)
    model = CompiledModel(build_graph(spec), seed=seed, dtype=np.float64)
    trainer = Trainer(model, spec.config.training, seed=seed)
    states = {n.name: copy.deepcopy(n.layer.state) for n in model.nodes}

    def loss_and_grads(want: bool):
        for n in model.nodes:
            n.layer.state = copy.deepcopy(states[n.name])
        outs, masks, tape = model.forward(xs, training=True, rng=np.random.default_rng(seed))
        loss, _, douts = trainer._loss(outs, masks, ys, None, want_grads=want)
        loss += model.activity_loss(tape, len(xs[0])) + model.regularization_loss()
        if not want:
            return loss, None
        grads = model.backward(tape, douts, len(xs[0]))
        model.add_regularization_grads(grads)
        return loss, grads

    _, grads = loss_and_grads(True)
    pick = np.random.default_rng(seed + 7)
    report = {}
    for node_name, param in model.trainable_pairs():
        w = model.params[node_name][param]
        flat = w.reshape(-1)
        an = grads[node_name][param].reshape(-1)
        idx = np.arange(flat.size) if flat.size <= max_checks else pick.choice(flat.size, max_checks, replace=False)
        worst = 0.0
        for i in idx:
            old = flat[i]
            flat[i] = old + eps
            plus, _ = loss_and_grads(False)
            flat[i] = old - eps
            minus, _ = loss_and_grads(False)
            flat[i] = old
            num = (plus - minus) / (2 * eps)
            err = abs(num - an[i])
            worst = max(worst, err / max(abs(num), abs(an[i]), 1e-3))
            if err > 1e-7 + rtol * max(abs(num), abs(an[i]), 1.0):  # relative, and absolute below 1
                raise AssertionError(f"model gradient mismatch for {node_name}/{param}[{i}]: "
                                     f"analytic {an[i]:.8g}, numeric {num:.8g}")
        report[f"{node_name}/{param}"] = worst
    return report
