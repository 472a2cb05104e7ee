"""Streaming, sample-weighted metrics (Keras 3 names and formulas).

``make_metric(spec, *, loss_spec, output_shape)`` builds a :class:`Metric`; ``spec`` is a name or
``{"type": name, **args}`` as normalised by ``config.training.normalize_metric``.  A metric has
``name`` (its history key), ``reset()``, ``update(y_true, y_pred, sample_weight=None)`` and
``result() -> float``.  Totals are kept in float64.

History keys: ``accuracy`` stays ``accuracy`` (whatever variant it resolves to); every other metric
uses its canonical name (``mae`` -> ``mean_absolute_error``).  ``accuracy`` resolves as Keras:
``sparse_categorical_accuracy`` when the loss is sparse categorical cross-entropy,
``binary_accuracy`` when the loss is binary cross-entropy or the output's last dimension is 1,
``categorical_accuracy`` otherwise.

Targets: the categorical accuracies, top-k, precision, recall, F1 and AUC also accept integer class
ids (shape ``y_pred.shape[:-1]`` or with a trailing 1) for a multi-unit output, and one-hot them, so
``metrics: [top_k_categorical_accuracy]`` works with a sparse loss.

Sample weights have the shape of the batch axis (or any leading part of the values' shape) and are
broadcast over the remaining axes; a weighted mean is ``sum(w·v) / sum(w)`` over the broadcast
weights (Keras ``Mean``).

Choices worth knowing:

* ``precision`` / ``recall``: Keras — every element of ``y_pred`` above ``threshold`` (0.5) counts as a
  positive prediction, compared with the (one-hot) targets elementwise, micro-averaged.
* ``f1_score``: for a 1-unit output, binary with ``threshold`` (0.5).  For a multi-unit output the
  prediction is the one-hot argmax (Keras ``F1Score(threshold=None)``) and the score is
  micro-averaged over classes (for single-label data this equals the accuracy); an explicit
  ``threshold`` in the spec switches a multi-unit output to elementwise thresholding (multi-label).
* ``auc``: ROC AUC from ``num_thresholds`` (200) bucket counts with Keras' thresholds
  (``-1e-7, 1/(n-1), ..., (n-2)/(n-1), 1+1e-7``; a prediction is positive when ``> threshold``),
  summed with the trapezoid rule — exactly the pairwise (Mann-Whitney) AUC of predictions quantised
  to those buckets.  Multi-unit outputs are flattened (Keras ``multi_label=False``).
* ``root_mean_squared_error``: sqrt of the weighted mean of the elementwise squared error.
"""

from __future__ import annotations

import numpy as np

from .losses import EPSILON, Loss, align_target_shape, loss_name_for_accuracy, make_loss

# --------------------------------------------------------------------------- helpers


def _pred(y_pred) -> np.ndarray:
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 0:
        y_pred = y_pred.reshape(1)
    return y_pred


def _is_sparse(y_true: np.ndarray, y_pred: np.ndarray) -> bool:
    """Integer class ids for a multi-unit output (not a tensor of y_pred's shape)."""
    if y_pred.shape[-1] <= 1 or y_true.shape == y_pred.shape:
        return False
    return y_true.shape == y_pred.shape[:-1] or (y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1)


