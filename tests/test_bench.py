"""`layerforge bench`: runs on tiny configs through the CLI, prints the per-layer table and the summary lines,
and --json carries every field. Synthetic data follows the inputs' dtypes and the losses. No timing asserts."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from layerforge.bench import run_bench, synthetic_inputs, synthetic_targets
from layerforge.cli import app
from layerforge.config import load_config
from layerforge.graph import build_graph
from layerforge.layers import REGISTRY, load_all

runner = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}

TINY = """
name: tiny
seed: 3
input_shape: [6]
layers:
  - {type: Dense, units: 5, activation: relu, name: hidden}
  - {type: Dropout, rate: 0.2, name: drop}
  - {type: Dense, units: 3, activation: softmax, name: out}
training:
  loss: sparse_categorical_crossentropy
  optimizer: adam
  batch_size: 8
"""

JSON_KEYS = {"config", "model", "batch_size", "steps", "threads", "blas", "parameters", "build_s",
             "first_train_batch_s", "first_inference_batch_s", "compile_s", "train_step_ms", "train_samples_per_s",
             "inference_step_ms", "inference_samples_per_s", "loss_ms", "optimizer_ms", "other_ms", "final_loss",
             "layers"}
LAYER_KEYS = {"name", "type", "output_shape", "params", "forward_ms", "backward_ms", "inference_ms"}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY))
    return path


def test_bench_prints_table_and_summary(tiny):
    result = runner.invoke(app, ["bench", str(tiny), "--steps", "2"], env=ENV)
    assert result.exit_code == 0, result.output
    out = result.output
    for word in ("hidden", "drop", "out", "Dense", "Dropout", "forward ms", "backward ms", "optimizer", "loss",
                 "first batch", "samples/s", "training", "inference"):
        assert word in out, word


def test_bench_json_has_every_field(tiny):
    result = runner.invoke(app, ["bench", str(tiny), "--steps", "2", "--json", "--batch-size", "4",
                                 "--threads", "1"], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert JSON_KEYS <= data.keys()
    assert data["batch_size"] == 4 and data["steps"] == 2 and data["threads"] == 1
    assert data["model"] == "tiny" and data["parameters"] == 6 * 5 + 5 + 5 * 3 + 3
    assert [row["name"] for row in data["layers"]] == ["hidden", "drop", "out"]
    for row in data["layers"]:
        assert LAYER_KEYS <= row.keys()
        assert row["forward_ms"] > 0 and row["backward_ms"] > 0 and row["inference_ms"] > 0  # every layer timed
    # the per-layer, loss and optimizer times are parts of the training steps (the median of two steps is their
    # mean), and "other" is the rest
    parts = sum(row["forward_ms"] + row["backward_ms"] for row in data["layers"]) + data["loss_ms"] \
        + data["optimizer_ms"]
    assert parts <= data["train_step_ms"] + 1e-3
    assert data["other_ms"] == pytest.approx(data["train_step_ms"] - parts, abs=2e-3)
    assert data["layers"][0]["output_shape"] == [5]  # without the batch axis
    assert data["train_samples_per_s"] > 0 and data["inference_samples_per_s"] > 0
    assert data["first_train_batch_s"] > 0 and np.isfinite(data["final_loss"])


def test_bench_user_error_is_reported_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 0}\n")
    result = runner.invoke(app, ["bench", str(bad), "--steps", "1"], env=ENV)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_bench_help_has_an_example():
    result = runner.invoke(app, ["bench", "--help"], env=ENV)
    assert result.exit_code == 0
    assert "Example" in result.output and "--steps" in result.output and "--threads" in result.output


def test_synthetic_targets_follow_the_losses():
    spec = load_config({"input_shape": [3], "outputs": ["a", "b", "c"],
                        "layers": [{"type": "Dense", "units": 4, "name": "a", "activation": "softmax"},
                                   {"type": "Dense", "units": 1, "name": "b", "inputs": ["input"],
                                    "activation": "sigmoid"},
                                   {"type": "Dense", "units": 2, "name": "c", "inputs": ["input"]}],
                        "training": {"loss": {"a": "categorical_crossentropy", "b": "binary_crossentropy",
                                              "c": "mse"}}})
    graph = build_graph(spec)
    rng = np.random.default_rng(0)
    (x,) = synthetic_inputs(graph, 7, rng)
    assert x.shape == (7, 3) and x.dtype == np.float32
    a, b, c = synthetic_targets(graph, 7, rng)
    assert a.shape == (7, 4) and np.all(a.sum(axis=1) == 1) and set(np.unique(a)) <= {0.0, 1.0}
    assert b.shape == (7, 1) and set(np.unique(b)) <= {0.0, 1.0}
    assert c.shape == (7, 2) and c.dtype == np.float32


@pytest.mark.skipif("Embedding" not in (load_all() or REGISTRY), reason="Embedding not registered yet")
def test_integer_inputs_stay_below_the_embedding_input_dim():
    config = {"name": "emb", "input_shape": [5],
              "layers": [{"type": "Embedding", "input_dim": 7, "output_dim": 2, "name": "emb"},
                         {"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}],
              "training": {"loss": "sparse_categorical_crossentropy", "batch_size": 4}}
    graph = build_graph(load_config(config))
    (x,) = synthetic_inputs(graph, 50, np.random.default_rng(1))
    assert np.issubdtype(x.dtype, np.integer) and x.min() >= 0 and x.max() < 7
    data = run_bench(config, steps=2)
    assert data["layers"][0]["type"] == "Embedding" and data["train_samples_per_s"] > 0
