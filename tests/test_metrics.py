"""Metrics: accuracy resolution and names, weighted streaming means, top-k, regression metrics,
precision/recall/F1, AUC against a brute-force pairwise computation, the loss metric."""

import numpy as np
import pytest

from layerforge.engine.losses import make_loss
from layerforge.engine.metrics import AUC, LossMetric, make_metric


def value(spec, t, p, w=None, **kw):
    m = make_metric(spec, **kw)
    m.update(np.asarray(t), np.asarray(p), w)
    return m.result()


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("loss,shape,cls", [
    ({"type": "sparse_categorical_crossentropy"}, (3,), "SparseCategoricalAccuracy"),
    ({"type": "binary_crossentropy"}, (4,), "BinaryAccuracy"),
    ({"type": "mean_squared_error"}, (1,), "BinaryAccuracy"),
    ({"type": "categorical_crossentropy"}, (3,), "CategoricalAccuracy"),
    (None, (5,), "CategoricalAccuracy"),
])
def test_accuracy_resolution(loss, shape, cls):
    m = make_metric("accuracy", loss_spec=loss, output_shape=shape)
    assert type(m).__name__ == cls and m.name == "accuracy"
    assert make_metric("acc", loss_spec=loss, output_shape=shape).name == "accuracy"


def test_history_names():
    names = {s: make_metric(s, output_shape=(3,)).name for s in
             ["mae", "mse", "rmse", "mape", "auc", "precision", "recall", "f1", "top_k", "binary_accuracy"]}
    assert names == {"mae": "mean_absolute_error", "mse": "mean_squared_error", "rmse": "root_mean_squared_error",
                     "mape": "mean_absolute_percentage_error", "auc": "auc", "precision": "precision",
                     "recall": "recall", "f1": "f1_score", "top_k": "top_k_categorical_accuracy",
                     "binary_accuracy": "binary_accuracy"}
    assert make_metric({"type": "top_k_categorical_accuracy", "k": 2}).k == 2
    with pytest.raises(ValueError, match="unknown metric"):
        make_metric("acuracy")


def test_binary_accuracy_threshold_and_weights():
    t = np.array([[1], [1], [0], [0]])
    p = np.array([[0.98], [0.4], [0.6], [0.1]])
    assert value("binary_accuracy", t, p) == 0.5
    assert value({"type": "binary_accuracy", "threshold": 0.3}, t, p) == 0.75
    assert value({"type": "binary_accuracy", "threshold": 0.7}, t, p) == 0.75
    w = np.array([1.0, 0.0, 0.5, 2.0])
    assert value("binary_accuracy", t, p, w) == pytest.approx((1 + 2) / 3.5)
    # (B,) targets for a (B, 1) output; multi-label outputs average over the last axis
    assert value("binary_accuracy", t[:, 0], p) == 0.5
    assert value("binary_accuracy", [[1, 0], [1, 1]], [[0.9, 0.2], [0.3, 0.8]]) == 0.75


def test_categorical_and_sparse_accuracy_weighted_and_streaming():
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]])
    labels = np.array([1, 2, 2, 0])
    onehot = np.eye(3)[labels]
    w = np.array([2.0, 1.0, 1.0, 0.0])
    assert value("categorical_accuracy", onehot, p) == 0.5
    assert value("categorical_accuracy", onehot, p, w) == pytest.approx(3 / 4)
    assert value("sparse_categorical_accuracy", labels, p, w) == pytest.approx(3 / 4)
    assert value("sparse_categorical_accuracy", labels[:, None], p) == 0.5
    assert value("categorical_accuracy", labels, p) == 0.5  # integer ids accepted
    m = make_metric("accuracy", loss_spec={"type": "sparse_categorical_crossentropy"}, output_shape=(3,))
    m.update(labels[:2], p[:2], w[:2])
    m.update(labels[2:], p[2:], w[2:])
    assert m.result() == pytest.approx(3 / 4)
    m.reset()
    assert m.result() == 0.0
    m.update(labels, p)
    assert m.result() == 0.5


def test_temporal_accuracy_with_per_sample_weights():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(2, 3, 4))
    labels = rng.integers(0, 4, (2, 3))
    correct = (p.argmax(-1) == labels).astype(float)
    w = np.array([1.0, 3.0])
    assert value("sparse_categorical_accuracy", labels, p, w) == pytest.approx(
        (correct * w[:, None]).sum() / (3 * w.sum()))


