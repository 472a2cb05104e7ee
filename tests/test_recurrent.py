"""SimpleRNN / GRU / LSTM against a plain numpy step-by-step reference, plus their Keras quirks."""

import copy

import numpy as np
import pytest

from layerforge.activations import activate
from layerforge.config.model import parse_layer
from layerforge.config.source import SourceMap
from layerforge.errors import ConfigError, DataError, ShapeError
from layerforge.testing import build_layer, check_layer_gradients


def _parse(cfg):
    problems = []
    out = parse_layer(dict(cfg), (), SourceMap(), problems)
    return out, problems


def reference(layer, params, x, mask=None, h0=None, c0=None, dmask=None, rmask=None):
    """Keras semantics written out one time step at a time."""
    c = layer.config
    B, T, _ = x.shape
    u = c.units
    act = lambda z: activate(c.activation, z)  # noqa: E731
    ract = lambda z: activate(getattr(c, "recurrent_activation", "sigmoid"), z)  # noqa: E731
    W, U = params["kernel"], params["recurrent_kernel"]
    b = params.get("bias")
    h = np.zeros((B, u)) if h0 is None else h0.copy()
    cs = np.zeros((B, u)) if c0 is None else c0.copy()
    y_prev = np.zeros((B, u))
    outs = []
    for t in (reversed(range(T)) if c.go_backwards else range(T)):
        xt = x[:, t] * (1 if dmask is None else dmask)
        hd = h * (1 if rmask is None else rmask)
        cn = cs
        if layer.type == "SimpleRNN":
            hn = act(xt @ W + hd @ U + (0 if b is None else b))
        elif layer.type == "LSTM":
            z = xt @ W + hd @ U + (0 if b is None else b)
            i, f, g, o = ract(z[:, :u]), ract(z[:, u:2 * u]), act(z[:, 2 * u:3 * u]), ract(z[:, 3 * u:])
            cn = f * cs + i * g
            hn = o * act(cn)
        elif c.reset_after:
            xz = xt @ W + (0 if b is None else b[0])
            rz = hd @ U + (0 if b is None else b[1])
            z, r = ract(xz[:, :u] + rz[:, :u]), ract(xz[:, u:2 * u] + rz[:, u:2 * u])
            hn = z * h + (1 - z) * act(xz[:, 2 * u:] + r * rz[:, 2 * u:])
        else:
            xz = xt @ W + (0 if b is None else b)
            z = ract(xz[:, :u] + hd @ U[:, :u])
            r = ract(xz[:, u:2 * u] + hd @ U[:, u:2 * u])
            hn = z * h + (1 - z) * act(xz[:, 2 * u:] + (r * hd) @ U[:, 2 * u:])
        if mask is not None:
            m = mask[:, t][:, None]
            hn, cn, yt = np.where(m, hn, h), np.where(m, cn, cs), np.where(m, hn, y_prev)
        else:
            yt = hn
        outs.append(yt)
        y_prev, h, cs = yt, hn, cn
    y = np.stack(outs, axis=1) if c.return_sequences else outs[-1]
    return y, h, cs


CASES = [
    {"type": "SimpleRNN", "units": 3},
    {"type": "SimpleRNN", "units": 4, "return_sequences": True, "go_backwards": True, "activation": "relu"},
    {"type": "LSTM", "units": 3, "return_sequences": True},
    {"type": "LSTM", "units": 5, "go_backwards": True, "recurrent_activation": "hard_sigmoid_keras1"},
    {"type": "LSTM", "units": 2, "use_bias": False, "activation": "softsign", "return_sequences": True},
    {"type": "GRU", "units": 3, "return_sequences": True},
    {"type": "GRU", "units": 4, "reset_after": False, "go_backwards": True, "return_sequences": True},
    {"type": "GRU", "units": 3, "reset_after": False, "recurrent_activation": "hard_sigmoid"},
    {"type": "GRU", "units": 2, "use_bias": False, "go_backwards": True},
]


def _mask(rng, B, T):
    m = rng.random((B, T)) > 0.35
    m[0, :2] = False  # masked steps before the first valid one: outputs must be zeros
    m[1, :] = True
    return m


