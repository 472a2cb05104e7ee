"""Running a compiled model without training it: ``predict`` (outputs only) and ``evaluate`` (loss and metrics
of the output heads), and the per-output heads and batch loss that the fit loop (training.py) shares.

``predict`` builds no optimizer, loss or metric; ``evaluate`` needs the heads (``make_heads``) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config.training import TrainingConfig
from ..errors import ConfigError, Problem
from ..kernels.blocks import one_blas_thread_beside_engine_threads
from ..kernels.schedule import n_threads
from .model import CompiledModel


@dataclass
class Head:
    """One model output with its loss, loss weight and metrics."""

    key: str
    ref: tuple
    shape: tuple
    loss_spec: dict
    loss: object
    weight: float = 1.0
    metrics: list = field(default_factory=list)


def per_output(value, keys: list[str], what: str, default=None):
    """A single value for all outputs, a list in output order, or a mapping by output name."""
    if isinstance(value, dict) and "type" not in value:
        unknown = [k for k in value if k not in keys]
        if unknown:
            raise ConfigError(problems=[Problem(message=f"training.{what} names output '{unknown[0]}', which the "
                                                        f"model does not have", path=f"training.{what}",
                                                expected=", ".join(keys))])
        return [value.get(k, default) for k in keys]
    if isinstance(value, list) and what != "metrics":
        if len(value) != len(keys):
            raise ConfigError(problems=[Problem(message=f"training.{what} has {len(value)} entries but the model has "
                                                        f"{len(keys)} outputs", path=f"training.{what}",
                                                expected=", ".join(keys))])
        return list(value)
    return [value] * len(keys)


class RunningMean:
    """Running mean of per-batch values weighted by batch size (the per-output losses)."""

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self):
        self.total, self.count = 0.0, 0

    def add(self, value: float, n: int):
        self.total += value * n
        self.count += n

    def result(self) -> float:
        return self.total / max(self.count, 1)


def output_keys(graph) -> list[str]:
    return [name if k == 0 else f"{name}_{k}" for name, k in graph.outputs]


# Predict runs whole batches on separate threads, each with its own workspace (kernels.workspace) and BLAS held to
# one thread, when every layer is reentrant (Layer.reentrant: no carried state, no user code): small GEMMs spread
# over cores poorly (measured on 2 cores: the MLP benchmark's 784x256 product ran 1.3x faster on two BLAS threads
# than on one), two batches on two cores much better, and each batch's result is the one a single thread computes
# (layers split a batch over threads only when the caller is not already one of several; see kernels.blocks).
# Numba's parallel kernels (BatchNormalization, gelu) take the lock of kernels.blocks.one_launch_at_a_time, as
# Numba's workqueue layer must not be entered by two threads.


def make_heads(graph, cfg: TrainingConfig) -> list[Head]:
    """One Head per model output with the loss, loss weight and metrics ``cfg`` gives it (no optimizer)."""
    from .losses import make_loss
    from .metrics import make_metric

    keys = output_keys(graph)
    losses = per_output(cfg.loss, keys, "loss")
    weights = per_output(cfg.loss_weights, keys, "loss_weights", 1.0) if cfg.loss_weights is not None \
        else [1.0] * len(keys)
    metric_lists = per_output(cfg.metrics, keys, "metrics", [])
    heads: list[Head] = []
    for key, ref, loss_spec, w, mets in zip(keys, graph.outputs, losses, weights, metric_lists):
        shape = graph.shape_of(ref)
        head = Head(key=key, ref=ref, shape=shape, loss_spec=loss_spec, loss=make_loss(loss_spec),
                    weight=float(1.0 if w is None else w))
        head.metrics = [make_metric(m, loss_spec=loss_spec, output_shape=shape) for m in (mets or [])]
        heads.append(head)
    return heads


def batch_loss(heads: list[Head], outs, out_masks, ys, sw, *, want_grads: bool):
    """The weighted loss of one batch, the loss of each head and (with ``want_grads``) dLoss/dOutput per head;
    samples weighted by ``sw`` and, where an output carries a mask of the loss's shape, by the mask."""
    total = 0.0
    per_head = []
    douts = []
    for head, y_pred, mask, y_true in zip(heads, outs, out_masks, ys):
        shape = head.loss.values_shape(y_pred)
        w = np.ones(shape, dtype=y_pred.dtype)
        if sw is not None:
            w *= sw.reshape((-1,) + (1,) * (len(shape) - 1)).astype(y_pred.dtype, copy=False)
        if mask is not None and mask.shape == shape:
            w *= mask
            denom = max(float(mask.sum()), 1.0)
        else:
            denom = float(w.size)
        w /= denom
        if want_grads:  # value and gradient in one pass
            values, dout = head.loss.value_and_grad(y_true, y_pred, w * head.weight)
            douts.append(dout)
        else:
            values = head.loss.forward(y_true, y_pred)
        value = float((values * w).sum())
        per_head.append(value)
        total += head.weight * value
    return total, per_head, douts


