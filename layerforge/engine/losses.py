"""Losses with their gradients (Keras 3 formulas and epsilons).

``make_loss(spec)`` takes a spec normalised by ``config.training.normalize_loss``
(``{"type": canonical_name, **args}``) and returns a :class:`Loss`.

* ``Loss.forward(y_true, y_pred)`` returns the per-sample values: every loss reduces the
  LAST axis (``values.shape == y_pred.shape[:-1]``), as Keras does.  ``cosine_similarity``
  reduces its ``axis`` argument (default -1).
* ``Loss.backward(y_true, y_pred, weights)`` returns ``dL/dy_pred`` for
  ``L = sum(weights * values)``; ``weights`` has the shape of ``values``.

Both keep the dtype of ``y_pred`` (float32 stays float32).  ``y_true`` is cast to it, except for
``sparse_categorical_crossentropy`` whose targets are integer class ids of shape
``y_pred.shape[:-1]`` (or with a trailing 1).

Where Keras/TF define a gradient at a kink the TF convention is used: clipped regions
(``clip(x, lo, hi)``) pass no gradient strictly outside ``[lo, hi]``; ``maximum(a, b)`` sends the
gradient to ``a`` where ``a >= b``; ``reduce_max`` splits it among ties; ``|x|'(0) = 0``.
"""

from __future__ import annotations

import math

import numpy as np

from ..activations import sigmoid, softplus

EPSILON = 1e-7  # keras.backend.epsilon()
_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------- helpers


def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _in_range(x, lo, hi):
    """Where TF's clip_by_value passes the gradient (boundaries included)."""
    return (x >= lo) & (x <= hi)


def _as_pred(y_pred) -> np.ndarray:
    y_pred = np.asarray(y_pred)
    if not np.issubdtype(y_pred.dtype, np.floating):
        y_pred = y_pred.astype(np.float32)
    if y_pred.ndim == 0:
        raise ValueError("a loss needs predictions with at least one axis")
    return y_pred


def align_target_shape(y_true, y_pred: np.ndarray) -> np.ndarray:
    """``y_true`` as an array shaped like ``y_pred``: a trailing 1 squeezed or expanded (Keras); its dtype
    is kept. Losses and metrics share it."""
    y_true = np.asarray(y_true)
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    elif y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape:
        raise ValueError(f"targets of shape {tuple(y_true.shape)} do not match predictions of shape "
                         f"{tuple(y_pred.shape)}")
    return y_true


def _align(y_true, y_pred: np.ndarray) -> np.ndarray:
    """Cast ``y_true`` to y_pred's dtype and squeeze/expand a trailing 1 so the shapes match (Keras)."""
    return align_target_shape(y_true, y_pred).astype(y_pred.dtype, copy=False)


def _weights(weights, shape, dtype) -> np.ndarray:
    w = np.asarray(weights, dtype=dtype)
    if w.shape != tuple(shape):
        w = np.broadcast_to(w, shape)
    return w


def _hinge_labels(y_true: np.ndarray) -> np.ndarray:
    """Keras 3: labels that are all 0 or 1 become -1/1; other labels are used as given."""
    if np.all((y_true == 0) | (y_true == 1)):
        return 2.0 * y_true - 1.0
    return y_true


def _sparse_labels(y_true, y_pred: np.ndarray) -> np.ndarray:
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != y_pred.shape[:-1]:
        raise ValueError(f"sparse_categorical_crossentropy takes integer class ids of shape "
                         f"{tuple(y_pred.shape[:-1])} (or with a trailing 1) for predictions of shape "
                         f"{tuple(y_pred.shape)}; got targets of shape {tuple(np.shape(y_true))}. "
                         "One-hot targets need categorical_crossentropy.")
    if not np.issubdtype(labels.dtype, np.integer):
        as_int = labels.astype(np.int64)
        if not np.array_equal(as_int, labels):
            raise ValueError("sparse_categorical_crossentropy needs integer class ids as targets; got "
                             "non-integer values (one-hot or probability targets need "
                             "categorical_crossentropy)")
        labels = as_int
    n = y_pred.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"sparse_categorical_crossentropy: class ids must be in [0, {n - 1}] for "
                         f"{n} output units; got values from {labels.min()} to {labels.max()}")
    return labels


def _one_hot(labels: np.ndarray, n: int, dtype) -> np.ndarray:
    out = np.zeros(labels.shape + (n,), dtype=dtype)
    np.put_along_axis(out, labels[..., None].astype(np.intp), 1, axis=-1)
    return out


# --------------------------------------------------------------------------- base class