@pytest.mark.parametrize("cfg", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("masked", [False, True])
def test_forward_matches_step_by_step_reference(cfg, masked):
    rng = np.random.default_rng(3)
    B, T, F = 3, 6, 5
    built = build_layer({**cfg, "return_state": True}, (T, F), seed=7)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in built.params.items()}  # non-zero biases
    x = rng.standard_normal((B, T, F))
    mask = _mask(rng, B, T) if masked else None
    outs, _ = built.layer.forward(params, x, training=False, rng=None, mask=mask)
    y_ref, h_ref, c_ref = reference(built.layer, params, x, mask)
    np.testing.assert_allclose(outs[0], y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outs[1], h_ref, rtol=1e-12, atol=1e-12)
    if cfg["type"] == "LSTM":
        np.testing.assert_allclose(outs[2], c_ref, rtol=1e-12, atol=1e-12)
    if masked and cfg.get("return_sequences") and not cfg.get("go_backwards"):
        assert np.all(outs[0][0, :2] == 0)  # nothing valid yet: zeros, as Keras


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_float32_fast_path_close_to_float64(kind):
    rng = np.random.default_rng(0)
    cfg = {"type": kind, "units": 16, "return_sequences": True}
    b64 = build_layer(cfg, (9, 7), seed=1)
    b32 = build_layer(cfg, (9, 7), seed=1, dtype=np.float32)
    x = rng.standard_normal((4, 9, 7))
    mask = _mask(rng, 4, 9)
    y64, c64 = b64.layer.forward(b64.params, x, mask=mask, training=True)
    y32, c32 = b32.layer.forward(b32.params, x.astype(np.float32), mask=mask, training=True)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=2e-5)
    dy = rng.standard_normal(y64.shape)
    dx64, g64 = b64.layer.backward(b64.params, dy, c64)
    dx32, g32 = b32.layer.backward(b32.params, dy.astype(np.float32), c32)
    assert dx32.dtype == np.float32 and all(v.dtype == np.float32 for v in g32.values())
    np.testing.assert_allclose(dx32, dx64, atol=1e-4)
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], atol=2e-4 * max(1.0, float(np.abs(g64[k]).max())))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_dropout_masks_are_fixed_per_sequence(kind):
    cfg = {"type": kind, "units": 3, "dropout": 0.3, "recurrent_dropout": 0.4, "return_sequences": True}
    built = build_layer(cfg, (5, 4), seed=2)
    x = np.random.default_rng(1).standard_normal((3, 5, 4))
    y, _ = built.layer.forward(built.params, x, training=True, rng=np.random.default_rng(9))
    replay = np.random.default_rng(9)  # the layer draws the input mask, then the recurrent mask
    dmask = (replay.random((3, 4)) >= 0.3) / 0.7
    rmask = (replay.random((3, 3)) >= 0.4) / 0.6
    y_ref, _, _ = reference(built.layer, built.params, x, dmask=dmask, rmask=rmask)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    y_eval, _ = built.layer.forward(built.params, x, training=False, rng=np.random.default_rng(9))
    np.testing.assert_allclose(y_eval, reference(built.layer, built.params, x)[0], rtol=1e-12, atol=1e-12)
    assert not np.allclose(y, y_eval)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_stateful_carries_state_across_two_batches(kind):
    cfg = {"type": kind, "units": 3, "stateful": True, "return_state": True}
    built = build_layer(cfg, (4, 2), seed=5, batch_size=2)
    layer, params = built.layer, built.params
    rng = np.random.default_rng(11)
    x1, x2 = rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 2))
    out1, _ = layer.forward(params, x1)
    np.testing.assert_array_equal(layer.state["h"], out1[1])  # the carried state = the final state of batch 1
    if kind == "LSTM":
        np.testing.assert_array_equal(layer.state["c"], out1[2])
    carried = copy.deepcopy(layer.state)
    out2, _ = layer.forward(params, x2)
    y_ref, h_ref, _ = reference(layer, params, x2, h0=carried["h"], c0=carried.get("c"))
    np.testing.assert_allclose(out2[0], y_ref, rtol=1e-12, atol=1e-12)
    assert not np.allclose(out2[0], reference(layer, params, x2)[0])  # the state mattered
    # gradients of batch 2 w.r.t. inputs and weights with the carried state held fixed
    layer.state = copy.deepcopy(carried)
    check_layer_gradients(built, x2)
    layer.reset_states()
    assert np.all(layer.state["h"] == 0)


