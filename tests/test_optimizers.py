"""Optimizers: first steps against numpy re-statements of the Keras 3 formulas, clipping, decay,
schedules, learning-rate setting and exact state round trips."""

import math

import numpy as np
import pytest

from layerforge.engine.optimizers import make_optimizer, make_schedule

P0 = [np.array([[0.5, -1.0, 2.0], [0.1, 0.0, -0.3]]), np.array([0.2, -0.4])]
GRADS = [
    [np.array([[0.1, -0.2, 0.3], [1.0, -0.5, 0.05]]), np.array([0.3, -0.1])],
    [np.array([[-0.2, 0.1, 0.4], [0.5, 0.5, -0.05]]), np.array([-0.6, 0.2])],
    [np.array([[0.05, 0.3, -0.1], [-1.0, 0.2, 0.0]]), np.array([0.1, 0.9])],
]


def run(spec, steps=3, dtype=np.float64):
    opt = make_optimizer(spec)
    params = [p.astype(dtype) for p in P0]
    out = []
    for grads in GRADS[:steps]:
        opt.step(params, [g.astype(dtype) for g in grads])
        out.append([p.copy() for p in params])
    return opt, out


def reference(update, slots_init, lr_at=lambda t: None, wd=0.0):
    """Apply ``update(p, g, state, lr, t)`` (t = 1-based step) in plain numpy to every parameter."""
    params = [p.copy() for p in P0]
    states = [{k: np.full_like(p, v) for k, v in slots_init.items()} for p in params]
    out = []
    for it, grads in enumerate(GRADS):
        lr = lr_at(it)
        for p, g, s in zip(params, grads, states, strict=True):
            if wd:
                p -= p * wd * lr
            update(p, g, s, lr, it + 1)
        out.append([p.copy() for p in params])
    return out


def assert_same(got, want, rtol=1e-12):
    for step_got, step_want in zip(got, want, strict=True):
        for a, b in zip(step_got, step_want, strict=True):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-14)


# --------------------------------------------------------------------------- update rules (Keras 3)


def sgd_ref(momentum=0.0, nesterov=False):
    def update(p, g, s, lr, t):
        if momentum == 0:
            p -= lr * g
            return
        s["m"][...] = momentum * s["m"] - lr * g
        p += momentum * s["m"] - lr * g if nesterov else s["m"]
    return update, {"m": 0.0}


