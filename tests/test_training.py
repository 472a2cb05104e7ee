"""End to end: whole-model gradients, fit, the run directory, resume, predict/evaluate, bad data."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import layerforge
from layerforge.cli import app
from layerforge.testing import check_model_gradients

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "examples" / "data" / "iris.csv"
runner = CliRunner()


def mlp(loss, units=3, activation="softmax", **training):
    return {
        "input_shape": [4], "seed": 3,
        "layers": [
            {"type": "Dense", "units": 5, "activation": "tanh", "kernel_regularizer": {"l1": 0.01, "l2": 0.02},
             "activity_regularizer": {"l2": 0.01}},
            {"type": "Dropout", "rate": 0.3},
            {"type": "Dense", "units": units, "activation": activation},
        ],
        "training": {"loss": loss, **training},
    }


@pytest.mark.parametrize("loss,units,activation,target", [
    ("sparse_categorical_crossentropy", 3, "softmax", "sparse"),
    ("categorical_crossentropy", 3, "softmax", "onehot"),
    ("binary_crossentropy", 1, "sigmoid", "binary"),
    ("mse", 2, "linear", "real"),
    ({"type": "huber", "delta": 0.5}, 2, "linear", "real"),
])
def test_whole_model_gradients_including_loss(loss, units, activation, target):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    y = {"sparse": rng.integers(0, 3, 6), "onehot": np.eye(3)[rng.integers(0, 3, 6)],
         "binary": rng.integers(0, 2, (6, 1)).astype(float), "real": rng.standard_normal((6, units))}[target]
    check_model_gradients(mlp(loss, units, activation), [x], [y])


def test_two_output_graph_gradients_with_loss_weights():
    config = {
        "inputs": [{"name": "a", "shape": [3]}, {"name": "b", "shape": [3]}], "seed": 1,
        "layers": [
            {"type": "Dense", "units": 4, "name": "da", "inputs": ["a"], "activation": "tanh"},
            {"type": "Dense", "units": 4, "name": "db", "inputs": ["b"], "activation": "tanh"},
            {"type": "Concatenate", "inputs": ["da", "db"], "name": "cat"},
            {"type": "Dense", "units": 2, "name": "reg", "inputs": ["cat"]},
            {"type": "Dense", "units": 3, "name": "cls", "inputs": ["da"], "activation": "softmax"},
        ],
        "outputs": ["reg", "cls"],
        "training": {"loss": {"reg": "mse", "cls": "sparse_categorical_crossentropy"},
                     "loss_weights": {"reg": 0.5, "cls": 2.0}},
    }
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((5, 3)), rng.standard_normal((5, 3))]
    ys = [rng.standard_normal((5, 2)), rng.integers(0, 3, 5)]
    check_model_gradients(config, xs, ys)


def _train(args):
    result = runner.invoke(app, ["train", *map(str, args)])
    return result


def test_iris_trains_to_093_and_predicts_labels(tmp_path):
    out = tmp_path / "run"
    result = _train([ROOT / "configs" / "iris.yaml", "--output", out, "--quiet"])
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["val_accuracy"] >= 0.93
    for name in ("config.yaml", "weights.safetensors", "optimizer.safetensors", "state.json", "history.csv",
                 "schema.json"):
        assert (out / name).exists()
    # predict on the training CSV without its target column: one label per row
    rows = IRIS.read_text().splitlines()
    no_target = tmp_path / "new.csv"
    no_target.write_text("\n".join(",".join(r.split(",")[:4]) for r in rows) + "\n")
    preds = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(out), "--data", str(no_target), "--output", str(preds)])
    assert result.exit_code == 0, result.output
    lines = preds.read_text().splitlines()
    assert lines[0] == "species" and len(lines) == 151
    assert set(lines[1:]) <= {"setosa", "versicolor", "virginica"}
    truth = [r.split(",")[4] for r in rows[1:]]
    assert np.mean([a == b for a, b in zip(lines[1:], truth)]) > 0.9
    result = runner.invoke(app, ["evaluate", str(out), "--data", str(IRIS), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["accuracy"] > 0.9


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
  epochs: 6
  batch_size: 32
  validation_split: 0.2
data:
  train: {path: %s, target: species}
"""


