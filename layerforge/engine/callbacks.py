"""Keras 3 callbacks, driven by the fit loop.

The decisions follow Keras 3's own code (keras/src/callbacks/*.py): EarlyStopping counts ``wait`` before
comparing and stops once ``wait >= patience``; ReduceLROnPlateau lowers the rate once ``wait >= patience``
outside its cooldown; TerminateOnNaN stops at the first batch whose loss is not finite.

Each callback keeps its state in plain attributes and gives it back through ``state()`` (JSON values) and
``arrays()`` (numpy arrays, e.g. EarlyStopping's best weights), so ``--resume`` continues exactly where an
interrupted run stopped. ``on_train_begin`` resets the state as Keras does on every ``fit``; a resumed run
loads the saved state after it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError, Problem, RunFailed


def monitor_direction(monitor: str, mode: str) -> str:
    """"min" or "max": Keras 3 picks "max" in auto mode for metrics that grow as they get better."""
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    return "max" if any(k in name for k in ("acc", "auc", "precision", "recall", "f1")) else "min"


class Callback:
    """Base class. ``set_trainer`` is called by the fit loop (Keras' ``set_model``)."""

    config_model = None  # the pydantic model of the parameters (layerforge.config.training)

    def __init__(self, **params):
        if self.config_model is not None:
            params = validate_callback_params(type(self).__name__, params)
        self.params = params
        self.__dict__.update(params)
        self.trainer = None

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self):
        pass

    def resolve(self, path: str) -> Path:
        """A relative path starts from the run directory (`train`), or the current folder (Python)."""
        p = Path(path)
        base = self.trainer.run_dir
        return p if p.is_absolute() else (Path(base) if base is not None else Path.cwd()) / p

    def on_epoch_begin(self, epoch: int):
        pass

    def on_batch_end(self, batch: int, logs: dict):
        pass

    def on_epoch_end(self, epoch: int, logs: dict):
        pass

    def on_train_end(self):
        pass

    def stop(self) -> None:
        self.trainer.stop_training = True

    def say(self, message: str) -> None:
        """With ``verbose: 1``, a line as soon as the callback acts (Keras prints the same lines)."""
        if getattr(self, "verbose", 0):
            self.trainer.say(message)

    def note(self, message: str) -> None:
        """A line for the end-of-training summary, unless ``verbose: 1`` said it already."""
        if not getattr(self, "verbose", 0):
            self.trainer.notes.append(message)

    # resume: JSON-able state and arrays
    def state(self) -> dict:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        self.__dict__.update(state)

    def _value(self, logs: dict, key: str) -> float:
        if key not in logs:
            raise ConfigError(problems=[Problem(
                message=f"{type(self).__name__} monitors '{key}', which training does not report",
                path="training.callbacks", found=key, expected=", ".join(sorted(logs)),
                hint="val_* values need validation data (validation_split, validation_data or data.validation)")])
        return float(logs[key])


def validate_callback_params(name: str, params: dict) -> dict:
    """Check ``params`` against the callback's config model; a ConfigError (not pydantic's) when wrong."""
    from pydantic import ValidationError

    from ..config.training import CALLBACK_MODELS, normalize_callback

    try:
        spec = normalize_callback({"type": name, **params})
        cfg = CALLBACK_MODELS[name].model_validate(spec)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"] if p != name)
        raise ConfigError(problems=[Problem(message=f"{name}: {field}: {err['msg'].removeprefix('Value error, ')}",
                                            found=repr(err.get("input")))]) from None
    except ValueError as exc:
        raise ConfigError(problems=[Problem(message=str(exc))]) from None
    return cfg.model_dump(exclude={"type"})


