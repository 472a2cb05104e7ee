"""Losses: Keras values on hand-computed cases, numpy formulas, float64 gradient checks, stability."""

import zlib

import numpy as np
import pytest

from layerforge.engine.losses import loss_name_for_accuracy, make_loss

EPS = 1e-7
A = np.array([[0.0, 1.0], [0.0, 0.0]])
B = np.array([[0.6, 0.4], [0.4, 0.6]])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --------------------------------------------------------------------------- hand-computed (Keras doc values)

HAND = [
    ("mse", [[0, 1], [0, 0]], [[1, 1], [1, 0]], [0.5, 0.5]),
    ("mae", [[0, 1], [0, 0]], [[1, 1], [1, 0]], [0.5, 0.5]),
    ("mape", [[2, 1], [2, 3]], [[1, 1], [1, 0]], [25.0, 75.0]),
    ("msle", [[0, 1], [0, 0]], [[1, 1], [1, 0]], [np.log(2.0) ** 2 / 2, np.log(2.0) ** 2 / 2]),
    ("hinge", A, B, [1.1, 1.5]),  # {0,1} labels become {-1,1}
    ("squared_hinge", A, B, [1.46, 2.26]),
    ("categorical_hinge", A, B, [1.2, 1.6]),
    ("binary_crossentropy", A, B, [0.9162907, 0.7135581]),
    ("categorical_crossentropy", [[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]], [0.0512933, 2.3025851]),
    ("kld", A, B, [np.log(1 / 0.4) + EPS * np.log(EPS / 0.6), EPS * np.log(EPS / 0.4) + EPS * np.log(EPS / 0.6)]),
    ("poisson", [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1.0 - 0.5 * np.log(1 + EPS), -0.0]),
    ("cosine_similarity", [[0, 1], [1, 1], [1, 1]], [[1, 0], [1, 1], [-1, -1]], [0.0, -1.0, 1.0]),
    ("huber", A, B, [(0.18 + 0.18) / 2, (0.08 + 0.18) / 2]),
    ("log_cosh", [[0, 1], [0, 0]], [[1, 1], [0, 0]], [np.log(np.cosh(1.0)) / 2, 0.0]),
]


@pytest.mark.parametrize("name,t,p,expected", HAND, ids=[h[0] for h in HAND])
def test_hand_computed(name, t, p, expected):
    v = make_loss(name).forward(np.array(t, dtype=np.float64), np.array(p, dtype=np.float64))
    np.testing.assert_allclose(v, expected, rtol=1e-6, atol=1e-7)


def test_hand_computed_keras_means():
    # the batch means printed in the Keras docs
    assert make_loss("huber").forward(A, B).mean() == pytest.approx(0.155)
    assert make_loss("hinge").forward(A, B).mean() == pytest.approx(1.3)
    assert make_loss("squared_hinge").forward(A, B).mean() == pytest.approx(1.86)
    assert make_loss("categorical_hinge").forward(A, B).mean() == pytest.approx(1.4)
    assert make_loss("kld").forward(A, B).mean() == pytest.approx(0.458, abs=1e-3)
    assert make_loss("mape").forward(np.array([[2.0, 1], [2, 3]]), np.array([[1.0, 1], [1, 0]])).mean() == 50.0
    assert make_loss("log_cosh").forward(np.array([[0.0, 1], [0, 0]]), np.array([[1.0, 1], [0, 0]])).mean() \
        == pytest.approx(0.108, abs=1e-3)


def test_sparse_hand_computed_and_label_shapes():
    loss = make_loss("sparse_categorical_crossentropy")
    p = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    expected = [-np.log(0.95), -np.log(0.1)]
    np.testing.assert_allclose(loss.forward(np.array([1, 2]), p), expected, rtol=1e-7)
    np.testing.assert_allclose(loss.forward(np.array([[1], [2]]), p), expected, rtol=1e-7)
    np.testing.assert_allclose(loss.forward(np.array([1.0, 2.0]), p), expected, rtol=1e-7)  # float ids
    assert loss.expects_sparse and not make_loss("categorical_crossentropy").expects_sparse
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 2\]"):
        loss.forward(np.array([1, 3]), p)
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        loss.forward(np.eye(3)[[1, 2]], p)
    with pytest.raises(ValueError, match="integer class ids"):
        loss.forward(np.array([0.5, 1.0]), p)