def test_stateful_needs_a_batch_size_and_a_matching_batch():
    with pytest.raises(ShapeError) as err:
        build_layer({"type": "LSTM", "units": 2, "stateful": True}, (4, 3))
    assert "batch_size" in err.value.problems[0].hint
    built = build_layer({"type": "GRU", "units": 2, "stateful": True}, (4, 3), batch_size=3)
    with pytest.raises(DataError, match="exactly 3 samples"):
        built.layer.forward(built.params, np.zeros((2, 4, 3)))


def test_variable_length_and_shapes():
    built = build_layer({"type": "GRU", "units": 3, "return_sequences": True}, (None, 4))
    assert built.output_shape == (None, 3)
    y, _ = built.layer.forward(built.params, np.ones((2, 7, 4)))
    assert y.shape == (2, 7, 3)
    assert build_layer({"type": "LSTM", "units": 3, "return_state": True}, (5, 4)).output_shape == [(3,), (3,), (3,)]
    with pytest.raises(ShapeError, match="time steps, features"):
        build_layer({"type": "SimpleRNN", "units": 3}, (4,))
    with pytest.raises(ShapeError, match="time steps, features"):
        build_layer({"type": "SimpleRNN", "units": 3}, (4, 3, 2))


def test_weight_layout_and_gru_bias_shapes():
    lstm = build_layer({"type": "LSTM", "units": 32}, (10, 8))
    assert [(s.name, s.shape) for s in lstm.layer.param_specs((10, 8))] == [
        ("kernel", (8, 128)), ("recurrent_kernel", (32, 128)), ("bias", (128,))]
    assert build_layer({"type": "GRU", "units": 32}, (10, 8)).params["bias"].shape == (2, 96)
    assert build_layer({"type": "GRU", "units": 32, "reset_after": False}, (10, 8)).params["bias"].shape == (96,)
    specs = lstm.layer.param_specs((10, 8))
    assert specs[1].initializer == "orthogonal"


