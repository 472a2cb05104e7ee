"""The command-line workflow: overrides on Keras 1 configs, runnable saved configs, resume without CONFIG,
predict outputs, the callbacks listing, the README's claims, data.test metrics."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import layerforge
from layerforge.cli import app

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "examples" / "data" / "iris.csv"
README = (ROOT / "README.md").read_text()
runner = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env=ENV)


# ------------------------------------------------------------------ 5. overrides in modern names

def test_modern_overrides_on_a_keras1_config():
    cfg = ROOT / "configs" / "keras1_names.yaml"
    result = run("summary", cfg, "training.epochs=3", "layers.0.filters=8", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["layers"]
    conv = [r for r in rows if r.get("type") == "Conv2D"][0]
    assert conv["params"] == 3 * 3 * 1 * 8 + 8
    from layerforge.config import load_config

    spec = load_config(cfg, ["training.epochs=3", "layers.0.kernel_size=5", "training.optimizer.learning_rate=0.2"])
    assert spec.config.training.epochs == 3 and spec.layers[0].kernel_size == (5, 5)
    assert spec.config.training.optimizer["learning_rate"] == 0.2


def test_keras1_overrides_on_a_modern_config(tmp_path):
    from layerforge.config import load_config

    p = tmp_path / "m.yaml"
    p.write_text("input_shape: [8, 8, 1]\nlayers:\n  - {type: Conv2D, filters: 4, kernel_size: 3}\n"
                 "training: {epochs: 2}\n")
    spec = load_config(p, ["layers.0.nb_filter=6", "training.nb_epoch=7"])
    assert spec.layers[0].filters == 6 and spec.config.training.epochs == 7


# ------------------------------------------------------------------ 6. runnable saved config, resume without CONFIG

SMALL = """
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
  epochs: 2
  batch_size: 32
  validation_split: 0.2
data:
  train: {path: iris.csv, target: species}
