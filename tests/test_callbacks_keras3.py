"""Callbacks decide as Keras 3 does, and an interrupted + resumed run equals the uninterrupted one.

The expected epoch counts come from Keras 3's code (keras/src/callbacks/early_stopping.py,
reduce_lr_on_plateau.py, terminate_on_nan.py, monitor_callback.py), worked by hand:

* EarlyStopping.on_epoch_end: ``wait += 1`` first; an improvement (``best`` None counts) resets ``wait``
  (only once ``baseline`` is beaten, when there is one) and returns; else it stops when
  ``wait >= patience and epoch > 0``.
* ReduceLROnPlateau.on_epoch_end: in cooldown, ``cooldown_counter -= 1; wait = 0``; an improvement resets
  ``wait``; outside cooldown ``wait += 1`` and at ``wait >= patience`` the rate is multiplied by ``factor``
  (not below ``min_lr``), ``cooldown_counter = cooldown``, ``wait = 0``.
* improvement: ``current + min_delta < best`` in min mode, ``current - min_delta > best`` in max mode.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import layerforge
from layerforge.cli import app
from layerforge.engine.callbacks import EarlyStopping, ReduceLROnPlateau

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "examples" / "data" / "iris.csv"
runner = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}


class _Optimizer:
    def __init__(self, lr):
        self.learning_rate = lr


class _Model:
    def __init__(self, trainer):
        self.trainer = trainer

    def get_weights(self):
        return {"w": [np.array([float(self.trainer.current_epoch)])]}

    def set_weights(self, w):
        self.trainer.restored = w


class _Trainer:
    """Just what the callbacks touch."""

    def __init__(self, lr=1.0):
        self.notes, self.stop_training, self.current_epoch = [], False, 0
        self.optimizer = _Optimizer(lr)
        self.model = _Model(self)
        self.restored = None

    def say(self, message):
        self.notes.append(message)


def drive(cb, values, key="loss", trainer=None):
    """Feed one monitored value per epoch, as the fit loop does; the number of epochs that ran."""
    trainer = trainer or _Trainer()
    cb.set_trainer(trainer)
    cb.on_train_begin()
    ran = 0
    for epoch, v in enumerate(values):
        trainer.current_epoch = epoch
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {key: v})
        ran += 1
        if trainer.stop_training:
            break
    cb.on_train_end()
    return ran, trainer


@pytest.mark.parametrize("params,values,epochs", [
    ({"patience": 2}, [1.0] * 10, 3),  # the case: a flat loss with patience 2 stops after 3 epochs
    ({"patience": 0}, [1.0] * 10, 2),  # epoch 0 sets the best; epoch 1 does not improve (epoch > 0)
    ({"patience": 1}, [1.0] * 10, 2),
    ({"patience": 3}, [5, 4, 3, 3, 3, 3, 3, 3], 6),
    ({"patience": 2, "min_delta": 0.1}, [1.0, 0.95, 0.9, 0.85, 0.8], 3),  # steps of 0.05 do not count
    ({"patience": 2, "min_delta": 0.1}, [1.0, 0.85, 0.7, 0.55, 0.4], 5),  # steps of 0.15 do
    ({"patience": 2}, [1.0, 0.9, 0.9, 0.9, 0.9], 4),
    ({"patience": 2, "baseline": 0.5}, [1.0, 0.9, 0.9, 0.9, 0.9], 3),  # wait keeps counting above the baseline
    ({"patience": 2, "baseline": 0.5}, [1.0, 0.9, 0.8, 0.7, 0.6, 0.55], 6),  # improving: never stops
    ({"patience": 1, "start_from_epoch": 2}, [1.0] * 10, 4),
    ({"patience": 2, "monitor": "val_accuracy"}, [0.5, 0.6, 0.6, 0.6, 0.7], 4),  # auto: accuracy is max mode
    ({"patience": 2, "monitor": "val_accuracy", "mode": "min"}, [0.5, 0.6, 0.6, 0.6, 0.7], 3),
])
def test_early_stopping_epoch_counts_match_keras3(params, values, epochs):
    monitor = params.get("monitor", "loss")
    ran, _ = drive(EarlyStopping(**{"monitor": "loss", **params}), values, key=monitor)
    assert ran == epochs


def test_restore_best_weights_also_when_training_ends_without_stopping():
    ran, trainer = drive(EarlyStopping(monitor="loss", patience=50, restore_best_weights=True), [3.0, 1.0, 2.0, 2.5])
    assert ran == 4 and not trainer.stop_training
    assert trainer.restored == {"w": [np.array([1.0])]}  # the weights at the end of epoch 2 (index 1)
    ran, trainer = drive(EarlyStopping(monitor="loss", patience=1, restore_best_weights=True), [3.0, 1.0, 2.0, 2.5])
    assert ran == 3 and trainer.restored == {"w": [np.array([1.0])]}
    assert any("stopped after epoch 3" in n for n in trainer.notes)


def _lrs(params, values, lr=1.0):
    cb = ReduceLROnPlateau(**{"monitor": "loss", **params})
    trainer = _Trainer(lr)
    cb.set_trainer(trainer)
    cb.on_train_begin()
    out = []
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {"loss": v})
        out.append(trainer.optimizer.learning_rate)
    return out


def test_reduce_lr_on_plateau_matches_keras3():
    # flat: reduced at epochs 2, 4, 6 (index): wait reaches 2, then the cooldown epoch resets it
    assert _lrs({"patience": 2, "cooldown": 1, "factor": 0.5}, [1.0] * 7) == [1, 1, .5, .5, .25, .25, .125]
    assert _lrs({"patience": 2, "factor": 0.5}, [1.0] * 7) == [1, 1, .5, .5, .25, .25, .125]
    assert _lrs({"patience": 1, "factor": 0.5}, [1.0] * 4) == [1, .5, .25, .125]
    assert _lrs({"patience": 0, "factor": 0.5}, [1.0] * 3) == [1, .5, .25]  # epoch 0 always improves
    # changes below min_delta (1e-4 by default) are no improvement
    assert _lrs({"patience": 2, "factor": 0.5}, [1.0, 0.99999, 0.99998]) == [1, 1, 0.5]
    assert _lrs({"patience": 1, "factor": 0.1, "min_lr": 0.05}, [1.0] * 5) == [1, 0.1, 0.05, 0.05, 0.05]
    assert _lrs({"patience": 2, "factor": 0.5, "cooldown": 2}, [1.0] * 8) == [1, 1, .5, .5, .5, .25, .25, .25]


def test_terminate_on_nan_stops_at_the_first_bad_batch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    config = {"input_shape": [4], "seed": 1, "layers": [{"type": "Dense", "units": 1}],
              "training": {"loss": "mse", "optimizer": {"type": "sgd", "learning_rate": 1e12}, "batch_size": 8,
                           "callbacks": ["TerminateOnNaN"]}}
    model = layerforge.Model.from_yaml(config)
    history = model.fit(x, y, epochs=5)
    epoch, batch = model.trainer.nan_at
    assert history.epoch == [0] and epoch == 0 and batch is not None and batch < 7
    assert model.trainer.optimizer.iterations == batch + 1  # no step after the bad batch
    plain = layerforge.Model.from_yaml({**config, "training": {**config["training"], "callbacks": []}})
    assert plain.fit(x, y, epochs=2).epoch == [0, 1]  # without the callback, the epochs go on


# ------------------------------------------------------------------ through the CLI

SMALL = """
name: small
seed: 7
input_shape: [4]
layers:
  - {type: Dense, units: 8, activation: relu}
  - {type: Dropout, rate: 0.2}
  - {type: Dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {type: adam, learning_rate: 0.01}
  metrics: [accuracy]
  epochs: 8
  batch_size: 32
  validation_split: 0.2
data:
  train: {path: %s, target: species}
"""


def train(*args):
    return runner.invoke(app, ["train", *map(str, args)], env=ENV)


def test_nan_run_keeps_the_last_good_epoch_and_does_not_say_saved(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL % IRIS)
    out = tmp_path / "run"
    result = train(cfg, "-o", out, "-q", "training.epochs=5", "training.callbacks=[TerminateOnNaN, "
                   "{type: LearningRateScheduler, schedule: '0.01 if epoch < 2 else 1e30'}]")
    assert result.exit_code == 1, result.output
    assert "NaN" in result.output and "run saved" not in result.output and "after epoch 2" in result.output
    assert json.loads((out / "state.json").read_text())["epoch"] == 2
    weights = layerforge.load(out).get_weights()
    assert all(np.isfinite(a).all() for arrays in weights.values() for a in arrays)
    assert len(json.loads((out / "history.json").read_text())) == 2


CALLBACK_CASES = {
    "early_stopping": "[{type: EarlyStopping, monitor: loss, min_delta: 0.15, patience: 2, "
                      "restore_best_weights: true}]",
    "early_stopping_baseline": "[{type: EarlyStopping, monitor: val_accuracy, baseline: 0.99, patience: 4}]",
    "reduce_lr": "[{type: ReduceLROnPlateau, monitor: loss, min_delta: 0.1, patience: 2, cooldown: 1, factor: 0.5}]",
    "checkpoint_best": "[{type: ModelCheckpoint, filepath: 'best', save_best_only: true, monitor: val_loss}]",
    "csv_logger": "[{type: CSVLogger, filename: log.csv}]",
    "csv_logger_append": "[{type: CSVLogger, filename: log.csv, append: true}]",
    "scheduler": "[{type: LearningRateScheduler, schedule: 'lr * 0.7 if epoch >= 2 else lr'}]",
    "all": "[{type: EarlyStopping, monitor: loss, min_delta: 0.15, patience: 2, restore_best_weights: true},"
           " {type: ReduceLROnPlateau, monitor: loss, min_delta: 0.1, patience: 2, factor: 0.5},"
           " {type: ModelCheckpoint, filepath: 'ck/e{epoch}', save_weights_only: true},"
           " {type: CSVLogger, filename: log.csv}, TerminateOnNaN]",
}


def _interrupt_after(monkeypatch, run_dir: Path, saves: int):
    """Ctrl-C right after the run directory was saved for the ``saves``-th time."""
    from layerforge.io import rundir

    real = rundir.write_run
    count = {"n": 0}

    def write_run(path, **kw):
        out = real(path, **kw)
        if Path(path) == run_dir:
            count["n"] += 1
            if count["n"] == saves:
                raise KeyboardInterrupt
        return out

    monkeypatch.setattr(rundir, "write_run", write_run)
    return lambda: monkeypatch.setattr(rundir, "write_run", real)


@pytest.mark.parametrize("case", sorted(CALLBACK_CASES))
@pytest.mark.parametrize("stop_after", [1, 3])
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path, monkeypatch, case, stop_after):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL % IRIS)
    callbacks = f"training.callbacks={CALLBACK_CASES[case]}"
    full, part = tmp_path / "full", tmp_path / "part"
    assert train(cfg, "-o", full, "-q", callbacks).exit_code == 0
    ran = len(json.loads((full / "history.json").read_text()))
    if stop_after >= ran:
        pytest.skip(f"the uninterrupted run stopped after {ran} epochs")
    restore = _interrupt_after(monkeypatch, part, stop_after)
    result = train(cfg, "-o", part, "-q", callbacks)
    assert result.exit_code == 130, result.output
    assert f"holds epoch {stop_after}" in result.output and "--resume" in result.output
    restore()
    result = train("--resume", part, "-q")
    assert result.exit_code == 0, result.output
    assert (part / "history.json").read_text() == (full / "history.json").read_text()
    for name in ("log.csv",):
        if (full / name).exists():
            assert (part / name).read_text() == (full / name).read_text()
    for a, b in zip(sorted((full / "ck").glob("*")) if (full / "ck").exists() else [],
                    sorted((part / "ck").glob("*"))):
        assert a.name == b.name
    wf, wp = layerforge.load(full).get_weights(), layerforge.load(part).get_weights()
    for name in wf:
        for a, b in zip(wf[name], wp[name]):
            np.testing.assert_array_equal(a, b)
    sf = json.loads((full / "state.json").read_text())
    sp = json.loads((part / "state.json").read_text())
    assert sf["callbacks"] == sp["callbacks"]


def test_the_cases_exercise_the_callback_state():
    """Guard for the test above: with these settings the state is not trivial (it would pass vacuously)."""
    result = {}
    for case in ("early_stopping", "reduce_lr"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "small.yaml"
            cfg.write_text(SMALL % IRIS)
            out = Path(tmp) / "run"
            assert train(cfg, "-o", out, "-q", f"training.callbacks={CALLBACK_CASES[case]}").exit_code == 0
            result[case] = json.loads((out / "history.json").read_text())
    assert len(result["early_stopping"]) < 8  # it stopped early
    lrs = [h["learning_rate"] for h in result["reduce_lr"]]
    assert len(set(lrs)) > 1  # the rate was lowered