class History(Callback):
    """What ``fit`` returns: ``history`` (name -> one value per epoch) and ``epoch`` (the epoch indices)."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.params: dict = {}  # epochs, steps per epoch, initial_epoch (set by the fit loop)

    def on_train_begin(self):
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class _Monitor(Callback):
    """Keras 3 MonitorCallback: ``best`` starts at None (the first value always improves)."""

    def __init__(self, **params):
        super().__init__(**params)
        self.direction = monitor_direction(self.monitor, self.mode)
        self.best = None
        self.wait = 0

    def is_improvement(self, value: float, reference) -> bool:
        if reference is None:
            return True
        delta = abs(getattr(self, "min_delta", 0.0) or 0.0)
        if self.direction == "min":
            return value + delta < reference
        return value - delta > reference


class EarlyStopping(_Monitor):
    from ..config.training import EarlyStoppingConfig as config_model

    def on_train_begin(self):
        self.wait, self.stopped_epoch, self.best, self.best_weights, self.best_epoch = 0, 0, None, None, 0

    def on_epoch_end(self, epoch, logs):
        if epoch < self.start_from_epoch:
            return
        current = self._value(logs, self.monitor)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.trainer.model.get_weights()  # Keras: the first watched epoch's weights
            self.best_epoch = epoch
        self.wait += 1
        if self.is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.trainer.model.get_weights()
            if self.baseline is None or self.is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.say(f"Epoch {epoch + 1}: early stopping")
            self.stop()

    def on_train_end(self):
        if self.stopped_epoch > 0:
            self.note(f"EarlyStopping: stopped after epoch {self.stopped_epoch + 1} ({self.monitor} did not "
                      f"improve for {self.wait} epoch{'s' if self.wait != 1 else ''})")
        if self.restore_best_weights and self.best_weights is not None:
            self.say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.trainer.model.set_weights(self.best_weights)
            self.note(f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1} "
                      f"({self.monitor} {self.best:.4g})")

    def state(self):
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "has_best_weights": self.best_weights is not None}

    def arrays(self):
        if self.best_weights is None:
            return {}
        return {f"{name}/{i}": a for name, arrays in self.best_weights.items() for i, a in enumerate(arrays)}

    def load_state(self, state, arrays):
        self.wait, self.best = int(state["wait"]), state["best"]
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
        self.best_weights = None
        if state.get("has_best_weights"):
            weights: dict[str, list] = {}
            for key in sorted(arrays, key=lambda k: (k.rpartition("/")[0], int(k.rpartition("/")[2]))):
                weights.setdefault(key.rpartition("/")[0], []).append(arrays[key])
            self.best_weights = weights


class ReduceLROnPlateau(_Monitor):
    from ..config.training import ReduceLROnPlateauConfig as config_model

    def on_train_begin(self):
        self.best, self.cooldown_counter, self.wait = None, 0, 0

    def on_epoch_end(self, epoch, logs):
        current = self._value(logs, self.monitor)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.cooldown_counter > 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.trainer.optimizer
                old = float(opt.learning_rate)
                if old > np.float32(self.min_lr):
                    opt.learning_rate = max(old * self.factor, self.min_lr)
                    self.say(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {opt.learning_rate}.")
                    self.note(f"ReduceLROnPlateau: learning rate {old:.3g} -> {opt.learning_rate:.3g} after epoch "
                              f"{epoch + 1}")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def state(self):
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": self.best}


class ModelCheckpoint(_Monitor):
    """Saves the model under ``filepath`` (relative to the run directory; the current folder from Python):
    a whole run directory, or with ``save_weights_only`` a ``.safetensors`` file of the weights."""

    from ..config.training import ModelCheckpointConfig as config_model

    def __init__(self, **params):
        super().__init__(**params)
        if not self.save_weights_only and self.filepath.endswith(".safetensors"):
            raise ConfigError(problems=[Problem(
                message=f"ModelCheckpoint filepath '{self.filepath}' names a weights file, but save_weights_only "
                        "is false (a whole run directory is saved)", path="training.callbacks",
                hint="add `save_weights_only: true`, or drop the .safetensors ending")])
        self.saved: list[str] = []

    def on_train_begin(self):
        self.best = self.initial_value_threshold

    def on_epoch_end(self, epoch, logs):
        if (epoch + 1) % self.period:
            return
        path = self.path_for(epoch, logs)
        if self.save_best_only:
            current = self._value(logs, self.monitor)
            if not self.is_improvement(current, self.best):
                self.say(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            self.best = current
        self.say(f"Epoch {epoch + 1}: saving model to {path}")
        self.saved.append(str(path))
        self.trainer.request_checkpoint(path, weights_only=self.save_weights_only)

    def path_for(self, epoch: int, logs: dict) -> Path:
        try:
            name = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as exc:
            raise ConfigError(problems=[Problem(
                message=f"ModelCheckpoint filepath '{self.filepath}' names {{{exc.args[0]}}}, which training does "
                        "not log", path="training.callbacks", expected="{epoch} or one of: " + ", ".join(logs))]) \
                from None
        except (ValueError, IndexError) as exc:
            raise ConfigError(problems=[Problem(
                message=f"ModelCheckpoint filepath '{self.filepath}' is not a valid template: {exc}",
                path="training.callbacks", hint="e.g. ckpt-{epoch:02d}-{val_loss:.3f}")]) from None
        if self.save_weights_only and not name.endswith(".safetensors"):
            name += ".safetensors"
        return self.resolve(name)

    def state(self):
        return {"best": self.best}


class LearningRateScheduler(Callback):
    from ..config.training import LearningRateSchedulerConfig as config_model

    def on_epoch_begin(self, epoch):
        from ..expressions import evaluate_scalar

        opt = self.trainer.optimizer
        lr = float(evaluate_scalar(self.schedule, {"epoch": epoch, "lr": float(opt.learning_rate)}))
        if not np.isfinite(lr) or lr <= 0:
            raise RunFailed(f"LearningRateScheduler gave learning rate {lr} at epoch {epoch + 1}")
        opt.learning_rate = lr
        self.say(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")


class CSVLogger(Callback):
    """Writes one row per epoch (``epoch`` from 0, as Keras), the whole file atomically every epoch.
    A relative filename starts from the run directory (`train`) or the current folder (Python)."""

    from ..config.training import CSVLoggerConfig as config_model

    def _path(self) -> Path:
        return self.resolve(self.filename)

    def on_train_begin(self):
        self.rows = self._read() if self.append else []

    def _read(self) -> list[dict]:
        import csv

        path = self._path()
        if not path.is_file():
            return []
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh, delimiter=self.separator))

    def on_epoch_end(self, epoch, logs):
        from ..io.atomic import atomic_write_text

        self.rows.append({"epoch": epoch, **logs})
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        lines = [self.separator.join(keys)]
        lines += [self.separator.join(str(row.get(k, "")) for k in keys) for row in self.rows]
        atomic_write_text(self._path(), "\n".join(lines) + "\n")

    def state(self):
        return {"rows": len(self.rows)}

    def load_state(self, state, arrays):
        # the file as it was when the run was saved: rows written after that (an epoch cut short) are dropped
        self.rows = self._read()[: int(state["rows"])]


class TerminateOnNaN(Callback):
    from ..config.training import TerminateOnNaNConfig as config_model

    def on_batch_end(self, batch, logs):
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            epoch = self.trainer.current_epoch
            message = f"the loss became {loss} in epoch {epoch + 1}, batch {batch + 1}"
            if self.raise_error:
                raise RunFailed(message)
            self.trainer.nan_at = (epoch, batch)
            self.trainer.notes.append(f"TerminateOnNaN: {message}; training stopped")
            self.stop()


CALLBACK_CLASSES = {c.__name__: c for c in (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler,
                                            CSVLogger, TerminateOnNaN)}


def make_callbacks(specs) -> list[Callback]:
    """Callbacks from config entries (validated models or dicts) or Callback instances (the Python API)."""
    out = []
    for spec in specs or []:
        if isinstance(spec, Callback):
            out.append(spec)
            continue
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict) and not hasattr(spec, "model_dump"):
            raise ConfigError(problems=[Problem(
                message=f"a callback is a Callback object or {{type: EarlyStopping, ...}}, not {spec!r}",
                path="callbacks")])
        args = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)
        name = args.pop("type", None)
        if name not in CALLBACK_CLASSES:
            from ..config.training import normalize_callback

            try:
                name = normalize_callback({"type": name})["type"]
            except ValueError as exc:
                raise ConfigError(problems=[Problem(message=str(exc), path="callbacks")]) from None
        out.append(CALLBACK_CLASSES[name](**args))
    return out