def small_config(tmp_path):
    p = tmp_path / "small.yaml"
    p.write_text(SMALL % IRIS)
    return p


def test_resume_equals_uninterrupted_and_seed_repeats(tmp_path):
    cfg = small_config(tmp_path)
    assert _train([cfg, "-o", tmp_path / "full", "-q"]).exit_code == 0
    assert _train([cfg, "-o", tmp_path / "again", "-q"]).exit_code == 0
    assert _train([cfg, "-o", tmp_path / "part", "-q", "training.epochs=3"]).exit_code == 0
    # the run keeps the overrides it was started with (training.epochs=3): the new total is given again
    result = _train([cfg, "--resume", tmp_path / "part", "-q", "training.epochs=6"])
    assert result.exit_code == 0, result.output
    full = layerforge.load(tmp_path / "full").get_weights()
    again = layerforge.load(tmp_path / "again").get_weights()
    resumed = layerforge.load(tmp_path / "part").get_weights()
    for name in full:
        for a, b, c in zip(full[name], again[name], resumed[name]):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
    h_full = json.loads((tmp_path / "full" / "history.json").read_text())
    h_res = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [r["loss"] for r in h_full] == [r["loss"] for r in h_res]
    # nothing more to do: a clear message
    result = _train([cfg, "--resume", tmp_path / "part", "-q"])
    assert result.exit_code == 2 and "already has 6 epochs" in result.output


BAD_DATA = {
    "wrong_columns.csv": "a,b,c,d,species\n1,2,3,4,setosa\n1,2,3,setosa\n",
    "string.csv": "a,b,c,d,species\n1,2,3,4,setosa\n1,two,3,4,setosa\n",
    "nan.csv": "a,b,c,d,species\n1,2,3,4,setosa\n1,nan,3,4,setosa\n",
    "inf.csv": "a,b,c,d,species\n1,2,3,4,setosa\n1,inf,3,4,setosa\n",
    "empty.csv": "",
    "no_target.csv": "a,b,c,d,kind\n1,2,3,4,setosa\n",
}