"""


def small_config(tmp_path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "iris.csv").write_text(IRIS.read_text())
    p = folder / "small.yaml"
    p.write_text(SMALL)
    return p


def test_saved_config_trains_from_anywhere_and_resume_needs_no_config(tmp_path, monkeypatch):
    cfg = small_config(tmp_path)
    out = tmp_path / "run"
    assert run("train", cfg, "-o", out, "-q").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run("train", out / "config.yaml", "-o", tmp_path / "again", "-q")
    assert result.exit_code == 0, result.output
    result = run("train", "--resume", out, "training.epochs=4", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "state.json").read_text())["epoch"] == 4
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["epochs"] == 4


def test_interrupt_hint_and_resume_keep_the_overrides(tmp_path, monkeypatch):
    cfg = small_config(tmp_path)
    out = tmp_path / "run"
    from layerforge.io import rundir

    real = rundir.write_run

    def interrupted(path, **kw):
        real(path, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "write_run", interrupted)
    result = run("train", cfg, "-o", out, "training.epochs=5", "layers.0.units=6")
    assert result.exit_code == 130
    hint = result.output.split("continue with")[1]
    assert "training.epochs=5" in hint and "layers.0.units=6" in hint and f"--resume {out}" in hint
    monkeypatch.setattr(rundir, "write_run", real)
    # --resume with the CONFIG applies the overrides the run was started with (else the model would differ)
    result = run("train", cfg, "--resume", out, "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "state.json").read_text())["epoch"] == 5
    assert json.loads((out / "state.json").read_text())["overrides"] == ["training.epochs=5", "layers.0.units=6"]


def test_train_with_data_test_ends_with_test_metrics(tmp_path):
    cfg = small_config(tmp_path)
    cfg.write_text(SMALL + "  test: {path: iris.csv, target: species}\n")
    result = run("train", cfg, "-o", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    line = [ln for ln in result.output.splitlines() if ln.startswith("test")][0]
    assert "loss" in line and "accuracy" in line


# ------------------------------------------------------------------ 7. predict outputs

def image_run(tmp_path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((12, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "images.npz", x=x)
    cfg = tmp_path / "img.yaml"
    cfg.write_text("name: img\nseed: 1\ninput_shape: [8, 8, 1]\nlayers:\n"
                   "  - {type: Conv2D, filters: 1, kernel_size: 3, padding: same}\n"
                   "training: {loss: mse, epochs: 1, batch_size: 4}\n"
                   "data:\n  train: {path: images.npz, features: [x], target: x}\n")
    out = tmp_path / "run"
    result = run("train", cfg, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    return out, x


def test_predict_keeps_per_sample_shapes_and_takes_npy_input(tmp_path):
    out, x = image_run(tmp_path)
    np.save(tmp_path / "x.npy", x[:5])
    result = run("predict", out, "--data", tmp_path / "x.npy", "-o", tmp_path / "p.npy")
    assert result.exit_code == 0, result.output
    pred = np.load(tmp_path / "p.npy")
    assert pred.shape == (5, 8, 8, 1)
    np.testing.assert_allclose(pred, layerforge.load(out).predict(x[:5]), rtol=1e-6)
    result = run("predict", out, "--data", tmp_path / "images.npz", "-o", tmp_path / "p.npz")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "p.npz")["conv2d"].shape == (12, 8, 8, 1)
    result = run("predict", out, "--data", tmp_path / "x.npy")  # too wide to print: a note, not blank lines
    assert result.exit_code == 0
    assert "(5, 8, 8, 1)" in result.output and "-o" in result.output
    result = run("predict", out, "--data", tmp_path / "x.npy", "--probabilities")
    assert result.exit_code == 2 and "regression" in result.output


def test_predict_prints_whole_numbers_and_names_the_target_column(tmp_path):
    rng = np.random.default_rng(1)
    rows = ["id,a,b,price"] + [f"r{i},{rng.random():.4f},{rng.random():.4f},{rng.random() * 1e-4:.8f}"
                               for i in range(20)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "reg.yaml"
    cfg.write_text("name: reg\nseed: 1\ninput_shape: [2]\nlayers:\n  - {type: Dense, units: 1}\n"
                   "training: {loss: mse, epochs: 1, optimizer: {type: sgd, learning_rate: 0.0001}}\n"
                   "data:\n  train: {path: t.csv, target: price, features: [a, b]}\n")
    out = tmp_path / "run"
    assert run("train", cfg, "-o", out, "-q").exit_code == 0
    result = run("predict", out, "--data", tmp_path / "t.csv")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["price"]
    pred = layerforge.load(out).predict(np.array([[float(v) for v in r.split(",")[1:3]] for r in rows[1:]],
                                                  np.float32))
    assert [ln.strip() for ln in lines[1:]] == [f"{v:.7g}" for v in pred[:, 0]]
    result = run("predict", out, "--data", tmp_path / "t.csv", "--keep-columns", "id", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    written = (tmp_path / "p.csv").read_text().splitlines()
    assert written[0] == "id,price" and written[1].startswith("r0,")


def test_predict_output_is_never_overwritten_silently(tmp_path):
    out, x = image_run(tmp_path)
    np.save(tmp_path / "x.npy", x[:2])
    target = tmp_path / "p.npy"
    target.write_text("mine")
    result = run("predict", out, "--data", tmp_path / "x.npy", "-o", target)
    assert result.exit_code == 2 and "--overwrite" in result.output and target.read_text() == "mine"
    assert run("predict", out, "--data", tmp_path / "x.npy", "-o", target, "--overwrite").exit_code == 0
    assert np.load(target).shape == (2, 8, 8, 1)
    result = run("predict", out, "--data", tmp_path / "x.npy", "-o", tmp_path / "missing" / "p.npy")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run("predict", out, "--data", tmp_path / "x.npy", "-o", target / "p.npy")
    assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output


def test_binary_01_labels_predict_labels_unless_probabilities(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 2))
    rows = ["a,b,label"] + [f"{a:.4f},{b:.4f},{int(a + b > 0)}" for a, b in x]
    (tmp_path / "bin.csv").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "bin.yaml"
    cfg.write_text("name: bin\nseed: 1\ninput_shape: [2]\nlayers:\n  - {type: Dense, units: 1, activation: sigmoid}\n"
                   "training: {loss: binary_crossentropy, epochs: 2}\n"
                   "data:\n  train: {path: bin.csv, target: label}\n")
    out = tmp_path / "run"
    assert run("train", cfg, "-o", out, "-q").exit_code == 0
    result = run("predict", out, "--data", tmp_path / "bin.csv")
    assert result.exit_code == 0, result.output
    values = [ln.strip() for ln in result.output.splitlines()[1:]]
    assert set(values) <= {"0", "1"} and len(values) == 40
    result = run("predict", out, "--data", tmp_path / "bin.csv", "--probabilities")
    probs = [float(ln) for ln in result.output.splitlines()[1:]]
    assert all(0.0 < p < 1.0 for p in probs) and result.output.splitlines()[0].strip() == "p_1"


# ------------------------------------------------------------------ 9. discoverability

def test_callbacks_are_in_the_json_schema_with_their_parameters():
    from layerforge.schema import config_schema

    schema = config_schema()
    items = schema["$defs"]["TrainingConfig"]["properties"]["callbacks"]["items"]
    assert items != {} and len(items["oneOf"]) == 7
    es = schema["$defs"]["EarlyStoppingConfig"]["properties"]
    assert es["patience"]["type"] == "integer" and es["restore_best_weights"]["type"] == "boolean"
    jsonschema = pytest.importorskip("jsonschema", reason="validates configs against the schema")
    validator = jsonschema.Draft202012Validator(schema)
    good = {"layers": [{"type": "Dense", "units": 1}], "input_shape": [2],
            "training": {"callbacks": ["TerminateOnNaN", {"type": "EarlyStopping", "patience": 3}]}}
    assert not list(validator.iter_errors(good))
    bad = {**good, "training": {"callbacks": [{"type": "EarlyStopping", "patience": "3"}]}}
    assert list(validator.iter_errors(bad))


def test_callbacks_listing():
    result = run("callbacks")
    assert result.exit_code == 0
    for name in ("EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger",
                 "TerminateOnNaN", "patience", "save_best_only", "cooldown"):
        assert name in result.output
    rows = json.loads(run("callbacks", "ReduceLROnPlateau", "--json").output)
    assert {p["name"] for p in rows[0]["parameters"]} >= {"monitor", "factor", "patience", "cooldown", "min_lr"}
    assert run("callbacks", "EarlyStoping").exit_code == 2


def test_callback_parameters_are_typed():
    from layerforge.config import load_config

    for bad in ("{type: EarlyStopping, patience: 2.5}", "{type: EarlyStopping, patience: 'x'}",
                "{type: CSVLogger, filename: ''}", "{type: ReduceLROnPlateau, factor: 2}",
                "{type: ModelCheckpoint, save_best_only: 'yes'}", "{type: EarlyStopping, restore_best_weights: 1}"):
        with pytest.raises(layerforge.errors.ConfigError):
            load_config({"input_shape": [2], "layers": [{"type": "Dense", "units": 1}]},
                        [f"training.callbacks=[{bad}]"])


def test_readme_layer_count_matches_the_catalogue():
    result = run("layers", "--json")
    count = len(json.loads(result.output))
    claims = re.findall(r"(\d+) layer types", README)
    assert claims and all(int(c) == count for c in claims), (claims, count)


def test_every_shipped_config_trains_on_shipped_data_or_is_labelled():
    table = README.split("## Configs")[1].split("\n\n")[1]
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        train = (raw.get("data") or {}).get("train")
        row = [ln for ln in table.splitlines() if f"`{path.name}`" in ln]
        assert row, f"{path.name} is missing from the README's config table"
        if train is None:
            assert "shape/benchmark config" in row[0], f"{path.name} has no data: label it in the README"
        else:
            file = train if isinstance(train, str) else train["path"]
            assert (path.parent / file).exists(), f"{path.name}: {file} is not shipped"


def test_output_cut_short_by_a_closed_pipe_ends_quietly():
    # `layerforge schema | head`: the schema is larger than a pipe's buffer, so the writer meets a closed pipe
    out = subprocess.run(f"{shlex.quote(sys.executable)} -m layerforge schema | head -c 10", shell=True,
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.startswith("{")
    assert "error" not in out.stderr.lower() and "Traceback" not in out.stderr, out.stderr
