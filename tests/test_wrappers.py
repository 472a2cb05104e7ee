"""TimeDistributed and Bidirectional: equal to running the wrapped layers by hand; naming and errors."""

import numpy as np
import pytest

from layerforge.config.model import parse_layer
from layerforge.config.source import SourceMap
from layerforge.errors import ConfigError, ShapeError
from layerforge.testing import build_layer, check_layer_gradients


def _parse(cfg):
    problems = []
    out = parse_layer(dict(cfg), (), SourceMap(), problems)
    return out, problems


def test_time_distributed_dense_equals_per_step_dense():
    td = build_layer({"type": "TimeDistributed", "layer": {"type": "Dense", "units": 3}}, (5, 4), seed=1)
    assert td.output_shape == (5, 3)
    assert sorted(td.params) == ["bias", "kernel"]
    x = np.random.default_rng(0).standard_normal((2, 5, 4))
    y, _ = td.layer.forward(td.params, x)
    for t in range(5):
        np.testing.assert_allclose(y[:, t], x[:, t] @ td.params["kernel"] + td.params["bias"], rtol=1e-12)
    mask = np.array([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0]], bool)
    assert td.layer.compute_mask(x, mask) is mask


def test_time_distributed_recurrent_over_nested_sequences():
    td = build_layer({"type": "TimeDistributed", "layer": {"type": "GRU", "units": 2}}, (3, 4, 5), seed=2)
    inner = build_layer({"type": "GRU", "units": 2}, (4, 5), seed=2)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    y, _ = td.layer.forward(td.params, x)
    assert y.shape == (2, 3, 2)
    for t in range(3):
        np.testing.assert_allclose(y[:, t], inner.layer.forward(inner.params, x[:, t])[0], rtol=1e-12)
    check_layer_gradients(td, x)


def test_time_distributed_errors():
    with pytest.raises(ShapeError, match="rank >= 3"):
        build_layer({"type": "TimeDistributed", "layer": {"type": "Dense", "units": 3}}, (4,))
    with pytest.raises(ShapeError, match="several outputs"):
        build_layer({"type": "TimeDistributed", "layer": {"type": "LSTM", "units": 3, "return_state": True}},
                    (2, 4, 3))
    _, problems = _parse({"type": "TimeDistributed", "layer": "Dense"})
    assert problems and "layer mapping" in problems[0].message
    _, problems = _parse({"type": "TimeDistributed", "layer": {"type": "Dense", "unitz": 3}})
    assert any(p.path == "layer.unitz" and "did you mean 'units'" in (p.hint or "") for p in problems)


def _bi(cfg, merge="concat", seed=3, **extra):
    return build_layer({"type": "Bidirectional", "merge_mode": merge, "layer": cfg, **extra}, (4, 3), seed=seed)


def test_bidirectional_param_names_and_order():
    b = _bi({"type": "LSTM", "units": 2})
    names = [s.name for s in b.layer.param_specs((4, 3))]
    assert names == ["forward/kernel", "forward/recurrent_kernel", "forward/bias",
                     "backward/kernel", "backward/recurrent_kernel", "backward/bias"]
    assert sum(s.size for s in b.layer.param_specs((4, 3))) == 2 * 4 * (3 * 2 + 2 * 2 + 2)
    assert b.layer.backward_layer.config.go_backwards and not b.layer.forward_layer.config.go_backwards


@pytest.mark.parametrize("merge", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("seq", [False, True])
def test_bidirectional_equals_two_layers_by_hand(merge, seq):
    inner = {"type": "GRU", "units": 2, "return_sequences": seq}
    b = _bi(inner, merge)
    x = np.random.default_rng(5).standard_normal((3, 4, 3))
    out, _ = b.layer.forward(b.params, x)
    fwd = build_layer(inner, (4, 3))
    bwd = build_layer({**inner, "go_backwards": True}, (4, 3))
    p = b.params
    yf = fwd.layer.forward({k[8:]: v for k, v in p.items() if k.startswith("forward/")}, x)[0]
    yb = bwd.layer.forward({k[9:]: v for k, v in p.items() if k.startswith("backward/")}, x)[0]
    if seq:
        yb = yb[:, ::-1]
    expected = {"concat": lambda: np.concatenate([yf, yb], -1), "sum": lambda: yf + yb, "mul": lambda: yf * yb,
                "ave": lambda: (yf + yb) / 2, None: lambda: [yf, yb]}[merge]()
    if merge is None:
        assert isinstance(out, list) and len(out) == 2 and b.layer.num_outputs() == 2
        for o, e in zip(out, expected, strict=True):
            np.testing.assert_allclose(o, e, rtol=1e-12)
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_bidirectional_return_state_and_masks():
    b = _bi({"type": "LSTM", "units": 2, "return_sequences": True, "return_state": True})
    assert b.output_shape == [(4, 4), (2,), (2,), (2,), (2,)]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3))
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 1]], bool)
    outs, _ = b.layer.forward(b.params, x, mask=mask)
    assert len(outs) == 5 and np.all(outs[0][~mask] == 0)  # Keras 3: masked steps of the sequence are zeros
    masks = b.layer.compute_mask(x, mask)
    assert masks[0] is mask and masks[1:] == [None] * 4
    check_layer_gradients(b, x, mask=mask)


def test_bidirectional_config_errors():
    _, problems = _parse({"type": "Bidirectional", "layer": {"type": "Dense", "units": 2}})
    assert problems and "recurrent layer" in problems[0].message
    _, problems = _parse({"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2},
                          "backward_layer": {"type": "LSTM", "units": 2}})
    assert problems and "go_backwards" in problems[0].message
    _, problems = _parse({"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2},
                          "backward_layer": {"type": "LSTM", "units": 2, "go_backwards": True,
                                             "return_sequences": True}})
    assert problems and "return_sequences" in problems[0].message
    _, problems = _parse({"type": "Bidirectional", "merge_mode": "max", "layer": {"type": "LSTM", "units": 2}})
    assert problems
    with pytest.raises(ConfigError):
        build_layer({"type": "Bidirectional", "layer": {"type": "GRU"}}, (3, 2))
    with pytest.raises(ShapeError, match="differ"):
        build_layer({"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2},
                     "backward_layer": {"type": "LSTM", "units": 3, "go_backwards": True}}, (3, 2))


@pytest.mark.parametrize("cfg", [
    {"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2}},
    {"type": "TimeDistributed", "layer": {"type": "GRU", "units": 2}},
], ids=["bidirectional", "time_distributed"])
def test_wrappers_pass_engine_gradient_buffers_to_the_inner_layers(cfg):
    shape = (3, 4) if cfg["type"] == "Bidirectional" else (2, 3, 4)
    b = build_layer(cfg, shape, dtype=np.float32, seed=2)
    x = np.random.default_rng(1).standard_normal((2,) + shape).astype(np.float32)
    y, cache = b.layer.forward(b.params, x, training=True)
    dy = np.ones_like(y)
    _, plain = b.layer.backward(b.params, dy, cache)
    plain = {k: v.copy() for k, v in plain.items()}
    y, cache = b.layer.forward(b.params, x, training=True)
    out = {k: np.full(v.shape, 7.0, np.float32) for k, v in b.params.items()}
    _, grads = b.layer.backward(b.params, dy, cache, out=out)
    assert set(grads) == set(out)
    for k in out:
        assert grads[k] is out[k]
        np.testing.assert_allclose(out[k], plain[k], rtol=1e-5, atol=1e-6)