def test_unit_forget_bias_initializer():
    layer = build_layer({"type": "LSTM", "units": 3}, (4, 2)).layer
    init = layer.param_specs((4, 2))[2].initializer
    value = init((12,), np.random.default_rng(0), np.float32)
    np.testing.assert_array_equal(value, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    off = build_layer({"type": "LSTM", "units": 3, "unit_forget_bias": False}, (4, 2))
    assert np.all(off.params["bias"] == 0)


def test_unit_forget_bias_through_build():
    b = build_layer({"type": "LSTM", "units": 3}, (4, 2))
    np.testing.assert_array_equal(b.params["bias"][3:6], 1)


def test_keras1_names_equal_modern_config():
    old, problems = _parse({"type": "LSTM", "output_dim": 4, "init": "he_normal", "inner_init": "identity",
                            "inner_activation": "hard_sigmoid", "W_regularizer": {"l2": 0.01},
                            "U_regularizer": "l1", "b_regularizer": {"l1": 0.1}, "dropout_W": 0.1,
                            "dropout_U": 0.2, "forget_bias_init": "zero", "consume_less": "gpu",
                            "input_dim": 3, "input_length": 5, "U_constraint": "non_neg"})
    assert not problems, [p.render_plain() for p in problems]
    new, problems = _parse({"type": "LSTM", "units": 4, "kernel_initializer": "he_normal",
                            "recurrent_initializer": "identity", "recurrent_activation": "hard_sigmoid_keras1",
                            "kernel_regularizer": {"l2": 0.01}, "recurrent_regularizer": "l1",
                            "bias_regularizer": {"l1": 0.1}, "dropout": 0.1, "recurrent_dropout": 0.2,
                            "unit_forget_bias": False, "implementation": 2, "input_shape": [5, 3],
                            "recurrent_constraint": "non_neg"})
    assert not problems
    assert old == new
    gru, _ = _parse({"type": "GRU", "output_dim": 2, "inner_activation": "sigmoid", "consume_less": "cpu"})
    assert gru.recurrent_activation == "sigmoid" and gru.implementation == 0
    one, _ = _parse({"type": "LSTM", "output_dim": 2, "forget_bias_init": "one"})
    assert one.unit_forget_bias is True


def test_keras1_and_keras3_hard_sigmoid_differ():
    k1, _ = _parse({"type": "GRU", "units": 2, "inner_activation": "hard_sigmoid"})
    k3, _ = _parse({"type": "GRU", "units": 2, "recurrent_activation": "hard_sigmoid"})
    assert (k1.recurrent_activation, k3.recurrent_activation) == ("hard_sigmoid_keras1", "hard_sigmoid")
    again, problems = _parse(k1.public_dict())
    assert not problems and again == k1


def test_config_errors():
    _, problems = _parse({"type": "LSTM", "units": 2, "inner_activation": "sigmoid", "recurrent_activation": "tanh"})
    assert problems and "give only one" in problems[0].message
    _, problems = _parse({"type": "SimpleRNN", "units": 2, "activation": "gelu"})
    assert problems and "not available in recurrent layers" in problems[0].message
    _, problems = _parse({"type": "GRU", "units": 2, "dropout": 1.0})
    assert problems
    with pytest.raises(ConfigError):
        build_layer({"type": "LSTM", "units": 0}, (3, 2))


def test_masks_out_and_gradients_through_masked_steps():
    built = build_layer({"type": "LSTM", "units": 2, "return_sequences": True, "go_backwards": True}, (5, 3), seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 3))
    mask = _mask(rng, 3, 5)
    assert built.layer.compute_mask(x, mask) is mask
    last = build_layer({"type": "GRU", "units": 2, "return_state": True}, (5, 3)).layer
    assert last.compute_mask(x, mask) == [None, None]
    check_layer_gradients(built, x, mask=mask)


# ---------------------------------------------------------------------------------------- speed paths

BLOCK_CASES = [
    {"type": "SimpleRNN", "units": 4, "return_sequences": True, "go_backwards": True, "dropout": 0.2,
     "recurrent_dropout": 0.3},
    {"type": "LSTM", "units": 3, "return_sequences": True, "dropout": 0.2, "recurrent_dropout": 0.3},
    {"type": "LSTM", "units": 5, "go_backwards": True, "return_state": True, "activation": "softsign"},
    {"type": "GRU", "units": 3, "return_sequences": True, "recurrent_dropout": 0.3},
    {"type": "GRU", "units": 4, "reset_after": False, "go_backwards": True, "return_state": True, "dropout": 0.25},
]


def _pass(built, x, mask, seed=5):
    y, cache = built.layer.forward(built.params, x, training=True, rng=np.random.default_rng(seed), mask=mask)
    ys = y if isinstance(y, list) else [y]
    dys = [np.random.default_rng(1).standard_normal(v.shape) for v in ys]
    dx, grads = built.layer.backward(built.params, dys if isinstance(y, list) else dys[0], cache)
    return ys, dx, {k: v.copy() for k, v in grads.items()}


@pytest.mark.parametrize("cfg", BLOCK_CASES, ids=[str(i) for i in range(len(BLOCK_CASES))])
def test_blocks_of_samples_give_the_one_block_results(cfg, monkeypatch):
    """The batch split over threads (one pass per block of samples, weight gradients summed) changes nothing."""
    import layerforge.layers.recurrent.base_rnn as R

    rng = np.random.default_rng(0)
    built = build_layer(cfg, (6, 3), seed=2)
    x = rng.standard_normal((7, 6, 3))
    mask = _mask(rng, 7, 6)
    results = []
    for n in (1, 2, 3):
        monkeypatch.setattr(R, "FORCE_BLOCKS", n)
        assert len(built.layer._blocks(7, 6, 3)) == n
        results.append(_pass(built, x, mask))
    (ys1, dx1, g1) = results[0]
    for ys, dx, g in results[1:]:
        for a, b in zip(ys, ys1, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, dx1, rtol=1e-12, atol=1e-12)
        for k in g1:
            np.testing.assert_allclose(g[k], g1[k], rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(R, "FORCE_BLOCKS", 2)
    check_layer_gradients(built, x, mask=mask)


def test_stateful_blocks_carry_each_sample_state(monkeypatch):
    import layerforge.layers.recurrent.base_rnn as R

    cfg = {"type": "LSTM", "units": 3, "stateful": True, "return_sequences": True}
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    outs = []
    for n in (1, 2):
        monkeypatch.setattr(R, "FORCE_BLOCKS", n)
        built = build_layer(cfg, (3, 2), seed=4, batch_size=4)
        built.layer.forward(built.params, x1)
        outs.append(built.layer.forward(built.params, x2)[0])
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-12, atol=1e-12)