def test_shape_alignment_and_errors():
    loss = make_loss("mse")
    p = np.array([[0.5], [1.0]])
    np.testing.assert_allclose(loss.forward(np.array([1.0, 1.0]), p), [0.25, 0.0])  # (B,) vs (B, 1)
    with pytest.raises(ValueError, match="do not match"):
        loss.forward(np.zeros((2, 3)), np.zeros((2, 2)))


# --------------------------------------------------------------------------- numpy formulas on random arrays

def _formulas():
    def cce(t, p):
        q = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
        return -(t * np.log(q)).sum(-1)

    def hinge_t(t):
        return 2 * t - 1 if np.all((t == 0) | (t == 1)) else t

    def l2n(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), EPS)

    return {
        "mean_squared_error": lambda t, p: ((t - p) ** 2).mean(-1),
        "mean_absolute_error": lambda t, p: np.abs(t - p).mean(-1),
        "mean_absolute_percentage_error": lambda t, p: 100 * (np.abs(t - p) / np.maximum(np.abs(t), EPS)).mean(-1),
        "mean_squared_logarithmic_error": lambda t, p: (
            (np.log1p(np.maximum(p, EPS)) - np.log1p(np.maximum(t, EPS))) ** 2).mean(-1),
        "hinge": lambda t, p: np.maximum(1 - hinge_t(t) * p, 0).mean(-1),
        "squared_hinge": lambda t, p: (np.maximum(1 - hinge_t(t) * p, 0) ** 2).mean(-1),
        "categorical_hinge": lambda t, p: np.maximum(((1 - t) * p).max(-1) - (t * p).sum(-1) + 1, 0),
        "binary_crossentropy": lambda t, p: -(t * np.log(np.clip(p, EPS, 1 - EPS))
                                              + (1 - t) * np.log(1 - np.clip(p, EPS, 1 - EPS))).mean(-1),
        "categorical_crossentropy": cce,
        "kl_divergence": lambda t, p: (np.clip(t, EPS, 1) * np.log(np.clip(t, EPS, 1) / np.clip(p, EPS, 1))).sum(-1),
        "poisson": lambda t, p: (p - t * np.log(p + EPS)).mean(-1),
        "cosine_similarity": lambda t, p: -(l2n(t) * l2n(p)).sum(-1),
        "huber": lambda t, p: np.where(np.abs(p - t) <= 1, 0.5 * (p - t) ** 2, np.abs(p - t) - 0.5).mean(-1),
        "log_cosh": lambda t, p: np.log(np.cosh(p - t)).mean(-1),
    }


@pytest.mark.parametrize("name", sorted(_formulas()))
def test_random_against_numpy_formula(name):
    rng = np.random.default_rng(1)
    shape = (3, 2, 5)
    p = rng.uniform(0.02, 0.98, shape)
    if name in ("hinge", "squared_hinge", "categorical_hinge", "binary_crossentropy"):
        t = rng.integers(0, 2, shape).astype(np.float64)
    elif name in ("huber", "log_cosh", "cosine_similarity", "mean_absolute_percentage_error"):
        t = rng.normal(size=shape)
        p = rng.normal(size=shape) * 2
    else:
        t = rng.uniform(0, 1, shape)
    if name == "categorical_hinge":
        t = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
    v = make_loss(name).forward(t, p)
    assert v.shape == shape[:-1]
    np.testing.assert_allclose(v, _formulas()[name](t, p), rtol=1e-10, atol=1e-12)


