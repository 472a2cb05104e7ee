"""Keras callbacks, driven by the fit loop at the end of each epoch.

Each callback keeps its state in plain attributes and exposes ``state()`` /
``load_state()`` so a resumed run continues exactly (EarlyStopping's best and
wait counters, ReduceLROnPlateau's cooldown ...).
"""

from __future__ import annotations

import math

import numpy as np


def _mode(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall", "f1")) else "min"


class Callback:
    stop_training = False

    def __init__(self, trainer, **kw):
        self.trainer = trainer
        self.__dict__.update(kw)

    def on_train_begin(self):
        pass

    def on_epoch_begin(self, epoch: int):
        pass

    def on_batch_end(self, logs: dict):
        pass

    def on_epoch_end(self, epoch: int, logs: dict):
        pass

    def on_train_end(self):
        pass

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict):
        self.__dict__.update(state)

    def _get(self, logs, key):
        if key not in logs:
            from ..errors import ConfigError, Problem

            raise ConfigError(problems=[Problem(
                message=f"{type(self).__name__} monitors '{key}', which training does not report",
                found=key, expected=", ".join(sorted(logs)),
                hint="val_* values need validation data (validation_split or data.validation)")])
        return logs[key]


class _Monitor(Callback):
    def __init__(self, trainer, **kw):
        super().__init__(trainer, **kw)
        self.direction = _mode(self.monitor, self.mode)
        self.best = math.inf if self.direction == "min" else -math.inf
        self.wait = 0

    def improved(self, value: float, min_delta: float) -> bool:
        if self.direction == "min":
            return value < self.best - abs(min_delta)
        return value > self.best + abs(min_delta)

    def state(self):
        return {"best": self.best, "wait": self.wait}


class EarlyStopping(_Monitor):
    def __init__(self, trainer, **kw):
        super().__init__(trainer, **kw)
        if self.baseline is not None:
            self.best = self.baseline
        self.best_weights = None
        self.best_epoch = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs):
        if epoch < self.start_from_epoch:
            return
        value = self._get(logs, self.monitor)
        if self.improved(value, self.min_delta) or (self.best_epoch is None and self.baseline is None):
            self.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.trainer.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience or (self.patience == 0 and self.wait >= 1):
            self.stop_training = True
            self.stopped_epoch = epoch

    def on_train_end(self):
        if self.stop_training and self.restore_best_weights and self.best_weights is not None:
            self.trainer.set_weights(self.best_weights)
            self.trainer.notes.append(f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1} "
                                      f"({self.monitor} {self.best:.4g})")
        elif self.stop_training:
            self.trainer.notes.append(f"EarlyStopping: stopped after epoch {self.stopped_epoch + 1}")

    def state(self):
        return {**super().state(), "best_epoch": self.best_epoch}


class ModelCheckpoint(_Monitor):
    """Saves the model (a run directory) under `filepath` (relative to the run directory)."""

    def on_epoch_end(self, epoch, logs):
        if (epoch + 1) % max(1, self.period):
            return
        if self.save_best_only:
            value = self._get(logs, self.monitor)
            if not self.improved(value, 0.0):
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **{k: v for k, v in logs.items() if isinstance(v, float)})
        self.trainer.save_checkpoint(path, epoch)


class ReduceLROnPlateau(_Monitor):
    def __init__(self, trainer, **kw):
        super().__init__(trainer, **kw)
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs):
        value = self._get(logs, self.monitor)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.improved(value, self.min_delta):
            self.best = value
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.trainer.optimizer
                old = opt.current_lr()
                if old > self.min_lr:
                    opt.learning_rate = max(old * self.factor, self.min_lr)
                    self.trainer.notes.append(f"ReduceLROnPlateau: learning rate {old:.3g} -> "
                                              f"{opt.learning_rate:.3g} after epoch {epoch + 1}")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def state(self):
        return {**super().state(), "cooldown_counter": self.cooldown_counter}


class LearningRateScheduler(Callback):
    def on_epoch_begin(self, epoch):
        from ..expressions import evaluate_scalar

        lr = float(evaluate_scalar(self.schedule, {"epoch": epoch, "lr": self.trainer.optimizer.current_lr()}))
        if not np.isfinite(lr) or lr <= 0:
            from ..errors import RunFailed

            raise RunFailed(f"LearningRateScheduler gave learning rate {lr} at epoch {epoch + 1}")
        self.trainer.optimizer.learning_rate = lr


class CSVLogger(Callback):
    """Writes the history as CSV after every epoch (a relative path starts from the current folder, as in Keras)."""

    def on_train_begin(self):
        from pathlib import Path

        self.rows = []
        if self.append and Path(self.filename).exists():
            import csv

            with open(self.filename, newline="") as fh:
                self.rows = list(csv.DictReader(fh, delimiter=self.separator))

    def on_epoch_end(self, epoch, logs):
        from ..io.atomic import atomic_write_text

        self.rows.append({"epoch": epoch, **logs})
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        lines = [self.separator.join(keys)]
        lines += [self.separator.join(str(row.get(k, "")) for k in keys) for row in self.rows]
        atomic_write_text(self.filename, "\n".join(lines) + "\n")

    def state(self):
        return {}


class TerminateOnNaN(Callback):
    def on_batch_end(self, logs):
        loss = logs.get("loss")
        if loss is not None and not np.isfinite(loss):
            self.stop_training = True
            self.trainer.notes.append("TerminateOnNaN: the loss became NaN or infinite; training stopped")


CALLBACK_CLASSES = {c.__name__: c for c in (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler,
                                            CSVLogger, TerminateOnNaN)}


def make_callbacks(trainer, specs: list[dict]) -> list[Callback]:
    from ..config.training import CALLBACKS

    out = []
    for spec in specs:
        args = dict(spec)
        name = args.pop("type")
        out.append(CALLBACK_CLASSES[name](trainer, **{**CALLBACKS[name], **args}))
    return out