def test_top_k():
    p = np.array([[0.1, 0.5, 0.3, 0.1], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    labels = np.array([2, 3, 0])
    assert value({"type": "top_k_categorical_accuracy", "k": 2}, np.eye(4)[labels], p) == pytest.approx(2 / 3)
    assert value({"type": "sparse_top_k_categorical_accuracy", "k": 2}, labels, p) == pytest.approx(2 / 3)
    assert value({"type": "sparse_top_k_categorical_accuracy", "k": 1}, labels, p) == pytest.approx(1 / 3)
    assert value("top_k_categorical_accuracy", np.eye(4)[labels], p) == 1.0  # k=5 > classes
    assert value({"type": "sparse_top_k_categorical_accuracy", "k": 2}, labels, p, [0.0, 1.0, 1.0]) == 0.5


# --------------------------------------------------------------------------- regression metrics


def test_regression_metrics():
    t = np.array([[0.0, 1.0], [2.0, 4.0]])
    p = np.array([[1.0, 1.0], [1.0, 2.0]])
    assert value("mae", t, p) == pytest.approx((0.5 + 1.5) / 2)
    assert value("mse", t, p) == pytest.approx((0.5 + 2.5) / 2)
    assert value("rmse", t, p) == pytest.approx(np.sqrt(6 / 4))
    assert value("mape", t[1:], p[1:]) == pytest.approx(50.0)
    w = np.array([1.0, 3.0])
    assert value("mae", t, p, w) == pytest.approx((0.5 + 3 * 1.5) / 4)
    assert value("rmse", t, p, w) == pytest.approx(np.sqrt((1 + 0 + 3 * (1 + 4)) / 8))


# --------------------------------------------------------------------------- precision / recall / F1


def test_precision_recall_f1_binary():
    t = np.array([1, 1, 0, 0, 1, 0])[:, None]
    p = np.array([0.9, 0.2, 0.7, 0.1, 0.6, 0.4])[:, None]
    # tp = 2 (0.9, 0.6), fp = 1 (0.7), fn = 1 (0.2)
    assert value("precision", t, p) == pytest.approx(2 / 3)
    assert value("recall", t, p) == pytest.approx(2 / 3)
    assert value("f1_score", t, p) == pytest.approx(2 / 3)
    w = np.array([1.0, 1.0, 3.0, 1.0, 1.0, 1.0])
    assert value("precision", t, p, w) == pytest.approx(2 / 5)
    assert value("f1_score", t, p, w) == pytest.approx(4 / (4 + 3 + 1))
    assert value({"type": "recall", "threshold": 0.15}, t, p) == 1.0
    assert value("precision", t, np.zeros_like(p)) == 0.0  # no positive prediction: 0, not NaN


def test_f1_multiclass_micro_argmax_and_precision_elementwise():
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.4, 0.45, 0.15]])
    labels = np.array([0, 1, 1])
    # argmax one-hot: correct, wrong, correct -> micro tp = 2, fp = 1, fn = 1
    assert value("f1_score", labels, p) == pytest.approx(2 / 3)
    assert value("f1_score", np.eye(3)[labels], p) == pytest.approx(2 / 3)
    # precision / recall threshold every element (> 0.5, Keras): only the 0.6 is a positive prediction
    assert value("precision", labels, p) == 1.0
    assert value("recall", labels, p) == pytest.approx(1 / 3)
    # an explicit threshold switches F1 to elementwise (multi-label)
    assert value({"type": "f1_score", "threshold": 0.35}, labels, p) == pytest.approx(4 / 7)  # tp 2, fp 2, fn 1


# --------------------------------------------------------------------------- AUC


def brute_force_auc(t, s, w):
    pos, neg = t == 1, t == 0
    num = den = 0.0
    for i in np.flatnonzero(pos):
        for j in np.flatnonzero(neg):
            pair = w[i] * w[j]
            num += pair * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
            den += pair
    return num / den


@pytest.mark.parametrize("weighted", [False, True])
def test_auc_matches_pairwise(weighted):
    rng = np.random.default_rng(7)
    n_thr = 101
    # predictions at bucket centres (k + 0.5) / 100: the bucketed AUC is then exact
    k = rng.integers(0, 100, 60)
    s = (k + 0.5) / 100
    t = (rng.uniform(size=60) < 0.3 + 0.5 * s).astype(int)
    w = rng.uniform(0.2, 2.0, 60) if weighted else np.ones(60)
    m = make_metric({"type": "auc", "num_thresholds": n_thr})
    m.update(t[:25, None], s[:25, None], w[:25])
    m.update(t[25:, None], s[25:, None], w[25:])
    assert m.result() == pytest.approx(brute_force_auc(t, s, w), abs=1e-12)


def test_auc_default_thresholds_and_edges():
    m = AUC()
    assert m.thresholds[0] == pytest.approx(-1e-7) and m.thresholds[-1] == pytest.approx(1 + 1e-7)
    assert len(m.thresholds) == 200 and m.thresholds[1] == pytest.approx(1 / 199)
    assert value("auc", [[0], [0], [1], [1]], [[0.1], [0.4], [0.35], [0.8]]) == pytest.approx(0.75)
    assert value("auc", [[0], [1]], [[0.2], [0.9]]) == 1.0
    assert value("auc", [[0], [1]], [[0.9], [0.2]]) == 0.0
    assert value("auc", [[1], [1]], [[0.9], [0.2]]) == 0.0  # no negatives: Keras divide_no_nan -> 0
    # multi-class outputs with integer targets are one-hot and flattened
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    assert value("auc", [0, 1], p) == 1.0


# --------------------------------------------------------------------------- loss metric


def test_loss_metric_mean_over_batches():
    loss = make_loss("mse")
    m = LossMetric(loss, name="val_loss")
    t = np.array([[0.0], [1.0], [2.0]])
    p = np.array([[1.0], [1.0], [0.0]])
    m.update(t[:2], p[:2])
    m.update(t[2:], p[2:])
    assert m.name == "val_loss" and m.result() == pytest.approx(5 / 3)
    m.reset()
    w = np.array([2.0, 1.0, 0.5])
    m.update(t, p, w)
    # Keras sum_over_batch_size: sum(w * values) / number of values
    assert m.result() == pytest.approx((2 * 1 + 0 + 0.5 * 4) / 3)
    sparse = LossMetric({"type": "sparse_categorical_crossentropy"})
    sparse.update(np.array([0, 1]), np.array([[0.5, 0.5], [0.25, 0.75]]))
    assert sparse.name == "loss" and sparse.result() == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)
