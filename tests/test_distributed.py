"""Data-parallel training over MPI: 2 ranks with global batch B train exactly as one process with batch B.

Runs `mpirun -n 2 layerforge train ... --distributed` (oversubscription is fine: each rank gets one thread);
skipped with the reason when mpi4py or mpirun is missing (the `test` extra installs both: mpi4py + MPICH).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from layerforge.cli import app

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "examples" / "data" / "iris.csv"
BIN = Path(sys.executable).parent
MPIRUN = shutil.which("mpirun", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
LAYERFORGE = [sys.executable, "-m", "layerforge"]

HAS_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not HAS_MPI4PY or MPIRUN is None,
                               reason="needs mpi4py and mpirun (pip install 'layerforge[mpi]')")


def _config(tmp_path, *, batchnorm: bool, dropout: float = 0.0, optimizer=None) -> Path:
    layers = [{"type": "Dense", "units": 8, "activation": "tanh", "kernel_regularizer": {"l2": 0.001}}]
    if batchnorm:
        layers.append({"type": "BatchNormalization", "momentum": 0.9})
    layers.append({"type": "Dropout", "rate": dropout})
    layers.append({"type": "Dense", "units": 3, "activation": "softmax"})
    cfg = {"name": "dp", "seed": 7, "input_shape": [4], "layers": layers,
           "training": {"loss": "sparse_categorical_crossentropy",
                        "optimizer": optimizer or {"type": "adam", "learning_rate": 0.01},
                        "metrics": ["accuracy"], "epochs": 1, "batch_size": 12, "validation_split": 0.2},
           "data": {"train": {"path": str(IRIS), "target": "species"}}}
    path = tmp_path / "dp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _train(config: Path, out: Path, *extra: str, ranks: int | None = None) -> subprocess.CompletedProcess:
    cmd = LAYERFORGE + ["train", str(config), "-o", str(out), "--quiet", *extra]
    if ranks is not None:
        cmd = [MPIRUN, "-n", str(ranks)] + cmd + ["--distributed"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=180, cwd=ROOT)


def _weights(run: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(run / "weights.safetensors"))


def _assert_same(a: dict, b: dict, *, skip=()):
    assert a.keys() == b.keys()
    for k in a:
        if any(s in k for s in skip):
            continue
        np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=2e-6, err_msg=k)


@needs_mpi
def test_two_ranks_equal_one_process_after_10_steps(tmp_path):
    # 150 rows, 120 for training, batch 12: one epoch is 10 optimizer steps
    config = _config(tmp_path, batchnorm=False)
    one = _train(config, tmp_path / "one")
    assert one.returncode == 0, one.stderr + one.stdout
    two = _train(config, tmp_path / "two", ranks=2)
    assert two.returncode == 0, two.stderr + two.stdout
    state = json.loads((tmp_path / "two" / "state.json").read_text())
    assert state["epoch"] == 1
    before = _weights(tmp_path / "one")
    _assert_same(before, _weights(tmp_path / "two"))
    # and the run continues with --resume (rank 0 reads the run and sends it to the others)
    again = _train(config, tmp_path / "two", "--resume", str(tmp_path / "two"), "training.epochs=2", ranks=2)
    assert again.returncode == 0, again.stderr + again.stdout
    assert json.loads((tmp_path / "two" / "state.json").read_text())["epoch"] == 2
    one_more = _train(config, tmp_path / "one", "--resume", str(tmp_path / "one"), "training.epochs=2")
    assert one_more.returncode == 0, one_more.stderr
    _assert_same(_weights(tmp_path / "one"), _weights(tmp_path / "two"))


@needs_mpi
def test_synchronised_batchnorm_equals_one_process(tmp_path):
    # SGD: Adam's first steps move each weight by about ±lr whatever the gradient's size, so a gradient of ~0
    # that rounds to the other sign moves it by 2·lr; SGD keeps the comparison at rounding level
    config = _config(tmp_path, batchnorm=True, optimizer={"type": "sgd", "learning_rate": 0.05, "momentum": 0.9})
    one = _train(config, tmp_path / "one")
    assert one.returncode == 0, one.stderr
    synced = _train(config, tmp_path / "sync", "--sync-batchnorm", ranks=2)
    assert synced.returncode == 0, synced.stderr + synced.stdout
    _assert_same(_weights(tmp_path / "one"), _weights(tmp_path / "sync"))
    # per-rank statistics (the default, as Horovod): the training differs, but the run is repeatable
    local = _train(config, tmp_path / "local", ranks=2)
    assert local.returncode == 0, local.stderr
    gamma = [k for k in _weights(tmp_path / "one") if k.endswith("/gamma")][0]
    assert not np.allclose(_weights(tmp_path / "one")[gamma], _weights(tmp_path / "local")[gamma], atol=1e-7)


@needs_mpi
def test_dropout_runs_repeat_exactly(tmp_path):
    config = _config(tmp_path, batchnorm=False, dropout=0.3)
    a = _train(config, tmp_path / "a", ranks=2)
    b = _train(config, tmp_path / "b", ranks=2)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])


@needs_mpi
def test_config_error_under_mpirun_is_reported_once(tmp_path):
    # every rank finds the error; one reports it, all exit with code 2
    config = _config(tmp_path, batchnorm=False)
    bad = _train(config, tmp_path / "x", "training.epochs=0", ranks=2)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    text = bad.stdout + bad.stderr
    assert "epochs" in text and "Traceback" not in text


@needs_mpi
def test_a_nan_on_one_rank_stops_every_rank(tmp_path):
    # one sample overflows: only its rank computes a NaN gradient, and every rank must stop in the same step
    # (TerminateOnNaN), none left waiting in an Allreduce
    rows = IRIS.read_text().splitlines()
    first = rows[5].split(",")
    first[:4] = ["3e38"] * 4  # finite, but its products overflow float32
    rows[5] = ",".join(first)
    data = tmp_path / "iris_bad.csv"
    data.write_text("\n".join(rows) + "\n")
    config = _config(tmp_path, batchnorm=False)
    res = _train(config, tmp_path / "nan", f"data.train.path={data}", "training.epochs=3", "layers.0.activation=relu",
                 "training.callbacks=[TerminateOnNaN]", "training.shuffle=false", ranks=2)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "NaN" in res.stdout + res.stderr


def test_missing_mpi4py_is_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    res = CliRunner().invoke(app, ["train", str(ROOT / "configs" / "iris.yaml"), "--distributed", "training.epochs=1"])
    assert res.exit_code == 2
    assert "needs mpi4py" in res.output and "layerforge[mpi]" in res.output