def test_hinge_labels_minus_one_one_equal_zero_one():
    rng = np.random.default_rng(2)
    t01 = rng.integers(0, 2, (4, 3)).astype(float)
    p = rng.normal(size=(4, 3))
    for name in ("hinge", "squared_hinge"):
        loss = make_loss(name)
        np.testing.assert_allclose(loss.forward(t01, p), loss.forward(2 * t01 - 1, p))
        np.testing.assert_allclose(loss.backward(t01, p, np.ones(4)), loss.backward(2 * t01 - 1, p, np.ones(4)))


def test_label_smoothing():
    t = np.array([[0.0, 1.0, 0.0]])
    p = np.array([[0.2, 0.5, 0.3]])
    ls = 0.3
    expected = -(((1 - ls) * t + ls / 3) * np.log(p)).sum()
    got = make_loss({"type": "categorical_crossentropy", "label_smoothing": ls}).forward(t, p)
    assert got[0] == pytest.approx(expected, rel=1e-12)
    tb = (1 - ls) * t + 0.5 * ls
    expected_b = -(tb * np.log(p) + (1 - tb) * np.log(1 - p)).mean()
    got_b = make_loss({"type": "binary_crossentropy", "label_smoothing": ls}).forward(t, p)
    assert got_b[0] == pytest.approx(expected_b, rel=1e-12)


def test_cce_renormalises_probabilities():
    t = np.array([[0.0, 1.0, 0.0]])
    loss = make_loss("categorical_crossentropy")
    assert loss.forward(t, np.array([[1.0, 2.0, 1.0]]))[0] == pytest.approx(-np.log(0.5))


# --------------------------------------------------------------------------- gradients


def _case(spec, rng, shape=(3, 4)):
    """(loss, y_true, y_pred) in float64, away from kinks and clip boundaries."""
    name = spec if isinstance(spec, str) else spec["type"]
    n = shape[-1]
    logits = isinstance(spec, dict) and spec.get("from_logits")
    if name in ("mse", "mae", "huber", "log_cosh", "cosine_similarity"):
        t = rng.normal(size=shape)
        p = t + rng.choice([-1, 1], shape) * rng.uniform(0.1, 2.0, shape)
        if name == "huber":  # keep clear of |e| == delta
            p = np.where(np.abs(np.abs(p - t) - spec["delta"]) < 0.05, p + 0.2, p)
    elif name == "mape":
        t = rng.choice([-1, 1], shape) * rng.uniform(0.5, 2.0, shape)
        p = t + rng.choice([-1, 1], shape) * rng.uniform(0.1, 1.0, shape)
    elif name in ("msle", "poisson"):
        t, p = rng.uniform(0, 3, shape), rng.uniform(0.2, 3, shape)
    elif name in ("hinge", "squared_hinge"):
        t = rng.integers(0, 2, shape).astype(float)
        p = rng.choice([-1, 1], shape) * rng.uniform(0.1, 0.8, shape) + rng.choice([0.0, 1.5], shape)
        p = np.where(np.abs(1 - (2 * t - 1) * p) < 0.05, p + 0.1, p)
    elif name == "categorical_hinge":
        t = np.eye(n)[rng.integers(0, n, shape[:-1])]
        p = rng.permuted(np.tile(np.linspace(0.1, 1.0, n), shape[:-1] + (1,)), axis=-1)  # distinct: no ties
    elif name == "binary_crossentropy":
        t = rng.uniform(0, 1, shape)
        p = rng.normal(size=shape) * 3 if logits else rng.uniform(0.05, 0.95, shape)
    elif name in ("categorical_crossentropy", "kld"):
        t = softmax(rng.normal(size=shape))
        p = rng.normal(size=shape) * 2 if logits else rng.uniform(0.1, 1.0, shape)
        if name == "kld":
            p = p / p.sum(-1, keepdims=True)
    elif name == "sparse_categorical_crossentropy":
        t = rng.integers(0, n, shape[:-1])
        p = rng.normal(size=shape) * 2 if logits else rng.uniform(0.1, 1.0, shape)
    else:  # pragma: no cover
        raise AssertionError(name)
    return make_loss(spec), t, p