class Loss:
    """A loss: ``forward`` gives per-sample values, ``backward`` their weighted gradient."""

    name: str = ""
    expects_sparse: bool = False

    def __init__(self, **args):
        self.args = args

    @property
    def spec(self) -> dict:
        return {"type": self.name, **self.args}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"Loss({self.name}{', ' + args if args else ''})"

    # subclasses implement these on aligned inputs
    def _forward(self, t, p):  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, t, p, w):  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, y_true, y_pred):
        p = _as_pred(y_pred)
        return _align(y_true, p), p

    def forward(self, y_true, y_pred) -> np.ndarray:
        t, p = self._prepare(y_true, y_pred)
        return np.asarray(self._forward(t, p), dtype=p.dtype)

    def backward(self, y_true, y_pred, weights) -> np.ndarray:
        t, p = self._prepare(y_true, y_pred)
        w = _weights(weights, self._values_shape(p), p.dtype)
        g = self._backward(t, p, w)
        return np.ascontiguousarray(g, dtype=p.dtype)

    def value_and_grad(self, y_true, y_pred, weights) -> tuple[np.ndarray, np.ndarray]:
        """``forward`` and ``backward`` in one pass (what a training step needs): the targets are checked and
        aligned once (for the sparse losses, labels validated and one-hot encoded once) and the losses that share
        work between value and gradient do it once."""
        t, p = self._prepare(y_true, y_pred)
        w = _weights(weights, self._values_shape(p), p.dtype)
        values, g = self._forward_backward(t, p, w)
        return np.asarray(values, dtype=p.dtype), np.ascontiguousarray(g, dtype=p.dtype)

    def values_shape(self, y_pred) -> tuple:
        """Shape of the per-sample values ``forward`` returns for these predictions."""
        return tuple(self._values_shape(_as_pred(y_pred)))

    def __call__(self, y_true, y_pred) -> np.ndarray:
        return self.forward(y_true, y_pred)

    def _forward_backward(self, t, p, w):
        return self._forward(t, p), self._backward(t, p, w)

    def _values_shape(self, p):
        return p.shape[:-1]


class _MeanLoss(Loss):
    """Losses of the form mean(elem(t, p), axis=-1)."""

    def _elem(self, t, p):  # pragma: no cover - abstract
        raise NotImplementedError

    def _delem(self, t, p):  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, t, p):
        return self._elem(t, p).mean(axis=-1)

    def _backward(self, t, p, w):
        scale = (w / p.shape[-1])[..., None]
        return self._delem(t, p) * scale


# --------------------------------------------------------------------------- regression losses


class MeanSquaredError(_MeanLoss):
    name = "mean_squared_error"

    def _elem(self, t, p):
        return np.square(p - t)

    def _delem(self, t, p):
        return 2.0 * (p - t)


class MeanAbsoluteError(_MeanLoss):
    name = "mean_absolute_error"

    def _elem(self, t, p):
        return np.abs(p - t)

    def _delem(self, t, p):
        return np.sign(p - t)


class MeanAbsolutePercentageError(_MeanLoss):
    name = "mean_absolute_percentage_error"

    def _elem(self, t, p):
        return 100.0 * np.abs((t - p) / np.maximum(np.abs(t), EPSILON))

    def _delem(self, t, p):
        return 100.0 * np.sign(p - t) / np.maximum(np.abs(t), EPSILON)


class MeanSquaredLogarithmicError(_MeanLoss):
    name = "mean_squared_logarithmic_error"

    def _elem(self, t, p):
        return np.square(np.log(np.maximum(p, EPSILON) + 1.0) - np.log(np.maximum(t, EPSILON) + 1.0))

    def _delem(self, t, p):
        pp = np.maximum(p, EPSILON) + 1.0
        d = np.log(pp) - np.log(np.maximum(t, EPSILON) + 1.0)
        return 2.0 * d / pp * (p >= EPSILON)


class Huber(_MeanLoss):
    name = "huber"

    def __init__(self, delta: float = 1.0):
        super().__init__(delta=float(delta))
        self.delta = float(delta)

    def _elem(self, t, p):
        e = p - t
        a = np.abs(e)
        d = self.delta
        return np.where(a <= d, 0.5 * np.square(e), d * a - 0.5 * d * d)

    def _delem(self, t, p):
        e = p - t
        return np.where(np.abs(e) <= self.delta, e, self.delta * np.sign(e))


class LogCosh(_MeanLoss):
    name = "log_cosh"

    def _elem(self, t, p):
        e = p - t
        return e + softplus(-2.0 * e) - _LOG2

    def _delem(self, t, p):
        return np.tanh(p - t)


class Poisson(_MeanLoss):
    name = "poisson"

    def _elem(self, t, p):
        return p - t * np.log(p + EPSILON)

    def _delem(self, t, p):
        return 1.0 - t / (p + EPSILON)


