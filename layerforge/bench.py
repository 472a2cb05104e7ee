"""What `layerforge bench` does: time a model's training and inference on synthetic data, layer by layer.

Like ``caffe time``: the model is built from its config, fed random data drawn to its input shapes and dtypes
(integer inputs of an Embedding get ids below its ``input_dim``; targets follow each output's loss), and
timed through the real engine (``Trainer.train_batch`` and the inference forward pass). The first batch is
timed apart: it includes the JIT compile of the Numba kernels (or loading them from the on-disk cache).
After it, ``steps`` training steps and ``steps`` inference batches are timed; per-layer forward and backward
times come from timers put around each layer's ``forward``/``backward`` for the run (about a microsecond
each), plus the loss, the optimizer step and the rest of the engine.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from .layers.base import show_shapes

VARIABLE_LENGTH = 32  # size used for a `None` (variable) axis of an input


# --------------------------------------------------------------------------- synthetic data

def _embedding_limit(graph, input_name: str) -> int:
    """Integer ids must stay below the input_dim of every Embedding the input reaches (default 2)."""
    limits = []
    frontier = {input_name}
    for node in graph.nodes:  # topological order: follow the input through shape-only layers
        if not any(ref[0] in frontier for ref in node.inputs):
            continue
        if node.layer.type == "Embedding":
            limits.append(int(node.layer.config.input_dim))
        else:
            frontier.add(node.name)
    return min(limits) if limits else 2


def synthetic_inputs(graph, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One array per model input: N(0, 1) floats, or integers below the Embedding's input_dim."""
    xs = []
    for inp in graph.inputs:
        shape = (n,) + tuple(VARIABLE_LENGTH if d is None else d for d in inp.shape)
        dtype = np.dtype(inp.dtype)
        if np.issubdtype(dtype, np.integer):
            xs.append(rng.integers(0, _embedding_limit(graph, inp.name), size=shape).astype(dtype))
        else:
            xs.append(rng.standard_normal(shape).astype(dtype))
    return xs


def synthetic_targets(graph, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One target array per output, as its loss wants them (class ids, one-hot rows, 0/1 or real values)."""
    from .engine.inference import output_keys, per_output

    ys = []
    losses = per_output(graph.spec.config.training.loss, output_keys(graph), "loss")
    for ref, loss in zip(graph.outputs, losses, strict=True):
        kind = loss["type"] if isinstance(loss, dict) else str(loss)
        shape = tuple(VARIABLE_LENGTH if d is None else d for d in graph.shape_of(ref))
        width = shape[-1] if shape else 1
        if kind == "sparse_categorical_crossentropy":
            ys.append(rng.integers(0, max(width, 1), size=(n,) + shape[:-1]).astype(np.int64))
        elif kind in ("categorical_crossentropy", "categorical_hinge"):
            ids = rng.integers(0, max(width, 1), size=(n,) + shape[:-1])
            ys.append(np.eye(width, dtype=np.float32)[ids])
        elif kind in ("binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge"):
            ys.append(rng.integers(0, 2, size=(n,) + shape).astype(np.float32))
        elif kind in ("kl_divergence", "poisson", "mean_squared_logarithmic_error"):
            ys.append(rng.random((n,) + shape).astype(np.float32))
        else:
            ys.append(rng.standard_normal((n,) + shape).astype(np.float32))
    return ys


# --------------------------------------------------------------------------- timers

class _Timers:
    """Per-layer forward/backward times, put around the layers' methods for the run (instance attributes)."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.forward: dict[str, list[float]] = {n.name: [] for n in nodes}
        self.backward: dict[str, list[float]] = {n.name: [] for n in nodes}
        for n in nodes:
            _wrap_callable(n.layer, "forward", self.forward[n.name])
            _wrap_callable(n.layer, "backward", self.backward[n.name])

    def clear(self):
        for d in (self.forward, self.backward):
            for v in d.values():
                v.clear()

    def remove(self):
        for n in self.nodes:
            for method in ("forward", "backward"):
                n.layer.__dict__.pop(method, None)


def _wrap_callable(obj, attr: str, sink: list):
    """Replace ``obj.attr`` by an instance attribute that calls it and appends its duration to ``sink``."""
    inner = getattr(obj, attr)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)

    setattr(obj, attr, timed)


def _median_ms(values: list[float]) -> float:
    return 1000.0 * statistics.median(values) if values else 0.0


def _total_ms(values: list[float], steps: int) -> float:
    """Time per step (a layer may run several times per step, e.g. shared layers)."""
    return 1000.0 * sum(values) / steps if values and steps else 0.0


# --------------------------------------------------------------------------- the run