GRAD_SPECS = ["mse", "mae", "mape", "msle", "hinge", "squared_hinge", "categorical_hinge", "poisson", "kld",
              "cosine_similarity", "log_cosh", {"type": "huber", "delta": 1.0}, {"type": "huber", "delta": 0.3},
              {"type": "binary_crossentropy"}, {"type": "binary_crossentropy", "from_logits": True},
              {"type": "binary_crossentropy", "label_smoothing": 0.2},
              {"type": "binary_crossentropy", "from_logits": True, "label_smoothing": 0.1},
              {"type": "categorical_crossentropy"}, {"type": "categorical_crossentropy", "from_logits": True},
              {"type": "categorical_crossentropy", "label_smoothing": 0.1},
              {"type": "categorical_crossentropy", "from_logits": True, "label_smoothing": 0.2},
              {"type": "sparse_categorical_crossentropy"},
              {"type": "sparse_categorical_crossentropy", "from_logits": True}]


@pytest.mark.parametrize("spec", GRAD_SPECS, ids=lambda s: s if isinstance(s, str) else "-".join(map(str, s.values())))
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 5)])
def test_gradient_central_differences(spec, shape):
    rng = np.random.default_rng(zlib.crc32(f"{spec}{shape}".encode()))
    loss, t, p = _case(spec, rng, shape)
    w = rng.uniform(0.5, 1.5, shape[:-1])
    g = loss.backward(t, p, w)
    assert g.shape == p.shape and g.dtype == np.float64
    h = 1e-6
    num = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        pp, pm = p.copy(), p.copy()
        pp[idx] += h
        pm[idx] -= h
        num[idx] = (np.sum(w * loss.forward(t, pp)) - np.sum(w * loss.forward(t, pm))) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)


def test_gradient_zero_outside_clip_range():
    loss = make_loss("binary_crossentropy")
    t = np.array([[1.0, 0.0, 1.0]])
    p = np.array([[0.0, 1.0, 0.5]])
    v, g = loss.forward(t, p), loss.backward(t, p, np.ones(1))
    assert np.all(np.isfinite(v)) and v[0] == pytest.approx((2 * -np.log(EPS) + -np.log(0.5)) / 3, rel=1e-6)
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 2] == pytest.approx(-2 / 3)
    kld = make_loss("kld")
    assert kld.backward(np.array([[0.5, 0.5]]), np.array([[0.0, 1.5]]), np.ones(1)).tolist() == [[0.0, 0.0]]


def test_mae_subgradient_zero_at_zero():
    g = make_loss("mae").backward(np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]]), np.ones(1))
    assert g.tolist() == [[0.0, 0.5]]


def test_cosine_axis_argument():
    rng = np.random.default_rng(3)
    t, p = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    loss = make_loss({"type": "cosine_similarity", "axis": 1})
    v = loss.forward(t, p)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    pn = p / np.linalg.norm(p, axis=1, keepdims=True)
    np.testing.assert_allclose(v, -(tn * pn).sum(1))
    w = rng.uniform(size=v.shape)
    g = loss.backward(t, p, w)
    h = 1e-6
    idx = (1, 2, 3)
    pp, pm = p.copy(), p.copy()
    pp[idx] += h
    pm[idx] -= h
    assert g[idx] == pytest.approx((np.sum(w * loss.forward(t, pp)) - np.sum(w * loss.forward(t, pm))) / (2 * h),
                                   rel=1e-5)


# --------------------------------------------------------------------------- logits vs probabilities, stability