class CosineSimilarity(Loss):
    """-sum(l2_normalize(t) * l2_normalize(p)) over ``axis``; l2_normalize(x) = x / max(|x|, 1e-7)."""

    name = "cosine_similarity"

    def __init__(self, axis: int = -1):
        super().__init__(axis=int(axis))
        self.axis = int(axis)

    def _values_shape(self, p):
        ax = self.axis % p.ndim
        return p.shape[:ax] + p.shape[ax + 1:]

    @staticmethod
    def _norm(x, axis):
        n = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
        return n, 1.0 / np.maximum(n, EPSILON)

    def _forward(self, t, p):
        _, rt = self._norm(t, self.axis)
        _, rp = self._norm(p, self.axis)
        return -np.sum((t * rt) * (p * rp), axis=self.axis)

    def _backward(self, t, p, w):
        tn = t * self._norm(t, self.axis)[1]
        n, r = self._norm(p, self.axis)
        pn = p * r
        cos = np.sum(tn * pn, axis=self.axis, keepdims=True)
        g = -r * tn + (n >= EPSILON) * r * cos * pn
        return g * np.expand_dims(w, self.axis)


# --------------------------------------------------------------------------- hinge losses


class Hinge(_MeanLoss):
    name = "hinge"

    def _elem(self, t, p):
        return np.maximum(1.0 - _hinge_labels(t) * p, 0.0)

    def _delem(self, t, p):
        t = _hinge_labels(t)
        return -t * (1.0 - t * p >= 0)


class SquaredHinge(_MeanLoss):
    name = "squared_hinge"

    def _elem(self, t, p):
        return np.square(np.maximum(1.0 - _hinge_labels(t) * p, 0.0))

    def _delem(self, t, p):
        t = _hinge_labels(t)
        return -2.0 * t * np.maximum(1.0 - t * p, 0.0)


class CategoricalHinge(Loss):
    """max(max((1 - t)·p) - sum(t·p) + 1, 0)."""

    name = "categorical_hinge"

    def _forward(self, t, p):
        pos = np.sum(t * p, axis=-1)
        neg = np.max((1.0 - t) * p, axis=-1)
        return np.maximum(neg - pos + 1.0, 0.0)

    def _backward(self, t, p, w):
        q = (1.0 - t) * p
        neg = q.max(axis=-1, keepdims=True)
        ties = (q == neg)
        share = ties / ties.sum(axis=-1, keepdims=True)
        active = (neg - np.sum(t * p, axis=-1, keepdims=True) + 1.0 >= 0)
        return (share * (1.0 - t) - t) * active * w[..., None]


# --------------------------------------------------------------------------- probabilistic losses


