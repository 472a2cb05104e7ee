"""The shipped configs train to the accuracy the README states (real data shipped in examples/data)."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import layerforge
from layerforge.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def train(tmp_path, name, *overrides):
    out = tmp_path / name
    result = runner.invoke(app, ["train", str(ROOT / "configs" / f"{name}.yaml"), "-o", str(out), "-q", *overrides])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "history.json").read_text())


@pytest.mark.parametrize("name,overrides,metric,threshold", [
    ("digits_cnn", [], "val_accuracy", 0.97),
    ("digits_lstm", [], "val_accuracy", 0.95),
    ("digits_local", ["training.epochs=12"], "val_accuracy", 0.90),
    ("digits_mlp", [], "val_accuracy", 0.93),
])
def test_digits_configs_reach_their_accuracy(tmp_path, name, overrides, metric, threshold):
    _, history = train(tmp_path, name, *overrides)
    assert history[-1][metric] >= threshold, [round(h[metric], 4) for h in history]


def test_sunspots_beats_persistence_on_later_years(tmp_path):
    _, history = train(tmp_path, "sunspots")
    table = np.loadtxt(ROOT / "examples" / "data" / "sunspots_windows.csv", delimiter=",", skiprows=1)
    held_out = table[len(table) - int(round(len(table) * 0.2)):]
    persistence = np.abs(held_out[:, -2] - held_out[:, -1]).mean()  # "next year = this year"
    assert history[-1]["val_loss"] < 0.85 * persistence


def test_bn_prelu_predict_is_deterministic_and_survives_save_load(tmp_path):
    out, history = train(tmp_path, "digits_bn_prelu", "training.epochs=3")
    assert history[-1]["val_accuracy"] > 0.5
    x = np.load(ROOT / "examples" / "data" / "digits.npz")["x"][:50]
    model = layerforge.load(out)
    first, second = model.predict(x), model.predict(x)
    np.testing.assert_array_equal(first, second)  # noise and dropout are off in inference
    model.save(tmp_path / "again")
    np.testing.assert_array_equal(layerforge.load(tmp_path / "again").predict(x), first)
    weights = model.get_weights()
    bn = [name for name in weights if name.startswith("batch_normalization")][0]
    gamma, beta, moving_mean, moving_variance = weights[bn]
    assert not np.allclose(moving_mean, 0) and not np.allclose(moving_variance, 1)  # trained statistics saved


def test_conv_autoencoder_learns(tmp_path):
    _, history = train(tmp_path, "conv_autoencoder", "training.epochs=4")
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]  # seeded: 0.111 -> 0.033 in four epochs
