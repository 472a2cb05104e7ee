"""The fit loop: losses per output, metrics, optimizer steps, callbacks, history.

``Trainer`` owns the compiled model, the optimizer and the one random generator
that drives shuffling and every stochastic layer, so a run with a seed repeats
exactly and a resumed run continues as if it had never stopped.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..config.training import TrainingConfig
from ..errors import ConfigError, DataError, Problem
from ..kernels.blocks import one_blas_thread_beside_engine_threads
from ..layers.packed import tile
from .inference import Head, RunningMean, batch_loss, evaluate, make_heads, metric_logs, metric_weight
from .model import CompiledModel


class Trainer:
    def __init__(self, model: CompiledModel, cfg: TrainingConfig, *, seed: int | None = None):
        from .optimizers import make_optimizer

        self.model = model
        self.cfg = cfg
        self.heads: list[Head] = make_heads(model.graph, cfg)
        self.optimizer = make_optimizer(cfg.optimizer)
        self.rng = np.random.default_rng(seed)
        self.pairs = model.trainable_pairs()
        self.history: list[dict] = []
        self.epoch = 0  # epochs completed
        self.notes: list[str] = []
        self.callbacks: list = []  # the callbacks of the latest fit, whose state a save keeps
        self.saved_callback_state = None  # (states, arrays) of a loaded run, for --resume
        self.stop_training = False  # set by callbacks (EarlyStopping, TerminateOnNaN)
        self.current_epoch = 0
        self.nan_at = None  # (epoch, batch) where the loss stopped being finite
        self.run_dir: Path | None = None  # where relative checkpoint and CSV log paths start (None: the current folder)
        self.say = print  # where callbacks with verbose: 1 report (the CLI prints through its console)
        self.save_checkpoint = None  # path -> None: writes a whole run directory (set by layerforge.Model)
        self._pending_checkpoints: list = []
        # Data-parallel hooks (layerforge.distributed sets them; None: one process). ``parallel.shard(idx)`` gives
        # this process's part of a global batch (None: skip the batch), ``parallel.reduce_gradients(flat, n)``
        # averages the packed gradient buffer over the processes before the optimizer step, and
        # ``parallel.reduce_logs(logs, seen)`` makes the epoch's logs the same on every process.
        self.parallel = None

    # ------------------------------------------------------------------ one batch
    def _loss(self, outs, out_masks, ys, sw, *, want_grads: bool):
        return batch_loss(self.heads, outs, out_masks, ys, sw, want_grads=want_grads)

    @one_blas_thread_beside_engine_threads("train")  # kernels/blocks.py: import-order independence
    def train_batch(self, xs, ys, sw) -> tuple[float, list]:
        model = self.model
        batch = len(xs[0])
        outs, masks, tape = model.forward(xs, training=True, rng=self.rng)
        loss, per_head, douts = self._loss(outs, masks, ys, sw, want_grads=True)
        loss += model.activity_loss(tape, batch) + model.regularization_loss()
        grads = model.backward(tape, douts, batch, into_buffers=True)
        model.add_regularization_grads(grads)
        params = [model.params[n][p] for n, p in self.pairs]
        flat = [grads[n][p] for n, p in self.pairs]
        if self.parallel is not None:
            flat, finite = self._reduce_gradients(flat, batch)
            if not finite:  # a NaN/inf on any process: all of them see it in the same step (TerminateOnNaN)
                loss = math.nan
        self.optimizer.step(params, flat, grad_buffer=model.flat_grads)
        model.apply_constraints()
        for head, y_pred, mask, y_true in zip(self.heads, outs, masks, ys):
            for m in head.metrics:
                m.update(y_true, y_pred, metric_weight(sw, mask, y_pred))
        return loss, per_head

    def _reduce_gradients(self, grads: list, batch: int) -> tuple[list, bool]:
        """Gather the gradients into the model's packed buffer, reduce it across processes in one call, and
        return views into it (the optimizer then finds them in place) and whether the result is finite."""
        model = self.model
        if model.flat_grads is None:  # weights not packed (no trainable weights, or mixed dtypes)
            buffer = np.concatenate([g.reshape(-1) for g in grads]) if grads else np.zeros(0, model.dtype)
            views = tile(buffer, [g.shape for g in grads])
        else:
            buffer = model.flat_grads
            views = [model.packed.grad(pair) for pair in self.pairs]
            for view, g in zip(views, grads):
                if g is not view:
                    view[...] = g
        finite = self.parallel.reduce_gradients(buffer, batch)
        return views, finite

    # ------------------------------------------------------------------ loops
    def _batches(self, n: int, batch_size: int, order: np.ndarray):
        fixed = self.model.graph.batch_size
        step = fixed or batch_size
        stop = n - n % step if fixed else n
        for start in range(0, stop, step):
            yield order[start:start + step]

    def fit(self, train, val=None, **kwargs):
        """Train epochs ``initial_epoch`` .. ``epochs - 1`` from the current weights (Keras ``fit``); returns the
        History of this call. Every call appends its epochs to ``self.history``, the run's record."""
        # overflow on a diverging run is reported as a NaN/inf loss, not as numpy warnings
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return self._fit(train, val, **kwargs)

    def _fit(self, train, val=None, *, epochs: int, batch_size: int, initial_epoch: int = 0,
             shuffle: bool | None = None, callbacks=(), progress=None, on_epoch_end=None, callback_state=None):
        from .callbacks import History

        n = train.n
        fixed = self.model.graph.batch_size
        if fixed and n < fixed:
            raise DataError(problems=[Problem(message=f"the model has a fixed batch size of {fixed} but the training "
                                                      f"data has only {n} samples")])
        self.notes = []
        if fixed and n % fixed:
            self.notes.append(f"the last {n % fixed} samples of each epoch are skipped: the model's batch size is "
                              f"fixed at {fixed}")
        shuffle = self.cfg.shuffle if shuffle is None else shuffle
        steps = (n // fixed) if fixed else math.ceil(n / batch_size)
        sw_all = train.sample_weight
        history = History()
        history.params = {"epochs": epochs, "steps": steps, "initial_epoch": initial_epoch}
        callbacks = [*callbacks, history]
        self.callbacks = [cb for cb in callbacks if cb is not history]
        self.stop_training = False
        self.nan_at = None
        self._check_monitors(callbacks, has_validation=val is not None and val.n > 0)
        for cb in callbacks:
            cb.set_trainer(self)
            cb.on_train_begin()
        if callback_state is not None:  # --resume: the callbacks continue where the saved run left them
            self._load_callback_state(*callback_state)
        head_loss = [RunningMean(f"{h.key}_loss") for h in self.heads]
        for epoch in range(initial_epoch, epochs):
            self.current_epoch = epoch
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            self.model.reset_states()
            order = self.rng.permutation(n) if shuffle and not fixed else np.arange(n)
            for m in [m for h in self.heads for m in h.metrics] + head_loss:
                m.reset()
            running, seen = 0.0, 0
            started = time.perf_counter()
            if progress:
                progress.start_epoch(epoch, epochs, steps)
            for step, idx in enumerate(self._batches(n, batch_size, order)):
                if self.parallel is not None:
                    idx = self.parallel.shard(idx)
                    if idx is None:
                        continue
                xs = [x[idx] for x in train.xs]
                ys = [y[idx] for y in train.ys]
                sw = sw_all[idx] if sw_all is not None else None
                loss, per_head = self.train_batch(xs, ys, sw)
                running += loss * len(idx)
                seen += len(idx)
                for hl, v in zip(head_loss, per_head):
                    hl.add(v, len(idx))
                logs = {"loss": running / seen, **metric_logs(self.heads)}
                if progress:
                    progress.update(step + 1, logs)
                for cb in callbacks:
                    cb.on_batch_end(step, {"loss": loss})
                if self.stop_training:
                    break
            logs = {"loss": running / max(seen, 1)}
            if len(self.heads) > 1:
                logs.update({hl.name: hl.result() for hl in head_loss})
            logs.update(metric_logs(self.heads))
            if val is not None and val.n:
                logs.update({f"val_{k}": v for k, v in self.evaluate(val, batch_size).items()})
            if self.parallel is not None:
                logs = self.parallel.reduce_logs(logs, seen)
            logs["learning_rate"] = float(self.optimizer.current_lr())
            seconds = time.perf_counter() - started
            self.history.append(logs)
            self.epoch = epoch + 1
            if progress:  # the epoch's line first, then what the callbacks say about it (as Keras prints)
                progress.end_epoch(epoch, epochs, logs, seconds=seconds)
            self._pending_checkpoints = []
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            finite = bool(np.isfinite(logs["loss"]))
            if finite:  # checkpoints are written once every callback has updated its state
                for path, weights_only in self._pending_checkpoints:
                    self.write_checkpoint(path, weights_only=weights_only)
            if not finite and self.nan_at is None:
                self.nan_at = (epoch, None)
                self.notes.append("the loss is NaN or infinite; lower the learning rate or check the data")
            if on_epoch_end:
                on_epoch_end(self, epoch)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        return history

    def log_keys(self, *, has_validation: bool) -> list[str]:
        """The names every epoch's logs will hold (what callbacks may monitor)."""
        keys = ["loss"] + ([f"{h.key}_loss" for h in self.heads] if len(self.heads) > 1 else [])
        single = len(self.heads) == 1
        keys += [m.name if single else f"{h.key}_{m.name}" for h in self.heads for m in h.metrics]
        if has_validation:
            keys += [f"val_{k}" for k in keys]
        return keys + ["learning_rate"]

    def _check_monitors(self, callbacks, *, has_validation: bool) -> None:
        """A monitored value or checkpoint field that training will not log is an error before the first epoch."""
        import string

        keys = self.log_keys(has_validation=has_validation)
        hint = "val_* values need validation data (validation_split, validation_data or data.validation)"
        for cb in callbacks:
            name = type(cb).__name__
            wanted = [cb.monitor] if hasattr(cb, "monitor") and (
                name != "ModelCheckpoint" or cb.save_best_only) else []
            if name == "ModelCheckpoint":
                try:
                    wanted += [f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(cb.filepath)
                               if f and f != "epoch"]
                except ValueError:
                    pass  # reported with the template at the first save
            for key in wanted:
                if key not in keys:
                    raise ConfigError(problems=[Problem(
                        message=f"{name} {'monitors' if key == getattr(cb, 'monitor', None) else 'names'} "
                                f"'{key}', which training does not report", path="training.callbacks", found=key,
                        expected=", ".join(keys), hint=hint if key.startswith("val_") else None)])

    # ------------------------------------------------------------------ checkpoints
    def request_checkpoint(self, path, *, weights_only: bool) -> None:
        """ModelCheckpoint asks for a save; it is written after every callback's on_epoch_end."""
        self._pending_checkpoints.append((Path(path), weights_only))

    def write_checkpoint(self, path: Path, *, weights_only: bool) -> None:
        from ..io.atomic import atomic_write_bytes

        path = Path(path)
        ours = path.is_file() and path.suffix == ".safetensors" if weights_only else \
            path.is_dir() and (path / "state.json").exists()
        if path.exists() and not ours and not (path.is_dir() and not any(path.iterdir())):
            raise ConfigError(problems=[Problem(
                message="ModelCheckpoint would overwrite a file it did not write", file=str(path),
                path="training.callbacks", hint="choose another filepath, or move that file away")])
        if weights_only:
            from safetensors.numpy import save

            tensors = {f"{name}/{spec.name}": np.ascontiguousarray(arr).reshape(np.shape(arr)) for name, spec, arr in
                       self.model.weight_items()}
            atomic_write_bytes(path, save(tensors, metadata={"format": "layerforge", "epoch": str(self.epoch)}))
        elif self.save_checkpoint is None:
            raise ConfigError(problems=[Problem(
                message="ModelCheckpoint saving a whole run directory needs a layerforge.Model",
                path="training.callbacks", hint="set save_weights_only: true")])
        else:
            self.save_checkpoint(path)

    # ------------------------------------------------------------------ callback state (resume)
    def callback_state(self) -> tuple[list[dict], dict[str, np.ndarray]]:
        states, arrays = [], {}
        for i, cb in enumerate(self.callbacks):
            states.append({"type": type(cb).__name__, "state": cb.state()})
            arrays.update({f"{i}/{k}": v for k, v in cb.arrays().items()})
        return states, arrays

    def _load_callback_state(self, states: list[dict], arrays: dict[str, np.ndarray]) -> None:
        if [s["type"] for s in states] != [type(cb).__name__ for cb in self.callbacks]:
            self.notes.append("the callbacks differ from the saved run's, so they start afresh")
            return
        for i, (cb, saved) in enumerate(zip(self.callbacks, states)):
            prefix = f"{i}/"
            cb.load_state(saved["state"], {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})

    def evaluate(self, data, batch_size: int = 256) -> dict:
        """Loss and metrics on ``data`` with the training heads (the validation pass of every epoch)."""
        return evaluate(self.model, self.heads, data, batch_size)

    # ------------------------------------------------------------------ resume
    def state(self) -> dict:
        callbacks, _ = self.callback_state()
        return {"epoch": self.epoch, "rng": self.rng.bit_generator.state, "history": self.history,
                "layer_rngs": {k: r.bit_generator.state for k, r in self.model.layer_rngs.items()},
                "callbacks": callbacks, "stopped_early": bool(self.stop_training and self.nan_at is None)}

    def load_state(self, state: dict, callback_arrays: dict | None = None) -> None:
        self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]
        self.history = list(state.get("history", []))
        for name, rng_state in (state.get("layer_rngs") or {}).items():
            if name in self.model.layer_rngs:
                self.model.layer_rngs[name].bit_generator.state = rng_state
        if state.get("callbacks"):
            self.saved_callback_state = (state["callbacks"], dict(callback_arrays or {}))