def run_bench(config: Path | str | dict, overrides: list[str] | None = None, *, batch_size: int | None = None,
              steps: int = 20, threads: int | None = None, seed: int = 0, allow_code: bool = False) -> dict:
    """Time the model of ``config``; returns the figures `layerforge bench --json` prints."""
    from .kernels.threads import blas_info, current_threads, set_threads

    if threads is not None:
        set_threads(threads)
    from .api import Model
    from .config import load_config
    from .graph import build_graph

    steps = max(1, int(steps))
    spec = load_config(config, overrides or [], allow_code=allow_code)
    graph = build_graph(spec)
    fixed = graph.batch_size
    batch = fixed or batch_size or spec.config.training.batch_size
    t0 = time.perf_counter()
    model = Model(spec, graph, seed=seed)
    trainer = model.trainer
    build_s = time.perf_counter() - t0

    rng = np.random.default_rng(seed)
    pool = 4  # distinct batches, cycled
    xs_all = synthetic_inputs(graph, batch * pool, rng)
    ys_all = synthetic_targets(graph, batch * pool, rng)

    def batch_of(k: int):
        sl = slice((k % pool) * batch, (k % pool + 1) * batch)
        return [x[sl] for x in xs_all], [y[sl] for y in ys_all]

    cm = model.compiled
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        xs, ys = batch_of(0)
        t0 = time.perf_counter()
        trainer.train_batch(xs, ys, None)
        first_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        cm.forward(xs, training=False, keep=False)
        first_infer = time.perf_counter() - t0

        timers = _Timers(graph.nodes)
        loss_t: list[float] = []
        opt_t: list[float] = []
        _wrap_callable(trainer, "_loss", loss_t)
        _wrap_callable(trainer.optimizer, "step", opt_t)
        train_t = []
        try:
            for k in range(steps):
                xs, ys = batch_of(k + 1)
                t0 = time.perf_counter()
                loss, _ = trainer.train_batch(xs, ys, None)
                train_t.append(time.perf_counter() - t0)
            fwd_train = {n: _total_ms(v, steps) for n, v in timers.forward.items()}
            bwd_train = {n: _total_ms(v, steps) for n, v in timers.backward.items()}
            loss_ms, opt_ms = _total_ms(loss_t, steps), _total_ms(opt_t, steps)
            timers.clear()
            infer_t = []
            for k in range(steps):
                xs, _ = batch_of(k + 1)
                t0 = time.perf_counter()
                cm.forward(xs, training=False, keep=False)
                infer_t.append(time.perf_counter() - t0)
            fwd_infer = {n: _total_ms(v, steps) for n, v in timers.forward.items()}
        finally:
            timers.remove()
            trainer.__dict__.pop("_loss", None)
            trainer.optimizer.__dict__.pop("step", None)

    train_ms = _median_ms(train_t)
    infer_ms = _median_ms(infer_t)
    mean_train_ms = 1000.0 * sum(train_t) / len(train_t)
    layers = []
    for n in graph.nodes:
        shape = n.output_shape
        layers.append({"name": n.name, "type": n.layer.type,
                       "output_shape": [list(s) for s in shape] if isinstance(shape, list) else list(shape),
                       "params": n.param_count,
                       "forward_ms": round(fwd_train[n.name], 4), "backward_ms": round(bwd_train[n.name], 4),
                       "inference_ms": round(fwd_infer[n.name], 4)})
    accounted = sum(v["forward_ms"] + v["backward_ms"] for v in layers) + loss_ms + opt_ms
    return {
        "config": str(config) if not isinstance(config, dict) else "<dict>",
        "model": spec.config.name,
        "batch_size": batch,
        "steps": steps,
        "threads": current_threads(),
        "blas": blas_info(),
        "parameters": graph.total_params,
        "build_s": round(build_s, 4),
        "first_train_batch_s": round(first_train, 4),
        "first_inference_batch_s": round(first_infer, 4),
        "compile_s": round(max(0.0, first_train - train_ms / 1000.0) + max(0.0, first_infer - infer_ms / 1000.0), 4),
        "train_step_ms": round(train_ms, 4),
        "train_samples_per_s": round(batch / (train_ms / 1000.0), 1) if train_ms else None,
        "inference_step_ms": round(infer_ms, 4),
        "inference_samples_per_s": round(batch / (infer_ms / 1000.0), 1) if infer_ms else None,
        "loss_ms": round(loss_ms, 4),
        "optimizer_ms": round(opt_ms, 4),
        "other_ms": round(max(0.0, mean_train_ms - accounted), 4),
        "final_loss": float(loss),
        "layers": layers,
    }


# --------------------------------------------------------------------------- rendering

def render_bench(data: dict, console) -> None:
    from rich.table import Table

    step = data["train_step_ms"] or 1.0
    table = Table(title=f"{data['model']}: batch {data['batch_size']}, {data['steps']} steps, "
                        f"{data['threads']} thread{'s' if data['threads'] != 1 else ''}",
                  header_style="bold", title_justify="left")
    for col, just in (("layer", "left"), ("type", "left"), ("output", "left"), ("forward ms", "right"),
                      ("backward ms", "right"), ("% of step", "right"), ("inference ms", "right")):
        table.add_column(col, justify=just)
    for row in data["layers"]:
        share = 100.0 * (row["forward_ms"] + row["backward_ms"]) / step
        table.add_row(row["name"], row["type"], show_shapes(row["output_shape"]), f"{row['forward_ms']:.3f}",
                      f"{row['backward_ms']:.3f}", f"{share:.1f}", f"{row['inference_ms']:.3f}")
    for label, key in (("loss", "loss_ms"), ("optimizer", "optimizer_ms"), ("engine, other", "other_ms")):
        table.add_row(f"[dim]{label}[/]", "", "", f"{data[key]:.3f}", "", f"{100.0 * data[key] / step:.1f}", "")
    console.print(table)
    lines = [
        f"first batch (JIT compile or cache load): training {data['first_train_batch_s']:.3f} s, "
        f"inference {data['first_inference_batch_s']:.3f} s (compile ≈ {data['compile_s']:.2f} s)",
        f"training:  {data['train_step_ms']:.3f} ms/step (median)  {data['train_samples_per_s']:,.0f} samples/s",
        f"inference: {data['inference_step_ms']:.3f} ms/batch (median)  "
        f"{data['inference_samples_per_s']:,.0f} samples/s",
    ]
    for line in lines:
        console.print(line, highlight=False)