def metric_weight(sw, mask, y_pred):
    """The weight of each value a metric sees: the sample weights, times the output's mask where it has one."""
    if mask is None or mask.shape != y_pred.shape[:-1]:
        return sw
    w = mask.astype(y_pred.dtype)
    if sw is not None:
        w = w * sw.reshape((-1,) + (1,) * (w.ndim - 1))
    return w


def metric_logs(heads: list[Head]) -> dict:
    """Every metric's current result, named as the logs name it (prefixed by the output with several)."""
    out = {}
    single = len(heads) == 1
    for h in heads:
        for m in h.metrics:
            out[m.name if single else f"{h.key}_{m.name}"] = float(m.result())
    return out


@one_blas_thread_beside_engine_threads("predict")
def predict(model: CompiledModel, xs: list[np.ndarray], batch_size: int = 256) -> list[np.ndarray]:
    """The model's outputs for the inputs ``xs`` in inference mode, batch by batch (the last batch of a fixed-batch
    model padded); builds no optimizer, loss or metric."""
    n = len(xs[0])
    fixed = model.graph.batch_size
    step = fixed or batch_size
    starts = list(range(0, n, step))
    model.reset_states()

    def run(start: int, workspace=None) -> list[np.ndarray]:
        part = [x[start:start + step] for x in xs]
        real = len(part[0])
        if fixed and real < fixed:  # pad the last batch of a fixed-batch model
            part = [np.concatenate([p, np.zeros((fixed - real,) + p.shape[1:], p.dtype)]) for p in part]
        outs, _, _ = model.forward(part, training=False, keep=False, workspace=workspace)
        return [o[:real] for o in outs]

    threads = n_threads(len(starts))  # one inside another parallel region, never more than the batches
    if threads > 1 and batches_in_parallel(model):
        from ..kernels.blocks import run_blocks
        from ..kernels.workspace import Workspace

        per_batch: list = [None] * len(starts)
        workspaces = [model.workspace] + [Workspace() for _ in range(threads - 1)]

        def work(k: int) -> None:  # thread k runs batches k, k + threads, ... with a workspace of its own
            for i in range(k, len(starts), threads):
                per_batch[i] = run(starts[i], workspaces[k])

        run_blocks(work, threads)  # BLAS held to one thread meanwhile
    else:
        per_batch = [run(start) for start in starts]
    if not per_batch:
        return [np.zeros((0,)) for _ in model.graph.outputs]
    return [np.concatenate([outs[h] for outs in per_batch]) for h in range(len(model.graph.outputs))]


def batches_in_parallel(model: CompiledModel) -> bool:
    """Whether predict runs whole batches on separate threads: when every layer is reentrant (Layer.reentrant),
    never when the BLAS libraries cannot be held to one thread (no threadpoolctl): the batches' GEMMs would
    oversubscribe the cores."""
    from ..kernels.blocks import blas_controllers

    return bool(blas_controllers()) and model.reentrant


@one_blas_thread_beside_engine_threads("evaluate")
def evaluate(model: CompiledModel, heads: list[Head], data, batch_size: int = 256) -> dict:
    """Loss and metrics of ``heads`` over labelled ``data`` (``.n``, ``.xs``, ``.ys``, ``.sample_weight``), in
    inference mode; the last partial batch of a fixed-batch model is left out, as Keras does."""
    for m in [m for h in heads for m in h.metrics]:
        m.reset()
    total, seen = 0.0, 0
    head_loss = [RunningMean(f"{h.key}_loss") for h in heads]
    n = data.n
    fixed = model.graph.batch_size
    step = fixed or batch_size
    model.reset_states()
    regularization = model.regularization_loss()  # the weights do not change while evaluating
    for start in range(0, n - (n % step if fixed else 0), step):
        xs = [x[start:start + step] for x in data.xs]
        ys = [y[start:start + step] for y in data.ys]
        sw = data.sample_weight[start:start + step] if data.sample_weight is not None else None
        outs, masks, _ = model.forward(xs, training=False, keep=False)
        loss, per_head, _ = batch_loss(heads, outs, masks, ys, sw, want_grads=False)
        loss += regularization
        total += loss * len(xs[0])
        seen += len(xs[0])
        for hl, v in zip(head_loss, per_head):
            hl.add(v, len(xs[0]))
        for head, y_pred, mask, y_true in zip(heads, outs, masks, ys):
            for m in head.metrics:
                m.update(y_true, y_pred, metric_weight(sw, mask, y_pred))
    out = {"loss": total / max(seen, 1)}
    if len(heads) > 1:
        out.update({hl.name: hl.result() for hl in head_loss})
    out.update(metric_logs(heads))
    return out
