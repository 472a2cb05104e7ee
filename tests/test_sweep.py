"""`layerforge sweep` on Optuna: a study in SQLite, 2 local jobs, resume after a kill, a Dask LocalCluster,
and search spaces with errors reported at file:line:column."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layerforge.cli import app

optuna = pytest.importorskip("optuna", reason="needs Optuna (pip install 'layerforge[sweep]')")

ROOT = Path(__file__).resolve().parent.parent
IRIS_CONFIG = ROOT / "configs" / "iris.yaml"
runner = CliRunner()

SPACE = """\
training.optimizer.learning_rate: {loguniform: [1.0e-3, 1.0e-1]}
layers.0.units: {choice: [8, 16]}
layers.1.rate: {uniform: [0.0, 0.4]}
training.optimizer.type:
  choice:
    - adam
    - value: sgd
      space:
        training.optimizer.momentum: {uniform: [0.0, 0.9]}
"""


def _sweep(*args: str, timeout: int = 240, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "layerforge", "sweep", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT, **kw)


def _states(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:  # the study as the database holds it, without Optuna
        return [row[0] for row in con.execute("SELECT state FROM trials ORDER BY number")]


def _running_epochs(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM trial_intermediate_values v JOIN trials t "
                           "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING'").fetchone()[0]


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def test_six_trials_on_two_jobs_reach_the_study(tmp_path, space):
    out = tmp_path / "sweep"
    res = _sweep(str(IRIS_CONFIG), "training.epochs=3", "--space", str(space), "--trials", "6", "--jobs", "2",
                 "-o", str(out), "--seed", "3")
    assert res.returncode == 0, res.stdout + res.stderr
    states = _states(out / "study.db")
    assert len(states) == 6 and set(states) <= {"COMPLETE", "PRUNED"}, states
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 6
    best = study.best_trial
    assert best.value == pytest.approx(min(t.value for t in study.trials if t.state.name == "COMPLETE"))
    for t in study.trials:  # each trial a normal run directory; sgd trials also sampled the momentum
        assert (out / f"trial-{t.number:04d}" / "weights.safetensors").is_file()
        assert ("training.optimizer.momentum | training.optimizer.type=\"sgd\"" in t.params) == \
            (t.params["training.optimizer.type"] == "sgd")
    assert "6 complete" in res.stdout or "pruned" in res.stdout
    assert (out / "trials.csv").read_text().count("\n") == 7
    best_yaml = out / "best.yaml"
    check = runner.invoke(app, ["validate", str(best_yaml)])
    assert check.exit_code == 0, check.output
    text = best_yaml.read_text()
    assert f"units: {best.params['layers.0.units']}" in text


def test_a_killed_sweep_resumes(tmp_path, space):
    out = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "layerforge", "sweep", str(IRIS_CONFIG), "training.epochs=30",
                             "--space", str(space), "--trials", "2", "-o", str(out), "--pruner", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            db = out / "study.db"
            if db.exists():
                try:
                    states, running_epochs = _states(db), _running_epochs(db)
                except sqlite3.OperationalError:  # the tables are not made yet
                    states, running_epochs = [], 0
                if states.count("COMPLETE") >= 1 and running_epochs >= 2:  # killed in the middle of a trial
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _states(out / "study.db")
    assert before == ["COMPLETE", "RUNNING"], before
    res = _sweep("--resume", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    interrupted = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(interrupted) == 1 and "error" not in interrupted[0].user_attrs
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == interrupted[0].number]
    assert retry and retry[0].params == interrupted[0].params and retry[0].state.name == "COMPLETE"
    assert "running them again" in res.stdout
    # nothing left to do: a second resume runs no trial and reports the same best trial
    again = _sweep("--resume", str(out))
    assert again.returncode == 0 and "0 to run" in again.stdout


def test_dask_local_cluster(tmp_path, space):
    pytest.importorskip("distributed", reason="needs dask.distributed (pip install 'layerforge[sweep]')")
    out = tmp_path / "sweep"
    res = _sweep(str(IRIS_CONFIG), "training.epochs=2", "--space", str(space), "--trials", "2", "--jobs", "2",
                 "--dask", "local", "-o", str(out), "--pruner", "none")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _states(out / "study.db") == ["COMPLETE", "COMPLETE"]


BAD_SPACES = [
    ("layers.0.units: {choise: [8, 16]}\n", 1, 18, "unknown distribution 'choise'"),
    ("training.optimizer.learning_rate: {loguniform: [0, 0.1]}\n", 1, 49, "positive low bound"),
    ("layers.1.rate:\n  uniform: [0.5, 0.1]\n", 2, 12, "not below the high bound"),
    ("layers.1.rate: {uniform: [0.0, 1.5]}\n", 1, 32, "must be less than 1"),
    ("layers.9.units: {int: [4, 8]}\n", 1, 24, "index 9 is out of range"),
    ("training.optimizer.type: {choice: [adam, adamm]}\n", 1, 42, "unknown optimizer 'adamm'"),
    ("training.optimizer.type:\n  choice:\n    - adam\n    - value: sgd\n      space:\n"
     "        training.optimizer.momentum: {uniform: [0.0, 1.5]}\n", 6, 54, "momentum"),
    ("layers.0.units: {int: [4, 8], step: 0.5}\n", 1, 37, "step must be a positive whole number"),
    ("- 1\n- 2\n", 1, 1, "a mapping of config paths"),
]


@pytest.mark.parametrize("text,line,column,message", BAD_SPACES)
def test_bad_spaces_are_located(tmp_path, text, line, column, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    res = runner.invoke(app, ["sweep", str(IRIS_CONFIG), "--space", str(path), "-o", str(tmp_path / "s")])
    assert res.exit_code == 2, res.output
    assert f"{path}:{line}:{column}:" in res.output, res.output
    assert message in res.output
    assert not (tmp_path / "s").exists()  # nothing written for a space that does not check


def test_sweep_needs_validation_data_for_val_metric(tmp_path, space):
    res = runner.invoke(app, ["sweep", str(IRIS_CONFIG), "training.validation_split=0", "--space", str(space),
                              "--metric", "val_accuracy", "-o", str(tmp_path / "s")])
    assert res.exit_code == 2 and "needs validation data" in res.output


def test_sampling_conditional_and_fixed_values():
    from layerforge.config.source import parse_yaml_text
    from layerforge.sweep.space import ordered_overrides, parse_space, sample

    text = SPACE + "training.epochs: 2\nlayers.2.units: {int: [4, 12], step: 4}\n"
    space = parse_space(*parse_yaml_text(text, "space.yaml"), text)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        picked = dict(sample(trial, space))
        seen.add(picked["training.optimizer.type"])
        assert picked["training.epochs"] == 2 and picked["layers.2.units"] in (4, 8, 12)
        assert 1e-3 <= picked["training.optimizer.learning_rate"] <= 1e-1
        # the momentum exists exactly in the trials that chose sgd
        assert ("training.optimizer.momentum" in picked) == (picked["training.optimizer.type"] == "sgd")
        study.tell(trial, 0.0)
    assert seen == {"adam", "sgd"}
    # a path is applied before the paths inside it, whatever the order in the file
    assert ordered_overrides([("training.optimizer.learning_rate", 0.01), ("training.optimizer", {"type": "sgd"})]) \
        == ['training.optimizer={"type": "sgd"}', "training.optimizer.learning_rate=0.01"]


def test_choice_of_mappings_uses_indices():
    from layerforge.config.source import parse_yaml_text
    from layerforge.sweep.space import parse_space, sample

    text = "training.optimizer: {choice: [{type: adam}, {type: sgd, momentum: 0.9}]}\n"
    space = parse_space(*parse_yaml_text(text, "s.yaml"), text)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    values = []
    for _ in range(6):
        trial = study.ask()
        values.append(dict(sample(trial, space))["training.optimizer"])
        assert trial.params["training.optimizer"] in (0, 1)
        study.tell(trial, 0.0)
    assert {"type": "sgd", "momentum": 0.9} in values and {"type": "adam"} in values


def test_missing_optuna_is_a_clear_message(tmp_path, space, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now fails, as when it is not installed
    res = runner.invoke(app, ["sweep", str(IRIS_CONFIG), "--space", str(space), "-o", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert "needs Optuna" in res.output and "layerforge[sweep]" in res.output


def test_resume_of_a_missing_sweep(tmp_path):
    res = runner.invoke(app, ["sweep", "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "not a sweep directory" in res.output