def _labels(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    t = y_true[..., 0] if y_true.ndim == y_pred.ndim else y_true
    return np.rint(t).astype(np.int64) if not np.issubdtype(t.dtype, np.integer) else t


def _dense_targets(y_true, y_pred: np.ndarray) -> np.ndarray:
    """Targets with y_pred's shape: one-hot class ids, or squeeze/expand a trailing 1."""
    y_true = np.asarray(y_true)
    if _is_sparse(y_true, y_pred):
        labels = _labels(y_true, y_pred)
        out = np.zeros(y_pred.shape, dtype=np.float64)
        valid = (labels >= 0) & (labels < y_pred.shape[-1])
        np.put_along_axis(out, np.where(valid, labels, 0)[..., None].astype(np.intp),
                          valid[..., None].astype(np.float64), axis=-1)
        return out
    return align_target_shape(y_true, y_pred)


def _broadcast_weight(sample_weight, shape) -> np.ndarray:
    if sample_weight is None:
        return np.ones(shape, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    while w.ndim > len(shape) and w.shape[-1] == 1:  # e.g. (B, 1) weights for (B,) values
        w = w[..., 0]
    while w.ndim < len(shape):
        w = w[..., None]
    return np.broadcast_to(w, shape)


# --------------------------------------------------------------------------- base classes


class Metric:
    """A streaming metric: ``reset``, ``update(y_true, y_pred, sample_weight)``, ``result``."""

    name: str = ""

    def __init__(self, name: str | None = None):
        if name is not None:
            self.name = name
        self.reset()

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, y_true, y_pred, sample_weight=None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class MeanMetric(Metric):
    """Weighted mean of per-sample values ``values(y_true, y_pred)``."""

    def reset(self):
        self.total = 0.0
        self.count = 0.0

    def values(self, y_true, y_pred) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, y_true, y_pred, sample_weight=None):
        v = np.asarray(self.values(y_true, _pred(y_pred)), dtype=np.float64)
        w = _broadcast_weight(sample_weight, v.shape)
        self.total += float(np.sum(v * w))
        self.count += float(np.sum(w))

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


# --------------------------------------------------------------------------- accuracies


class BinaryAccuracy(MeanMetric):
    name = "binary_accuracy"

    def __init__(self, threshold: float = 0.5, name: str | None = None):
        self.threshold = float(threshold)
        super().__init__(name)

    def values(self, y_true, y_pred):
        t = _dense_targets(y_true, y_pred)
        return np.mean((y_pred > self.threshold) == (t > 0.5), axis=-1)


class CategoricalAccuracy(MeanMetric):
    name = "categorical_accuracy"

    def values(self, y_true, y_pred):
        y_true = np.asarray(y_true)
        if _is_sparse(y_true, y_pred):
            return _labels(y_true, y_pred) == np.argmax(y_pred, axis=-1)
        t = _dense_targets(y_true, y_pred)
        return np.argmax(t, axis=-1) == np.argmax(y_pred, axis=-1)


class SparseCategoricalAccuracy(CategoricalAccuracy):
    name = "sparse_categorical_accuracy"

    def values(self, y_true, y_pred):
        y_true = np.asarray(y_true)
        if y_true.shape == y_pred.shape and y_pred.shape[-1] > 1:  # one-hot given anyway
            return np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        return y_true == np.argmax(y_pred, axis=-1)


class TopKCategoricalAccuracy(MeanMetric):
    """The target class is among the k highest predictions (ties at the boundary count as in, as TF)."""

    name = "top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: str | None = None):
        self.k = int(k)
        super().__init__(name)

    def values(self, y_true, y_pred):
        y_true = np.asarray(y_true)
        if _is_sparse(y_true, y_pred) or (y_true.shape != y_pred.shape and y_pred.shape[-1] == 1):
            labels = _labels(y_true, y_pred)
        else:
            labels = np.argmax(_dense_targets(y_true, y_pred), axis=-1)
        n = y_pred.shape[-1]
        valid = (labels >= 0) & (labels < n)
        target = np.take_along_axis(y_pred, np.where(valid, labels, 0)[..., None].astype(np.intp), axis=-1)
        higher = np.sum(y_pred > target, axis=-1)
        return valid & (higher < self.k)


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    name = "sparse_top_k_categorical_accuracy"


# --------------------------------------------------------------------------- regression metrics


class MeanAbsoluteErrorMetric(MeanMetric):
    name = "mean_absolute_error"

    def values(self, y_true, y_pred):
        return np.mean(np.abs(y_pred - _dense_targets(y_true, y_pred)), axis=-1)


class MeanSquaredErrorMetric(MeanMetric):
    name = "mean_squared_error"

    def values(self, y_true, y_pred):
        return np.mean(np.square(y_pred - _dense_targets(y_true, y_pred)), axis=-1)


class MeanAbsolutePercentageErrorMetric(MeanMetric):
    name = "mean_absolute_percentage_error"

    def values(self, y_true, y_pred):
        t = np.asarray(_dense_targets(y_true, y_pred), dtype=np.float64)
        return 100.0 * np.mean(np.abs((t - y_pred) / np.maximum(np.abs(t), EPSILON)), axis=-1)


class RootMeanSquaredError(MeanMetric):
    name = "root_mean_squared_error"

    def values(self, y_true, y_pred):
        t = np.asarray(_dense_targets(y_true, y_pred), dtype=np.float64)
        return np.square(np.asarray(y_pred, dtype=np.float64) - t)

    def result(self) -> float:
        return float(np.sqrt(super().result()))


# --------------------------------------------------------------------------- confusion-matrix metrics


class _Confusion(Metric):
    def __init__(self, threshold: float = 0.5, name: str | None = None):
        self.threshold = float(threshold)
        super().__init__(name)

    def reset(self):
        self.tp = self.fp = self.fn = 0.0

    def _pred_pos(self, y_pred):
        return y_pred > self.threshold

    def update(self, y_true, y_pred, sample_weight=None):
        y_pred = _pred(y_pred)
        t = _dense_targets(y_true, y_pred) > 0.5
        p = self._pred_pos(y_pred)
        w = _broadcast_weight(sample_weight, y_pred.shape)
        self.tp += float(np.sum(w * (t & p)))
        self.fp += float(np.sum(w * (~t & p)))
        self.fn += float(np.sum(w * (t & ~p)))


class Precision(_Confusion):
    name = "precision"

    def result(self):
        d = self.tp + self.fp
        return self.tp / d if d else 0.0


class Recall(_Confusion):
    name = "recall"

    def result(self):
        d = self.tp + self.fn
        return self.tp / d if d else 0.0


class F1Score(_Confusion):
    name = "f1_score"

    def __init__(self, threshold: float | None = None, name: str | None = None):
        self.use_threshold = threshold is not None
        super().__init__(0.5 if threshold is None else threshold, name)

    def _pred_pos(self, y_pred):
        if y_pred.shape[-1] == 1 or self.use_threshold:
            return y_pred > self.threshold
        out = np.zeros(y_pred.shape, dtype=bool)
        np.put_along_axis(out, np.argmax(y_pred, axis=-1)[..., None], True, axis=-1)
        return out

    def result(self):
        d = 2.0 * self.tp + self.fp + self.fn
        return 2.0 * self.tp / d if d else 0.0


class AUC(Metric):
    name = "auc"

    def __init__(self, num_thresholds: int = 200, name: str | None = None):
        if int(num_thresholds) <= 1:
            raise ValueError(f"auc: num_thresholds must be > 1, not {num_thresholds}")
        self.num_thresholds = int(num_thresholds)
        n = self.num_thresholds
        inner = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
        self.thresholds = np.array([0.0 - EPSILON, *inner, 1.0 + EPSILON])
        super().__init__(name)

    def reset(self):
        # histogram of predictions by the number of thresholds they exceed (0..n)
        self.pos_hist = np.zeros(self.num_thresholds + 1)
        self.neg_hist = np.zeros(self.num_thresholds + 1)

    def update(self, y_true, y_pred, sample_weight=None):
        y_pred = _pred(y_pred)
        t = (_dense_targets(y_true, y_pred) > 0.5).ravel()
        w = _broadcast_weight(sample_weight, y_pred.shape).ravel()
        above = np.searchsorted(self.thresholds, np.asarray(y_pred, dtype=np.float64).ravel(), side="left")
        m = self.num_thresholds + 1
        self.pos_hist += np.bincount(above[t], weights=w[t], minlength=m)
        self.neg_hist += np.bincount(above[~t], weights=w[~t], minlength=m)

    def confusion(self):
        """tp, fp, fn, tn at every threshold (prediction > threshold is positive)."""
        tp = np.cumsum(self.pos_hist[::-1])[::-1][1:]
        fp = np.cumsum(self.neg_hist[::-1])[::-1][1:]
        fn = self.pos_hist.sum() - tp
        tn = self.neg_hist.sum() - fp
        return tp, fp, fn, tn

    def result(self):
        tp, fp, fn, tn = self.confusion()
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            fpr = np.where(fp + tn > 0, fp / (fp + tn), 0.0)
        return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0))


