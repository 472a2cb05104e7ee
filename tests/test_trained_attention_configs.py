"""The shipped configs of the layers beyond the Keras 1 list train to what their comments state."""

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from layerforge.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def train(tmp_path, name, *overrides):
    out = tmp_path / name
    result = runner.invoke(app, ["train", str(ROOT / "configs" / f"{name}.yaml"), "-o", str(out), "-q", *overrides])
    assert result.exit_code == 0, result.output
    return json.loads((out / "history.json").read_text())


def test_sunspots_transformer_beats_persistence_on_later_years(tmp_path):
    history = train(tmp_path, "sunspots_transformer")
    table = np.loadtxt(ROOT / "examples" / "data" / "sunspots_windows.csv", delimiter=",", skiprows=1)
    held_out = table[len(table) - int(round(len(table) * 0.2)):]
    persistence = np.abs(held_out[:, -2] - held_out[:, -1]).mean()  # "next year = this year"
    assert history[-1]["val_loss"] < 0.85 * persistence, [round(h["val_loss"], 2) for h in history[::10]]


def test_digits_convlstm_reaches_its_accuracy(tmp_path):
    # 10 of the config's 25 epochs keep the test short (the full run reaches about 0.95-0.97)
    history = train(tmp_path, "digits_convlstm", "training.epochs=10")
    assert history[-1]["val_accuracy"] >= 0.90, [round(h["val_accuracy"], 3) for h in history]