def test_default_blocks_follow_work_and_cores_not_threads(monkeypatch):
    from layerforge.kernels import schedule, threads

    built = build_layer({"type": "LSTM", "units": 64}, (20, 16))
    monkeypatch.setattr(schedule, "max_blocks", lambda: 2)
    assert built.layer._blocks(64, 20, 16) == [(0, 32), (32, 64)]
    assert built.layer._blocks(3, 20, 16) == [(0, 3)]  # too few samples per block
    small = build_layer({"type": "SimpleRNN", "units": 2}, (3, 2)).layer
    assert small._blocks(64, 3, 2) == [(0, 64)]  # too little work
    monkeypatch.setattr(threads, "_configured", 1)  # one thread runs the same blocks (results do not move)
    assert built.layer._blocks(64, 20, 16) == [(0, 32), (32, 64)]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_blas_entry_point_gives_the_same_results(kind, dtype, monkeypatch):
    """The per-step products call a BLAS ?gemm by address: scipy's Fortran one and every CBLAS one found agree."""
    from layerforge.kernels import recurrent as K

    rng = np.random.default_rng(2)
    built = build_layer({"type": kind, "units": 5, "return_sequences": True}, (4, 3), dtype=dtype, seed=3)
    x = rng.standard_normal((6, 4, 3)).astype(dtype)
    candidates = K.gemm_candidates(dtype)
    assert candidates[0][1] == K.GEMM_FORTRAN
    results = []
    for address, kind_code, _ in candidates:
        monkeypatch.setattr(K, "gemm_for", lambda dt, a=address, c=kind_code: (a, c))
        for width in (None, 5):  # whole weights, then column blocks of 5 (gemm_blocks)
            monkeypatch.setattr(K, "block_width", lambda rows, k, n, dtype, w=width: w if w and n % w == 0 else n)
            results.append(_pass(built, x, None))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for ys, _, g in results[1:]:
        np.testing.assert_allclose(ys[0], results[0][0][0], rtol=tol, atol=tol)
        for k in g:
            np.testing.assert_allclose(g[k], results[0][2][k], rtol=tol, atol=tol)


def _engine_like_buffers(params):
    """Views into one flat buffer in parameter order, as the engine's gradient buffer."""
    flat = np.full(sum(p.size for p in params.values()), 7.0, next(iter(params.values())).dtype)
    out, off = {}, 0
    for name, p in params.items():
        out[name] = flat[off:off + p.size].reshape(p.shape)
        off += p.size
    return flat, out