def test_from_logits_matches_probabilities():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(5, 4))
    tb = rng.integers(0, 2, (5, 4)).astype(float)
    tc = np.eye(4)[rng.integers(0, 4, 5)]
    labels = rng.integers(0, 4, 5)
    for ls in (0.0, 0.2):
        np.testing.assert_allclose(
            make_loss({"type": "binary_crossentropy", "from_logits": True, "label_smoothing": ls}).forward(tb, z),
            make_loss({"type": "binary_crossentropy", "label_smoothing": ls}).forward(tb, sigmoid(z)), rtol=1e-6)
        np.testing.assert_allclose(
            make_loss({"type": "categorical_crossentropy", "from_logits": True, "label_smoothing": ls}).forward(tc, z),
            make_loss({"type": "categorical_crossentropy", "label_smoothing": ls}).forward(tc, softmax(z)), rtol=1e-6)
    np.testing.assert_allclose(
        make_loss({"type": "sparse_categorical_crossentropy", "from_logits": True}).forward(labels, z),
        make_loss("sparse_categorical_crossentropy").forward(labels, softmax(z)), rtol=1e-6)
    # chain rule: d/dz of the probability version equals the logits gradient
    w = np.ones(5)
    gp = make_loss("categorical_crossentropy").backward(tc, softmax(z), w)
    s = softmax(z)
    gz_chain = s * (gp - (gp * s).sum(-1, keepdims=True))
    np.testing.assert_allclose(make_loss({"type": "categorical_crossentropy", "from_logits": True}).backward(tc, z, w),
                               gz_chain, rtol=1e-6, atol=1e-9)
    gb = make_loss("binary_crossentropy").backward(tb, sigmoid(z), w) * sigmoid(z) * (1 - sigmoid(z))
    np.testing.assert_allclose(make_loss({"type": "binary_crossentropy", "from_logits": True}).backward(tb, z, w),
                               gb, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_stable(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-500.0, 500.0, 88.0], [1e30, -1e30, 3.0]], dtype=dtype)
    tb = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=dtype)
    for spec, t in [({"type": "binary_crossentropy", "from_logits": True}, tb),
                    ({"type": "categorical_crossentropy", "from_logits": True}, np.eye(3, dtype=dtype)),
                    ({"type": "sparse_categorical_crossentropy", "from_logits": True}, np.array([1, 0, 2])),
                    ("log_cosh", tb), ("binary_crossentropy", tb)]:
        loss = make_loss(spec)
        pred = z if "log_cosh" != spec and isinstance(spec, dict) else np.clip(z, -1e4, 1e4)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            v = loss.forward(t, pred)
            g = loss.backward(t, pred, np.ones(3, dtype=dtype))
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)), spec
        assert v.dtype == dtype and g.dtype == dtype
    # a confidently wrong logit costs about |z|
    v = make_loss({"type": "binary_crossentropy", "from_logits": True}).forward(np.array([[0.0]]), np.array([[1e4]]))
    assert v[0] == pytest.approx(1e4)


@pytest.mark.parametrize("spec", GRAD_SPECS, ids=lambda s: s if isinstance(s, str) else "-".join(map(str, s.values())))
def test_float32_stays_float32(spec):
    loss, t, p = _case(spec, np.random.default_rng(5))
    p32 = p.astype(np.float32)
    t32 = t if np.issubdtype(np.asarray(t).dtype, np.integer) else t.astype(np.float32)
    v = loss.forward(t32, p32)
    g = loss.backward(t32, p32, np.ones(v.shape, np.float32))
    assert v.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(v, loss.forward(t, p), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- factory


def test_names_and_aliases():
    assert make_loss("mse").name == "mean_squared_error"
    assert make_loss({"type": "logcosh"}).name == "log_cosh"
    assert make_loss({"type": "huber", "delta": 2.0}).delta == 2.0
    assert make_loss({"type": "categorical_crossentropy", "from_logits": True}).spec == {
        "type": "categorical_crossentropy", "from_logits": True, "label_smoothing": 0.0}
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("mean_sqared_error")


def test_loss_name_for_accuracy():
    assert loss_name_for_accuracy({"type": "sparse_categorical_crossentropy"}) == "sparse_categorical_accuracy"
    assert loss_name_for_accuracy({"type": "binary_crossentropy", "from_logits": True}) == "binary_accuracy"
    assert loss_name_for_accuracy({"type": "categorical_crossentropy"}) == "categorical_accuracy"
    assert loss_name_for_accuracy("mse", output_shape=(1,)) == "binary_accuracy"
    assert loss_name_for_accuracy("mse", output_shape=(3,)) == "categorical_accuracy"
