"""One trial, in whichever process runs it (a local worker or a Dask worker): ask the study for parameters,
validate the config they make, train with per-epoch reports (pruning), save the run directory, tell the result."""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path


def _threads_for_this_worker(job: dict) -> int | None:
    by_worker = job.get("threads_by_worker")
    if by_worker:  # on Dask: the cores of this worker's machine shared by the tasks that run there at once
        from distributed import get_worker

        return by_worker.get(get_worker().address)
    return job.get("threads")


def run_trial(job: dict) -> dict:
    """Run one trial of the study ``job`` describes (a plain dict: it travels to other processes and machines);
    returns what the trials table shows."""
    threads = _threads_for_this_worker(job)
    if threads:
        from ..kernels.threads import set_threads

        set_threads(threads)
    from ..errors import UserError
    from .space import load_space, ordered_overrides, sample
    from .study import SweepSpec, import_optuna, open_study

    optuna = import_optuna()
    spec = SweepSpec(**job["spec"])
    sweep_dir = Path(job["sweep_dir"])
    study = open_study(spec, create=False, seed_offset=job.get("index", 0))
    space = load_space(sweep_dir / "space.yaml")
    trial = study.ask()
    run_dir = sweep_dir / f"trial-{trial.number:04d}"
    for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("run_dir", str(run_dir))):
        trial.set_user_attr(key, value)
    started = time.perf_counter()
    result = {"number": trial.number, "run_dir": str(run_dir), "epochs": 0, "value": None, "message": ""}
    try:
        assignments = sample(trial, space)
        result["params"] = {path: value for path, value in assignments}
        trial.set_user_attr("assignments", [[p, v] for p, v in assignments])
        value, epochs = _train(job, spec, trial, assignments, run_dir, optuna, ordered_overrides)
        result["epochs"] = epochs
        study.tell(trial, value)
        result.update(state="COMPLETE", value=value)
    except optuna.TrialPruned as pruned:
        epochs, last = pruned.args if len(pruned.args) == 2 else (0, None)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        result.update(state="PRUNED", epochs=epochs, value=last)
    except (UserError, FloatingPointError) as exc:
        message = exc.render_plain() if isinstance(exc, UserError) else str(exc)
        trial.set_user_attr("error", message)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        result.update(state="FAIL", message=message)
    except Exception as exc:  # a bug, not the trial's parameters: recorded, and the sweep goes on
        message = f"internal error: {type(exc).__name__}: {exc}"
        trial.set_user_attr("error", message)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        result.update(state="FAIL", message=message)
    result.setdefault("params", {})
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _train(job, spec, trial, assignments, run_dir: Path, optuna, ordered_overrides) -> tuple[float, int]:
    from ..api import Model
    from ..config import load_config
    from ..errors import ConfigError, Problem

    overrides = list(spec.overrides) + ordered_overrides(assignments)
    from ..graph import build_graph
    from .space import check_model_config

    # the sampled config is validated before it runs
    model_spec = load_config(spec.config, overrides, allow_code=spec.allow_code)
    check_model_config(model_spec, build_graph)
    model = Model(model_spec)
    model.overrides, model.config_file = overrides, str(spec.config)
    model.trainer.run_dir = Path(run_dir)  # checkpoint and CSV log paths start in the trial's run directory
    best = None
    minimize = spec.direction == "minimize"

    def report(trainer, epoch):
        nonlocal best
        logs = trainer.history[-1]
        if spec.metric not in logs:
            raise ConfigError(problems=[Problem(message=f"--metric {spec.metric} is not among what training "
                                                        f"reports", found=spec.metric,
                                                expected=", ".join(k for k in logs if k != "time"))])
        value = float(logs[spec.metric])
        model.save(run_dir, overwrite=True)  # a normal run directory, kept up to date epoch by epoch
        if not math.isfinite(value):
            raise FloatingPointError(f"{spec.metric} became {value} in epoch {epoch + 1}")
        best = value if best is None or (value < best if minimize else value > best) else best
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(epoch + 1, value)

    history = model.fit(on_epoch_end=report)
    return best, len(history.epoch)