# --------------------------------------------------------------------------- loss as a metric


class LossMetric(Metric):
    """Mean of a loss's per-sample values over everything seen (Keras ``sum_over_batch_size``).

    ``result = sum(sample_weight · values) / number of values``: the number of values, not the sum
    of the weights, is the denominator, so it equals the batch-size-weighted mean of the training
    losses ``L = sum(weights · values)`` with ``weights = sample_weight / N``.
    """

    def __init__(self, loss, name: str = "loss"):
        self.loss = loss if isinstance(loss, Loss) else make_loss(loss)
        super().__init__(name)

    def reset(self):
        self.total = 0.0
        self.count = 0.0

    def update(self, y_true, y_pred, sample_weight=None):
        v = np.asarray(self.loss.forward(y_true, y_pred), dtype=np.float64)
        w = _broadcast_weight(sample_weight, v.shape)
        self.total += float(np.sum(v * w))
        self.count += float(v.size)

    def result(self):
        return self.total / self.count if self.count else 0.0


# --------------------------------------------------------------------------- factory

METRIC_CLASSES: dict[str, type[Metric]] = {cls.name: cls for cls in (
    BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy, MeanAbsoluteErrorMetric, MeanSquaredErrorMetric, RootMeanSquaredError,
    MeanAbsolutePercentageErrorMetric, AUC, Precision, Recall, F1Score)}


def make_metric(spec, *, loss_spec=None, output_shape=None) -> Metric:
    """Build a metric from a name or ``{"type": name, **args}`` (normalised if needed)."""
    from ..config.training import METRICS, normalize_metric

    if isinstance(spec, str) and spec not in METRICS or isinstance(spec, dict) and spec.get("type") not in METRICS:
        spec = normalize_metric(spec)
    if isinstance(spec, str):
        name, args = spec, {}
    else:
        args = dict(spec)
        name = args.pop("type")
    if name == "accuracy":
        variant = loss_name_for_accuracy(loss_spec, output_shape)
        kwargs = {"threshold": args["threshold"]} if variant == "binary_accuracy" and "threshold" in args else {}
        return METRIC_CLASSES[variant](name="accuracy", **kwargs)
    return METRIC_CLASSES[name](**args)