def rmsprop_ref(rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    def update(p, g, s, lr, t):
        s["v"][...] = rho * s["v"] + (1 - rho) * g * g
        if centered:
            s["a"][...] = rho * s["a"] + (1 - rho) * g
            denom = s["v"] - s["a"] ** 2 + eps
        else:
            denom = s["v"] + eps
        inc = lr * g / np.sqrt(denom)
        if momentum > 0:
            s["m"][...] = momentum * s["m"] + inc
            p -= s["m"]
        else:
            p -= inc
    return update, {"v": 0.0, "a": 0.0, "m": 0.0}


def adagrad_ref(init=0.1, eps=1e-7):
    def update(p, g, s, lr, t):
        s["acc"] += g * g
        p -= lr * g / np.sqrt(s["acc"] + eps)
    return update, {"acc": init}


def adadelta_ref(rho=0.95, eps=1e-7):
    def update(p, g, s, lr, t):
        s["ag"][...] = rho * s["ag"] + (1 - rho) * g * g
        delta = -np.sqrt(s["ad"] + eps) * g / np.sqrt(s["ag"] + eps)
        s["ad"][...] = rho * s["ad"] + (1 - rho) * delta * delta
        p += lr * delta
    return update, {"ag": 0.0, "ad": 0.0}


def adam_ref(b1=0.9, b2=0.999, eps=1e-7, amsgrad=False):
    def update(p, g, s, lr, t):
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        s["m"] += (g - s["m"]) * (1 - b1)
        s["v"] += (g * g - s["v"]) * (1 - b2)
        v = s["v"]
        if amsgrad:
            s["vh"][...] = np.maximum(s["vh"], s["v"])
            v = s["vh"]
        p -= s["m"] * alpha / (np.sqrt(v) + eps)
    return update, {"m": 0.0, "v": 0.0, "vh": 0.0}


def adamax_ref(b1=0.9, b2=0.999, eps=1e-7):
    def update(p, g, s, lr, t):
        s["m"] += (g - s["m"]) * (1 - b1)
        s["u"][...] = np.maximum(b2 * s["u"], np.abs(g))
        p -= lr * s["m"] / ((1 - b1 ** t) * (s["u"] + eps))
    return update, {"m": 0.0, "u": 0.0}


def nadam_ref(b1=0.9, b2=0.999, eps=1e-7, schedule_decay=None):
    def u(t):
        return b1 * (1 - 0.5 * 0.96 ** (t if schedule_decay is None else t * schedule_decay))

    prods = {0: 1.0}
    for t in range(1, 10):
        prods[t] = prods[t - 1] * u(t)

    def update(p, g, s, lr, t):
        s["m"] += (g - s["m"]) * (1 - b1)
        s["v"] += (g * g - s["v"]) * (1 - b2)
        m_hat = u(t + 1) * s["m"] / (1 - prods[t] * u(t + 1)) + (1 - u(t)) * g / (1 - prods[t])
        v_hat = s["v"] / (1 - b2 ** t)
        p -= m_hat * lr / (np.sqrt(v_hat) + eps)
    return update, {"m": 0.0, "v": 0.0}


CASES = [
    ({"type": "sgd"}, sgd_ref(), 0.01),
    ({"type": "sgd", "learning_rate": 0.1, "momentum": 0.9}, sgd_ref(0.9), 0.1),
    ({"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, sgd_ref(0.9, True), 0.1),
    ({"type": "rmsprop"}, rmsprop_ref(), 0.001),
    ({"type": "rmsprop", "learning_rate": 0.01, "rho": 0.8, "centered": True}, rmsprop_ref(0.8, centered=True), 0.01),
    ({"type": "rmsprop", "learning_rate": 0.01, "momentum": 0.5}, rmsprop_ref(momentum=0.5), 0.01),
    ({"type": "rmsprop", "learning_rate": 0.01, "momentum": 0.5, "centered": True},
     rmsprop_ref(momentum=0.5, centered=True), 0.01),
    ({"type": "adagrad", "learning_rate": 0.1}, adagrad_ref(), 0.1),
    ({"type": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": 0.5, "epsilon": 1e-3},
     adagrad_ref(0.5, 1e-3), 0.1),
    ({"type": "adadelta", "learning_rate": 1.0}, adadelta_ref(), 1.0),
    ({"type": "adam", "learning_rate": 0.1}, adam_ref(), 0.1),
    ({"type": "adam", "learning_rate": 0.1, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}, adam_ref(0.5, 0.9, 1e-3),
     0.1),
    ({"type": "adam", "learning_rate": 0.1, "amsgrad": True}, adam_ref(amsgrad=True), 0.1),
    ({"type": "adamax", "learning_rate": 0.1}, adamax_ref(), 0.1),
    ({"type": "nadam", "learning_rate": 0.1}, nadam_ref(), 0.1),
    ({"type": "nadam", "learning_rate": 0.1, "schedule_decay": 0.004}, nadam_ref(schedule_decay=0.004), 0.1),
]


@pytest.mark.parametrize("spec,ref,lr", CASES, ids=[str(c[0]) for c in CASES])
def test_first_three_steps(spec, ref, lr):
    _, got = run(spec)
    want = reference(*ref, lr_at=lambda t: lr)
    assert_same(got, want)


def test_amsgrad_differs_from_adam_when_velocity_drops():
    # the gradient of P0[0][1, 2] goes 0.05, -0.05, 0: v shrinks at step 3 and v_hat keeps the maximum
    _, a = run({"type": "adam", "learning_rate": 0.1, "beta_2": 0.5})
    _, b = run({"type": "adam", "learning_rate": 0.1, "beta_2": 0.5, "amsgrad": True})
    np.testing.assert_array_equal(a[0][0], b[0][0])  # first step: v_hat == v
    assert abs(a[2][0][1, 2] - b[2][0][1, 2]) > 1e-3


def test_adamw_default_weight_decay_and_explicit():
    _, got = run({"type": "adamw", "learning_rate": 0.1})
    assert_same(got, reference(*adam_ref(), lr_at=lambda t: 0.1, wd=0.004))
    _, got = run({"type": "adam", "learning_rate": 0.1, "weight_decay": 0.05})
    assert_same(got, reference(*adam_ref(), lr_at=lambda t: 0.1, wd=0.05))
    _, got = run({"type": "sgd", "learning_rate": 0.1, "weight_decay": 0.5})
    assert_same(got, reference(*sgd_ref(), lr_at=lambda t: 0.1, wd=0.5))


def test_keras1_decay():
    lr, decay = 0.1, 0.5
    opt, got = run({"type": "sgd", "lr": lr, "decay": decay})
    assert_same(got, reference(*sgd_ref(), lr_at=lambda t: lr / (1 + decay * t)))
    assert opt.iterations == 3
    assert opt.learning_rate == lr
    assert opt.current_lr() == pytest.approx(lr / (1 + decay * 3))
    _, got = run({"type": "adam", "lr": lr, "decay": decay})
    assert_same(got, reference(*adam_ref(), lr_at=lambda t: lr / (1 + decay * t)))


# --------------------------------------------------------------------------- clipping


def _clip_ref(grads_list, clipnorm=None, clipvalue=None, global_clipnorm=None):
    out = []
    for grads in grads_list:
        gs = [g.copy() for g in grads]
        if global_clipnorm:
            n = math.sqrt(sum(float((g ** 2).sum()) for g in gs))
            gs = [g * global_clipnorm / max(n, global_clipnorm) for g in gs]
        if clipnorm:
            gs = [g * clipnorm / max(np.linalg.norm(g), clipnorm) for g in gs]
        if clipvalue:
            gs = [np.clip(g, -clipvalue, clipvalue) for g in gs]
        out.append(gs)
    return out


@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"clipvalue": 0.25}, {"global_clipnorm": 0.7},
                                  {"clipnorm": 0.5, "clipvalue": 0.2}])
def test_clipping(clip):
    lr = 0.1
    _, got = run({"type": "sgd", "learning_rate": lr, **clip})
    params = [p.copy() for p in P0]
    want = []
    for grads in _clip_ref(GRADS, **clip):
        for p, g in zip(params, grads, strict=True):
            p -= lr * g
        want.append([p.copy() for p in params])
    assert_same(got, want)
    # clipping works on copies: the caller's gradients are untouched
    opt = make_optimizer({"type": "sgd", **clip})
    grads = [g.copy() for g in GRADS[0]]
    opt.step([p.copy() for p in P0], grads)
    for a, b in zip(grads, GRADS[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_clipnorm_leaves_small_gradients_alone():
    opt = make_optimizer({"type": "sgd", "learning_rate": 1.0, "clipnorm": 100.0})
    p = np.zeros(3)
    opt.step([p], [np.array([1.0, 2.0, 2.0])])
    np.testing.assert_array_equal(p, [-1.0, -2.0, -2.0])


# --------------------------------------------------------------------------- schedules


def test_schedule_values():
    exp = make_schedule({"type": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 10,
                         "decay_rate": 0.5})
    assert exp(0) == 0.1 and exp(10) == pytest.approx(0.05) and exp(5) == pytest.approx(0.1 * 0.5 ** 0.5)
    stair = make_schedule({"type": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 10,
                           "decay_rate": 0.5, "staircase": True})
    assert stair(9) == 0.1 and stair(10) == pytest.approx(0.05) and stair(25) == pytest.approx(0.025)
    inv = make_schedule({"type": "inverse_time_decay", "initial_learning_rate": 1.0, "decay_steps": 2,
                         "decay_rate": 0.5})
    assert inv(4) == pytest.approx(1 / 2.0) and inv(3) == pytest.approx(1 / 1.75)
    inv_s = make_schedule({"type": "inverse_time_decay", "initial_learning_rate": 1.0, "decay_steps": 2,
                           "decay_rate": 0.5, "staircase": True})
    assert inv_s(3) == pytest.approx(1 / 1.5)
    pw = make_schedule({"type": "piecewise_constant", "boundaries": [2, 5], "values": [1.0, 0.5, 0.1]})
    assert [pw(s) for s in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]
    poly = make_schedule({"type": "polynomial_decay", "initial_learning_rate": 0.1, "decay_steps": 10,
                          "end_learning_rate": 0.01, "power": 2.0})
    assert poly(0) == pytest.approx(0.1) and poly(5) == pytest.approx(0.09 * 0.25 + 0.01)
    assert poly(10) == pytest.approx(0.01) and poly(50) == pytest.approx(0.01)
    cyc = make_schedule({"type": "polynomial_decay", "initial_learning_rate": 0.1, "decay_steps": 10,
                         "end_learning_rate": 0.0, "cycle": True})
    assert cyc(0) == pytest.approx(0.1) and cyc(15) == pytest.approx(0.1 * (1 - 15 / 20))
    cos = make_schedule({"type": "cosine_decay", "initial_learning_rate": 0.1, "decay_steps": 10, "alpha": 0.1})
    assert cos(0) == pytest.approx(0.1) and cos(5) == pytest.approx(0.1 * (0.9 * 0.5 + 0.1))
    assert cos(10) == pytest.approx(0.01) and cos(99) == pytest.approx(0.01)
    warm = make_schedule({"type": "cosine_decay", "initial_learning_rate": 0.0, "decay_steps": 10,
                          "warmup_target": 0.2, "warmup_steps": 4})
    assert warm(0) == 0.0 and warm(2) == pytest.approx(0.1) and warm(4) == pytest.approx(0.2)
    assert warm(9) == pytest.approx(0.2 * 0.5) and warm(14) == pytest.approx(0.0, abs=1e-15)
    assert warm(100) == pytest.approx(0.0, abs=1e-15)


def test_schedule_errors():
    with pytest.raises(ValueError, match="one more value"):
        make_schedule({"type": "piecewise_constant", "boundaries": [1, 2], "values": [1.0, 0.5]})
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        make_schedule({"type": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 0,
                       "decay_rate": 0.5})


def test_optimizer_uses_schedule_at_iteration_count():
    sched = {"type": "piecewise_constant", "boundaries": [0, 1], "values": [0.3, 0.2, 0.1]}
    opt, got = run({"type": "sgd", "learning_rate": sched})
    assert_same(got, reference(*sgd_ref(), lr_at=lambda t: [0.3, 0.2, 0.1][t]))
    assert opt.learning_rate == 0.1 and opt.current_lr() == 0.1
    exp = {"type": "exponential_decay", "initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5}
    _, got = run({"type": "adam", "learning_rate": exp, "decay": 0.25})
    assert_same(got, reference(*adam_ref(), lr_at=lambda t: 0.1 * 0.5 ** t / (1 + 0.25 * t)))


def test_setting_learning_rate_replaces_schedule():
    opt = make_optimizer({"type": "sgd", "learning_rate": {"type": "exponential_decay", "initial_learning_rate": 1.0,
                                                           "decay_steps": 1, "decay_rate": 0.5}})
    p = np.zeros(1)
    opt.step([p], [np.ones(1)])
    assert opt.learning_rate == 0.5 and opt.schedule is not None
    opt.learning_rate = opt.learning_rate * 0.1  # what ReduceLROnPlateau does
    assert opt.schedule is None and opt.learning_rate == pytest.approx(0.05)
    opt.step([p], [np.ones(1)])
    opt.step([p], [np.ones(1)])
    assert p[0] == pytest.approx(-1.0 - 0.05 - 0.05)
    with pytest.raises(ValueError):
        opt.learning_rate = float("nan")


# --------------------------------------------------------------------------- dtype, lazy slots, errors


@pytest.mark.parametrize("spec", [c[0] for c in CASES] + [{"type": "adamw"}])
def test_float32_params_stay_float32(spec):
    opt, got = run(spec, dtype=np.float32)
    _, want = run(spec)
    for name, slots in opt._slots.items():
        for s in slots:
            assert s.dtype == np.float32, name
    for a, b in zip(got[-1], want[-1], strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_non_contiguous_parameter_is_updated_in_place():
    opt = make_optimizer({"type": "sgd", "learning_rate": 1.0})
    base = np.zeros((3, 4))
    view = base[:, ::2]
    opt.step([view], [np.ones((3, 2))])
    assert np.all(base[:, ::2] == -1.0) and np.all(base[:, 1::2] == 0.0)


def test_none_gradient_skips_parameter_and_errors():
    opt = make_optimizer("adam")
    a, b = np.ones(2), np.ones(3)
    opt.step([a, b], [None, np.ones(3)])
    assert np.all(a == 1.0) and np.all(b < 1.0) and opt.slot("momentum", 0) is None
    with pytest.raises(ValueError, match="shape"):
        opt.step([a], [np.ones(3)])
    with pytest.raises(ValueError, match="2 parameters and 1 gradients"):
        opt.step([a, b], [np.ones(2)])


# --------------------------------------------------------------------------- state round trip


ROUND_TRIP = [c[0] for c in CASES] + [
    {"type": "adamw", "clipnorm": 0.3, "decay": 0.1},
    {"type": "sgd", "momentum": 0.9, "learning_rate": {"type": "cosine_decay", "initial_learning_rate": 0.1,
                                                        "decay_steps": 5, "warmup_target": 0.3, "warmup_steps": 2}},
]


@pytest.mark.parametrize("spec", ROUND_TRIP, ids=[str(s) for s in ROUND_TRIP])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_continues_identically(spec, dtype):
    a = make_optimizer(spec)
    pa = [p.astype(dtype) for p in P0]
    for grads in GRADS[:2]:
        a.step(pa, [g.astype(dtype) for g in grads])
    state = a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    b = make_optimizer(spec)
    b.load_state_dict({k: v.copy() for k, v in state.items()})
    pb = [p.copy() for p in pa]
    assert b.iterations == a.iterations == 2 and b.current_lr() == a.current_lr()
    for grads in GRADS[2:] + GRADS[:2]:
        a.step(pa, [g.astype(dtype) for g in grads])
        b.step(pb, [g.astype(dtype) for g in grads])
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x, y)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_state_dict_keeps_a_learning_rate_set_over_a_schedule():
    spec = {"type": "sgd", "learning_rate": {"type": "exponential_decay", "initial_learning_rate": 1.0,
                                             "decay_steps": 1, "decay_rate": 0.5}}
    a = make_optimizer(spec)
    a.step([np.zeros(1)], [np.ones(1)])
    a.learning_rate = 0.01
    b = make_optimizer(spec)
    b.load_state_dict(a.state_dict())
    assert b.schedule is None and b.learning_rate == 0.01 and b.iterations == 1
    c = make_optimizer(spec)
    c.load_state_dict(make_optimizer(spec).state_dict())
    assert c.schedule is not None


def test_load_state_dict_rejects_foreign_state():
    a = make_optimizer("adam")
    a.step([np.zeros(2)], [np.ones(2)])
    with pytest.raises(ValueError, match="does not belong"):
        make_optimizer("sgd").load_state_dict(a.state_dict())
    b = make_optimizer("adam")
    b.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="elements"):
        b.step([np.zeros(3)], [np.ones(3)])


def test_make_optimizer_names_and_defaults():
    assert make_optimizer("adam").learning_rate == 0.001
    assert make_optimizer("sgd").learning_rate == 0.01
    assert make_optimizer({"type": "adamw"}).weight_decay == 0.004
    assert make_optimizer({"type": "RMSprop", "lr": 0.5}).learning_rate == 0.5
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adum")
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer({"type": "sgd", "momentum": 1.5})