@pytest.mark.parametrize("cfg", [
    {"type": "LSTM", "units": 4},
    {"type": "LSTM", "units": 3, "use_bias": False, "return_sequences": True},
    {"type": "GRU", "units": 3},
    {"type": "GRU", "units": 3, "reset_after": False},
    {"type": "SimpleRNN", "units": 3},
], ids=lambda c: f"{c['type']}-{len(c)}")
@pytest.mark.parametrize("blocks", [1, 2])
def test_weight_gradients_written_into_engine_buffers(cfg, blocks, monkeypatch):
    import layerforge.layers.recurrent.base_rnn as R

    monkeypatch.setattr(R, "FORCE_BLOCKS", blocks)
    built = build_layer(cfg, (5, 3), dtype=np.float32, seed=6)
    layer = built.layer
    flat_params, views = _engine_like_buffers(built.params)
    for k in built.params:  # weights packed as the engine packs them (the LSTM reads them as one block)
        views[k][...] = built.params[k]
    params = views
    x = np.random.default_rng(3).standard_normal((4, 5, 3)).astype(np.float32)
    y, cache = layer.forward(params, x, training=True)
    dy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    _, plain = layer.backward(params, dy, cache)
    plain = {k: v.copy() for k, v in plain.items()}
    flat, out = _engine_like_buffers(params)
    y, cache = layer.forward(params, x, training=True)
    _, grads = layer.backward(params, dy, cache, out=out)
    for k in params:
        assert grads[k] is out[k]
        np.testing.assert_allclose(out[k], plain[k], rtol=1e-5, atol=1e-6)
    assert not np.any(flat == 7.0)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_backward_after_inference_forward_or_twice(kind):
    """Work buffers go back to the workspace after backward (and after an inference forward, which keeps no LSTM
    gates); a backward on such a cache runs the forward again instead of reading reused buffers."""
    from layerforge.kernels.workspace import Workspace

    built = build_layer({"type": kind, "units": 3, "return_sequences": True}, (4, 2), seed=1)
    layer, params = built.layer, built.params
    ws = Workspace()
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    dy = rng.standard_normal((3, 4, 3))
    _, c1 = layer.forward(params, x1, training=True, workspace=ws)
    dx1, g1 = layer.backward(params, dy, c1, workspace=ws)
    dx1, g1 = dx1.copy(), {k: v.copy() for k, v in g1.items()}
    assert ws.kept_bytes > 0
    _, c_inf = layer.forward(params, x1, training=False, workspace=ws)
    _, c2 = layer.forward(params, x2, training=True, workspace=ws)  # takes the buffers the inference pass gave back
    dx, g = layer.backward(params, dy, c_inf, workspace=ws)
    np.testing.assert_allclose(dx, dx1, rtol=1e-12)
    _, c3 = layer.forward(params, x2, training=True, workspace=ws)
    dx, g = layer.backward(params, dy, c1, workspace=ws)  # c1's buffers went back and were taken again
    np.testing.assert_allclose(dx, dx1, rtol=1e-12)
    for k in g1:
        np.testing.assert_allclose(g[k], g1[k], rtol=1e-12)
    dx2, _ = layer.backward(params, dy, c2, workspace=ws)
    _, c2b = layer.forward(params, x2, training=True, workspace=ws)
    np.testing.assert_allclose(dx2, layer.backward(params, dy, c2b, workspace=ws)[0], rtol=1e-12)


@pytest.mark.parametrize("cfg", [
    {"type": "LSTM", "units": 8, "return_sequences": True},
    {"type": "GRU", "units": 8, "return_sequences": True},
    {"type": "GRU", "units": 8, "reset_after": False, "return_sequences": True},
    {"type": "SimpleRNN", "units": 8, "return_sequences": True},
], ids=lambda c: f"{c['type']}-{len(c)}")
def test_per_step_products_in_column_blocks(cfg, monkeypatch):
    """The per-step products may run over column blocks of the weights (for OpenBLAS's direct sgemm): same results."""
    from layerforge.kernels import recurrent as K

    built = build_layer(cfg, (5, 3), dtype=np.float32, seed=8)
    x = np.random.default_rng(6).standard_normal((6, 5, 3)).astype(np.float32)
    mask = _mask(np.random.default_rng(7), 6, 5)
    monkeypatch.setattr(K, "block_width", lambda rows, k, n, dtype: n)
    ys1, dx1, g1 = _pass(built, x, mask)
    monkeypatch.setattr(K, "block_width", lambda rows, k, n, dtype: 4 if n % 4 == 0 else n)
    assert K.gemm_blocks(np.zeros((3, 8), np.float32), 6).shape == (2, 3, 4)
    ys2, dx2, g2 = _pass(built, x, mask)
    np.testing.assert_allclose(ys2[0], ys1[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx2, dx1, rtol=1e-5, atol=1e-6)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-5, atol=1e-5)