@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_bad_data_refused_and_nothing_written(tmp_path, name):
    cfg = small_config(tmp_path)
    bad = tmp_path / name
    bad.write_text(BAD_DATA[name])
    out = tmp_path / "out"
    result = _train([cfg, "--data", bad, "-o", out, "-q"])
    assert result.exit_code == 2, result.output
    assert name in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_wrong_npy_shape_and_unseen_class(tmp_path):
    cfg = small_config(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((5, 3), np.float32))
    result = runner.invoke(app, ["train", str(cfg), "--data", str(tmp_path / "x.npy"), "-q",
                                 "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "x.npy" in result.output
    out = tmp_path / "run"
    assert _train([cfg, "-o", out, "-q", "training.epochs=1"]).exit_code == 0
    unseen = tmp_path / "unseen.csv"
    unseen.write_text("a,b,c,d,species\n1,2,3,4,setosa\n1,2,3,4,rosa\n")
    result = runner.invoke(app, ["evaluate", str(out), "--data", str(unseen)])
    assert result.exit_code == 2 and "rosa" in result.output


def test_interrupted_save_leaves_previous_run_loadable(tmp_path, monkeypatch):
    cfg = small_config(tmp_path)
    out = tmp_path / "run"
    assert _train([cfg, "-o", out, "-q", "training.epochs=2"]).exit_code == 0
    before = layerforge.load(out).get_weights()
    from layerforge.io import rundir

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process is killed while writing the weights

    monkeypatch.setattr(rundir, "_save_tensors", crash)
    model = layerforge.load(out)
    with pytest.raises(KeyboardInterrupt):
        model.save(out, overwrite=True)
    after = layerforge.load(out).get_weights()
    for name in before:
        for a, b in zip(before[name], after[name]):
            np.testing.assert_array_equal(a, b)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_output_directory_is_never_overwritten(tmp_path):
    cfg = small_config(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _train([cfg, "-o", out, "-q"])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (out / "notes.txt").read_text() == "keep me"


def test_python_api_round_trip(tmp_path):
    model = layerforge.Model.from_yaml(small_config(tmp_path), ["training.epochs=2"])
    model.fit()
    weights = model.get_weights()
    assert list(weights) == ["dense", "dropout", "dense_1"][:1] + ["dense_1"] or "dense" in weights
    assert [w.shape for w in weights["dense"]] == [(4, 8), (8,)]
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    before = model.predict(x)
    model.save(tmp_path / "saved")
    loaded = layerforge.load(tmp_path / "saved")
    np.testing.assert_array_equal(loaded.predict(x), before)
    fresh = layerforge.Model.from_yaml(small_config(tmp_path))
    fresh.set_weights(weights)
    np.testing.assert_array_equal(fresh.predict(x), before)
    with pytest.raises(layerforge.errors.ConfigError):
        fresh.set_weights({"dense": weights["dense"][:1]})


def test_callbacks(tmp_path):
    cfg = small_config(tmp_path)
    log = tmp_path / "log.csv"
    result = _train([cfg, "-o", tmp_path / "r", "-q", "training.epochs=30",
                     "training.optimizer.learning_rate=0.0001",
                     f"training.callbacks=[{{type: EarlyStopping, monitor: loss, patience: 0, min_delta: 10}},"
                     f" {{type: CSVLogger, filename: '{log}'}}]"])
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert len(history) == 2  # epoch 1 sets the best, epoch 2 does not improve by 10
    assert log.read_text().splitlines()[0].startswith("epoch")
    result = _train([cfg, "-o", tmp_path / "s", "-q", "training.epochs=4",
                     "training.callbacks=[{type: LearningRateScheduler, schedule: 'lr * 0.5'},"
                     " {type: ReduceLROnPlateau, monitor: loss, min_delta: 100, patience: 1, factor: 0.5}]"])
    assert result.exit_code == 0, result.output
    lrs = [r["learning_rate"] for r in json.loads((tmp_path / "s" / "history.json").read_text())]
    assert lrs[0] == pytest.approx(0.005) and lrs[1] < lrs[0]


def test_nan_loss_exits_1(tmp_path):
    cfg = small_config(tmp_path)
    result = _train([cfg, "-o", tmp_path / "n", "-q", "training.optimizer.learning_rate=1e30",
                     "training.epochs=3", "training.callbacks=[TerminateOnNaN]"])
    assert result.exit_code == 1, result.output
    assert "NaN" in result.output and "run saved" not in result.output
    assert not (tmp_path / "n" / "weights.safetensors").exists()  # no epoch ended with a finite loss


def test_keeps_no_temp_dirs_and_copies_nothing_extra(tmp_path):
    cfg = small_config(tmp_path)
    out = tmp_path / "r"
    assert _train([cfg, "-o", out, "-q", "training.epochs=1"]).exit_code == 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    shutil.rmtree(out)


def test_predict_runs_batches_in_parallel_with_the_serial_results():
    import numba

    from layerforge.engine import inference
    from layerforge.kernels.threads import current_threads

    # BatchNormalization and gelu run Numba parallel kernels: two batch threads must take turns launching them
    config = {"name": "par", "input_shape": [2048],
              "layers": [{"type": "BatchNormalization"}, {"type": "Activation", "activation": "gelu"},
                         {"type": "BatchNormalization"}, {"type": "Dropout", "rate": 0.3},
                         {"type": "Dense", "units": 3, "activation": "softmax"}],
              "training": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam"}}
    model = layerforge.Model.from_yaml(config, seed=1)
    x = np.random.default_rng(0).standard_normal((1003, 2048)).astype(np.float32)
    before = current_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        assert inference.batches_in_parallel(model.compiled)
        parallel = model.predict(x, batch_size=20)  # 51 batches, the last one short
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(inference, "batches_in_parallel", lambda compiled: False)
            serial = model.predict(x, batch_size=20)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(parallel, serial)
    assert parallel.shape == (1003, 3)
    conv = layerforge.Model.from_yaml({"name": "c", "input_shape": [8, 8, 1], "layers": [
        {"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Flatten"}, {"type": "Dense", "units": 2}]})
    lam = layerforge.Model.from_yaml({"name": "l", "input_shape": [4], "layers": [
        {"type": "Lambda", "expression": "x * 2"}, {"type": "Dense", "units": 2}]})
    # every layer is reentrant now (engine-owned workspaces): convolution and Lambda expressions run in parallel too
    assert inference.batches_in_parallel(conv.compiled) and inference.batches_in_parallel(lam.compiled)
