"""The Python API trains as Keras' fit does; ModelCheckpoint writes real checkpoints; API errors are layerforge's."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import layerforge
from layerforge.cli import app
from layerforge.engine.callbacks import EarlyStopping, History
from layerforge.errors import CheckpointError, DataError, UserError

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "examples" / "data" / "iris.csv"
runner = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}


def small(**training):
    return {"name": "small", "seed": 5, "input_shape": [4],
            "layers": [{"type": "Dense", "units": 6, "activation": "tanh"},
                       {"type": "Dense", "units": 3, "activation": "softmax"}],
            "training": {"loss": "sparse_categorical_crossentropy",
                         "optimizer": {"type": "adam", "learning_rate": 0.01}, "metrics": ["accuracy"],
                         "batch_size": 8, **training}}


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return x, y


def flat(weights):
    return np.concatenate([a.ravel() for arrays in weights.values() for a in arrays])


# ------------------------------------------------------------------ 1. fit semantics

def test_every_fit_call_trains_from_the_current_weights_and_returns_a_history():
    x, y = data()
    model = layerforge.Model.from_yaml(small())
    w0 = flat(model.get_weights())
    h1 = model.fit(x, y, epochs=1)
    w1 = flat(model.get_weights())
    h2 = model.fit(x, y, epochs=1)
    w2 = flat(model.get_weights())
    assert not np.array_equal(w0, w1) and not np.array_equal(w1, w2)
    assert isinstance(h1, History) and h1.epoch == [0] and h2.epoch == [0]
    assert set(h1.history) >= {"loss", "accuracy", "learning_rate"} and len(h1.history["loss"]) == 1
    h3 = model.fit(x, y, epochs=4, initial_epoch=2)
    assert h3.epoch == [2, 3] and len(h3.history["loss"]) == 2


def test_a_loaded_finished_run_trains_again(tmp_path):
    x, y = data()
    model = layerforge.Model.from_yaml(small(epochs=2))
    model.fit(x, y)
    model.save(tmp_path / "run")
    again = layerforge.load(tmp_path / "run")
    before = flat(again.get_weights())
    history = again.fit(x, y, epochs=1)
    assert history.epoch == [0] and not np.array_equal(before, flat(again.get_weights()))


def test_fit_takes_the_keras_keywords(capsys):
    x, y = data(60)
    model = layerforge.Model.from_yaml(small())
    h = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, shuffle=False, class_weight={0: 1.0, 1: 2.0},
                  verbose=0)
    assert "val_loss" in h.history and "val_accuracy" in h.history
    h = model.fit(x[:40], y[:40], epochs=1, validation_data=(x[40:], y[40:]), sample_weight=np.ones(40))
    assert "val_loss" in h.history
    stop = EarlyStopping(monitor="loss", patience=0, min_delta=100.0)
    h = model.fit(x, y, epochs=10, callbacks=[stop])
    assert h.epoch == [0, 1]  # epoch 0 sets the best; epoch 1 does not improve by 100
    capsys.readouterr()
    model.fit(x, y, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    model.fit(x, y, epochs=1, quiet=False)
    assert "Epoch 1/1" in capsys.readouterr().out


def test_shuffle_false_repeats_and_shuffle_true_differs():
    x, y = data()
    runs = {}
    for shuffle in (False, True):
        model = layerforge.Model.from_yaml(small(), seed=3)
        model.fit(x, y, epochs=1, shuffle=shuffle)
        runs[shuffle] = flat(model.get_weights())
    unshuffled = layerforge.Model.from_yaml(small(shuffle=False), seed=3)
    unshuffled.fit(x, y, epochs=1)
    np.testing.assert_array_equal(runs[False], flat(unshuffled.get_weights()))
    assert not np.array_equal(runs[False], runs[True])


# ------------------------------------------------------------------ 8. API errors

def test_text_labels_are_encoded_as_the_cli_does():
    x, y = data()
    names = np.array(["cat", "dog", "eel"])[y]
    model = layerforge.Model.from_yaml(small())
    h = model.fit(x, names, epochs=3)
    assert len(h.epoch) == 3
    assert model.encoders["dense_1"]["classes"] == ["cat", "dog", "eel"]
    scores = model.evaluate(x, names)  # three seeded epochs: 0.6 accuracy (a third by chance), loss 0.89 (log 3 = 1.10)
    assert scores["accuracy"] >= 0.5 and scores["loss"] < 0.95
    with pytest.raises(DataError, match="'fox'"):
        model.fit(x[:2], np.array(["cat", "fox"]), epochs=1)


def test_api_user_errors_are_layerforge_errors():
    x, y = data()
    model = layerforge.Model.from_yaml(small())
    with pytest.raises(DataError, match="without a batch axis"):
        model.predict(x[0])
    bad_calls = [
        lambda: model.predict(np.zeros((3, 5))),
        lambda: model.predict(np.array([["a", "b", "c", "d"]])),
        lambda: model.fit(x, y[:10], epochs=1),
        lambda: model.fit(x, epochs=1),
        lambda: model.fit(x, y, epochs=0),
        lambda: model.fit(x, y, batch_size=0),
        lambda: model.fit(x, y, epochs=2, initial_epoch=2),
        lambda: model.fit(x, y, validation_split=1.5),
        lambda: model.fit(x, y, callbacks=[{"type": "EarlyStopping", "patience": 2.5}]),
        lambda: model.fit(x, y, callbacks=[{"type": "EarlyStoping"}]),
        lambda: EarlyStopping(patience="3"),
        lambda: EarlyStopping(mode="up"),
        lambda: model.set_weights({"dense": [np.zeros((3, 3)), np.zeros(6)]}),
        lambda: model.evaluate(x),
        lambda: model.fit(x, np.zeros((len(x), 5))),  # one-hot rows for a sparse loss
        lambda: model.fit(x, y, callbacks=[3]),
        lambda: model.predict(None),
    ]
    for call in bad_calls:
        with pytest.raises(UserError) as info:
            call()
        assert str(info.value)


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    x, y = data()
    model = layerforge.Model.from_yaml(small())
    model.fit(x, y, epochs=1)
    model.save(tmp_path / "run")
    with pytest.raises(CheckpointError, match="already exists"):
        model.save(tmp_path / "run")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError):
        model.save(tmp_path / "notes.txt", overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    model.fit(x, y, epochs=1)
    model.save(tmp_path / "run", overwrite=True)
    np.testing.assert_array_equal(flat(layerforge.load(tmp_path / "run").get_weights()), flat(model.get_weights()))


# ------------------------------------------------------------------ 2. ModelCheckpoint

SMALL_YAML = """
name: small
seed: 7
input_shape: [4]
layers:
  - {type: Dense, units: 8, activation: relu}
  - {type: Dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {type: adam, learning_rate: 0.01}
  metrics: [accuracy]
  epochs: 4
  batch_size: 32
  validation_split: 0.2
data:
  train: {path: %s, target: species}
"""


def small_config(tmp_path) -> Path:
    p = tmp_path / "small.yaml"
    p.write_text(SMALL_YAML % IRIS)
    return p


def train(*args):
    return runner.invoke(app, ["train", *map(str, args)], env=ENV)


def test_model_checkpoint_writes_loadable_run_directories(tmp_path):
    cfg = small_config(tmp_path)
    out = tmp_path / "run"
    result = train(cfg, "-o", out, "-q",
                   "training.callbacks=[{type: ModelCheckpoint, filepath: 'ckpt-{epoch:02d}-{val_loss:.3f}'}]")
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    expected = [f"ckpt-{i + 1:02d}-{h['val_loss']:.3f}" for i, h in enumerate(history)]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("ckpt")) == expected
    first = out / expected[0]
    assert json.loads((first / "state.json").read_text())["epoch"] == 1
    assert not [p for p in out.rglob(".*")]  # atomic: no temporary files left
    model = layerforge.load(first)
    assert model.trainer.epoch == 1
    r = runner.invoke(app, ["predict", str(first), "--data", str(IRIS)], env=ENV)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", str(first), "--data", str(IRIS), "--json"], env=ENV)
    assert r.exit_code == 0 and "loss" in json.loads(r.output)
    r = train("--resume", first, "-q", "training.epochs=2")
    assert r.exit_code == 0, r.output
    assert json.loads((first / "state.json").read_text())["epoch"] == 2


def test_model_checkpoint_best_only_and_weights_only(tmp_path):
    cfg = small_config(tmp_path)
    out = tmp_path / "run"
    result = train(cfg, "-o", out, "-q", "training.epochs=6", "training.optimizer.learning_rate=0.3",
                   "training.callbacks=[{type: ModelCheckpoint, filepath: 'w/best', monitor: val_loss, mode: min, "
                   "save_best_only: true, save_weights_only: true}, {type: ModelCheckpoint, filepath: 'all/e{epoch}',"
                   " save_weights_only: true}]")
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    assert sorted(p.name for p in (out / "all").iterdir()) == sorted(f"e{i}.safetensors" for i in range(1, 7))
    best = int(np.argmin([h["val_loss"] for h in history])) + 1
    from safetensors.numpy import load_file

    saved = load_file(str(out / "w" / "best.safetensors"))
    at_best = load_file(str(out / "all" / f"e{best}.safetensors"))
    assert set(saved) == {"dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"}
    for k in saved:
        np.testing.assert_array_equal(saved[k], at_best[k])
    state = json.loads((out / "state.json").read_text())
    assert state["callbacks"][0]["state"]["best"] == pytest.approx(min(h["val_loss"] for h in history))


def test_model_checkpoint_bad_template_is_a_clear_error(tmp_path):
    cfg = small_config(tmp_path)
    result = train(cfg, "-o", tmp_path / "r", "-q",
                   "training.callbacks=[{type: ModelCheckpoint, filepath: 'c-{val_los:.2f}'}]")
    assert result.exit_code == 2 and "val_los" in result.output and "Traceback" not in result.output
    result = train(cfg, "-o", tmp_path / "r2", "-q",
                   "training.callbacks=[{type: ModelCheckpoint, filepath: x.safetensors}]")
    assert result.exit_code == 2 and "save_weights_only" in result.output


def test_a_monitor_training_does_not_log_is_refused_before_training(tmp_path):
    x, y = data()
    model = layerforge.Model.from_yaml(small())
    before = flat(model.get_weights())
    with pytest.raises(UserError, match="(?s)val_loss.*validation"):
        model.fit(x, y, epochs=3, callbacks=[EarlyStopping()])  # val_loss without validation data
    with pytest.raises(UserError, match="'acc'"):
        model.fit(x, y, epochs=3, callbacks=[{"type": "ModelCheckpoint", "filepath": str(tmp_path / "c{acc}")}])
    np.testing.assert_array_equal(before, flat(model.get_weights()))  # nothing trained


def test_class_ids_for_a_categorical_output_are_one_hot_encoded():
    x, y = data()
    config = small(loss="categorical_crossentropy")
    a = layerforge.Model.from_yaml(config, seed=2)
    b = layerforge.Model.from_yaml(config, seed=2)
    a.fit(x, y, epochs=1, shuffle=False)
    b.fit(x, np.eye(3)[y], epochs=1, shuffle=False)
    np.testing.assert_array_equal(flat(a.get_weights()), flat(b.get_weights()))
    with pytest.raises(DataError, match="3 classes"):
        a.fit(x, np.full(len(x), 5), epochs=1)


def test_checkpoints_and_csv_log_from_python_start_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = data()
    model = layerforge.Model.from_yaml(small())
    model.fit(x, y, epochs=2, callbacks=[{"type": "ModelCheckpoint", "filepath": "ck/e{epoch}", "monitor": "loss"},
                                         {"type": "CSVLogger", "filename": "log.csv"}])
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["e1", "e2"]
    np.testing.assert_array_equal(flat(layerforge.load(tmp_path / "ck" / "e2").get_weights()),
                                  flat(model.get_weights()))
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,loss") and [ln.split(",")[0] for ln in lines[1:]] == ["0", "1"]