class _FromLogitsSmoothing:
    """The ``from_logits`` and ``label_smoothing`` arguments of the binary and categorical cross-entropies
    (a mixin placed before the Loss base)."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        super().__init__(from_logits=bool(from_logits), label_smoothing=float(label_smoothing))
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)


class BinaryCrossentropy(_FromLogitsSmoothing, _MeanLoss):
    """Probabilities: clip to [1e-7, 1-1e-7], -(t·log p + (1-t)·log(1-p)); logits: the softplus form."""

    name = "binary_crossentropy"

    def _smooth(self, t):
        ls = self.label_smoothing
        return t * (1.0 - ls) + 0.5 * ls if ls else t

    def _elem(self, t, p):
        t = self._smooth(t)
        if self.from_logits:
            return np.maximum(p, 0.0) - p * t + np.log1p(np.exp(-np.abs(p)))
        c = np.clip(p, EPSILON, 1.0 - EPSILON)
        return -(t * np.log(c) + (1.0 - t) * np.log(1.0 - c))

    def _delem(self, t, p):
        t = self._smooth(t)
        if self.from_logits:
            return sigmoid(p) - t
        c = np.clip(p, EPSILON, 1.0 - EPSILON)
        return ((1.0 - t) / (1.0 - c) - t / c) * _in_range(p, EPSILON, 1.0 - EPSILON)


def _cce_from_probs(t, p):
    """Values and dL/dp of -sum(t·log(clip(p / sum(p)))) (Keras renormalises the probabilities)."""
    s = p.sum(axis=-1, keepdims=True)
    q = p / s
    c = np.clip(q, EPSILON, 1.0 - EPSILON)
    values = -np.sum(t * np.log(c), axis=-1)
    gq = -t / c * _in_range(q, EPSILON, 1.0 - EPSILON)
    gp = (gq - np.sum(gq * q, axis=-1, keepdims=True)) / s
    return values, gp


def _cce_from_logits(t, z):
    ls = _log_softmax(z)
    values = -np.sum(t * ls, axis=-1)
    gz = np.exp(ls) * np.sum(t, axis=-1, keepdims=True) - t
    return values, gz


class CategoricalCrossentropy(_FromLogitsSmoothing, Loss):
    name = "categorical_crossentropy"

    def _smooth(self, t):
        ls = self.label_smoothing
        return t * (1.0 - ls) + ls / t.shape[-1] if ls else t

    def _compute(self, t, p):
        t = self._smooth(t)
        return _cce_from_logits(t, p) if self.from_logits else _cce_from_probs(t, p)

    def _forward(self, t, p):
        return self._compute(t, p)[0]

    def _backward(self, t, p, w):
        return self._compute(t, p)[1] * w[..., None]

    def _forward_backward(self, t, p, w):
        values, g = self._compute(t, p)
        return values, g * w[..., None]


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    name = "sparse_categorical_crossentropy"
    expects_sparse = True

    def __init__(self, from_logits: bool = False):
        Loss.__init__(self, from_logits=bool(from_logits))
        self.from_logits = bool(from_logits)
        self.label_smoothing = 0.0

    def _prepare(self, y_true, y_pred):
        p = _as_pred(y_pred)
        labels = _sparse_labels(y_true, p)
        return _one_hot(labels, p.shape[-1], p.dtype), p

    def value_and_grad(self, y_true, y_pred, weights):
        if self.from_logits:
            return super().value_and_grad(y_true, y_pred, weights)
        # From probabilities only the label's entry enters: with s = sum(p), q = p[label] / s and c = clip(q),
        # value = -log(c) and dL/dp_j = g·([j == label] - q) / s where g = -1/c inside the clip range, else 0
        # (the same values and gradient as the one-hot form, without building the dense intermediates).
        p = _as_pred(y_pred)
        labels = _sparse_labels(y_true, p)[..., None]
        w = _weights(weights, self._values_shape(p), p.dtype)
        s = p.sum(axis=-1, keepdims=True)
        q = np.take_along_axis(p, labels, axis=-1) / s
        c = np.clip(q, EPSILON, 1.0 - EPSILON)
        values = -np.log(c[..., 0])
        g = np.where(_in_range(q, EPSILON, 1.0 - EPSILON), -w[..., None] / (c * s), 0.0).astype(p.dtype, copy=False)
        grad = np.multiply(g, -q, dtype=p.dtype)
        grad = np.broadcast_to(grad, p.shape).copy()
        np.put_along_axis(grad, labels, g * (1.0 - q), axis=-1)
        return values.astype(p.dtype, copy=False), grad


class KLDivergence(Loss):
    """sum(t·log(t/p)) with t and p clipped to [1e-7, 1]."""

    name = "kl_divergence"

    def _forward(self, t, p):
        tc = np.clip(t, EPSILON, 1.0)
        pc = np.clip(p, EPSILON, 1.0)
        return np.sum(tc * np.log(tc / pc), axis=-1)

    def _backward(self, t, p, w):
        tc = np.clip(t, EPSILON, 1.0)
        pc = np.clip(p, EPSILON, 1.0)
        return -tc / pc * _in_range(p, EPSILON, 1.0) * w[..., None]


# --------------------------------------------------------------------------- factory

LOSS_CLASSES: dict[str, type[Loss]] = {cls.name: cls for cls in (
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, Hinge,
    SquaredHinge, CategoricalHinge, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
    KLDivergence, Poisson, CosineSimilarity, Huber, LogCosh)}


def _normalise(spec) -> dict:
    if isinstance(spec, Loss):
        return spec.spec
    if isinstance(spec, str) or (isinstance(spec, dict) and spec.get("type") not in LOSS_CLASSES):
        from ..config.training import normalize_loss

        return normalize_loss(spec)
    return dict(spec)


def make_loss(spec) -> Loss:
    """Build a loss from ``{"type": canonical_name, **args}`` (a bare name is normalised first)."""
    if isinstance(spec, Loss):
        return spec
    spec = _normalise(spec)
    args = dict(spec)
    name = args.pop("type")
    return LOSS_CLASSES[name](**args)


def loss_name_for_accuracy(spec, output_shape=None) -> str:
    """The accuracy variant that ``metrics: [accuracy]`` means with this loss (Keras rules).

    sparse_categorical_crossentropy -> ``sparse_categorical_accuracy``; binary_crossentropy, or an
    output whose last dimension is 1 -> ``binary_accuracy``; otherwise ``categorical_accuracy``.
    """
    name = None
    if spec is not None:
        name = _normalise(spec)["type"]
    if name == "sparse_categorical_crossentropy":
        return "sparse_categorical_accuracy"
    if name == "binary_crossentropy":
        return "binary_accuracy"
    if output_shape is not None and len(output_shape) and output_shape[-1] == 1:
        return "binary_accuracy"
    return "categorical_accuracy"
