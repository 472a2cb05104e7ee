"""The sweep directory and its Optuna study.

    SWEEPDIR/sweep.json     what was asked: config, space, metric, direction, trials, sampler, pruner, storage
    SWEEPDIR/space.yaml     the search space as given
    SWEEPDIR/study.db       the Optuna study (SQLite) unless --storage names another database
    SWEEPDIR/trial-0000/    one normal run directory per trial (`layerforge predict` / `evaluate` read it)
    SWEEPDIR/trials.csv     every trial: state, value, parameters
    SWEEPDIR/best.yaml      the best trial's config, ready for `layerforge train`
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError, Problem

INSTALL_HINT = 'pip install "layerforge[sweep]" (Optuna; and Dask for --dask)'
COUNTED = ("COMPLETE", "PRUNED")  # with failures that carry an error (an interrupted trial is run again)


def import_optuna():
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError(problems=[Problem(message=f"`layerforge sweep` needs Optuna, which cannot be imported "
                                                    f"({exc})", hint=INSTALL_HINT)]) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class SweepSpec:
    config: str  # absolute path of the model config
    overrides: list = field(default_factory=list)  # KEY=VALUE applied to every trial
    metric: str = "val_loss"
    direction: str = "minimize"
    trials: int = 20
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    storage: str = ""
    study_name: str = "sweep"
    allow_code: bool = False

    def save(self, sweep_dir: Path) -> None:
        from ..io.atomic import atomic_write_text

        atomic_write_text(sweep_dir / "sweep.json", json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepSpec:
        path = sweep_dir / "sweep.json"
        if not path.is_file():
            raise ConfigError(problems=[Problem(message="not a sweep directory (no sweep.json)", file=str(sweep_dir),
                                                hint="pass the directory a `layerforge sweep` wrote")])
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(problems=[Problem(message=f"sweep.json cannot be read: {exc}", file=str(path))]) \
                from None


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / 'study.db').resolve()}"


def storage_for(url: str):
    """An Optuna storage for ``url``; SQLite gets a generous lock timeout (several processes write to it)."""
    optuna = import_optuna()
    if url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return url


def make_sampler(name: str, seed: int | None):
    optuna = import_optuna()
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str):
    optuna = import_optuna()
    return {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
            "hyperband": optuna.pruners.HyperbandPruner,
            "halving": optuna.pruners.SuccessiveHalvingPruner,
            "none": optuna.pruners.NopPruner}[name]()


def open_study(spec: SweepSpec, *, create: bool, seed_offset: int = 0):
    optuna = import_optuna()
    seed = None if spec.seed is None else spec.seed + seed_offset
    kwargs = dict(study_name=spec.study_name, storage=storage_for(spec.storage),
                  sampler=make_sampler(spec.sampler, seed), pruner=make_pruner(spec.pruner))
    try:
        if create:
            return optuna.create_study(direction=spec.direction, load_if_exists=True, **kwargs)
        return optuna.load_study(**kwargs)
    except (ImportError, ModuleNotFoundError) as exc:  # a database driver (psycopg2, pymysql ...) is missing
        raise ConfigError(problems=[Problem(message=f"the storage {spec.storage.split('://')[0]} needs a driver "
                                                    f"that is not installed ({exc})",
                                            hint="pip install the driver SQLAlchemy names")]) from None
    except ValueError as exc:  # e.g. an existing study with the other direction
        raise ConfigError(problems=[Problem(message=f"cannot open study '{spec.study_name}': {exc}",
                                            hint="use another --study-name")]) from None


def counted(trial) -> bool:
    """Whether a finished trial counts towards --trials (an interrupted one does not: it runs again)."""
    state = trial.state.name
    return state in COUNTED or (state == "FAIL" and "error" in trial.user_attrs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(study, *, own_storage: bool) -> list[int]:
    """Trials left RUNNING by a killed sweep on this machine (their process is gone) are marked failed and
    queued again with the same parameters; trials running elsewhere (other machines) are left alone.
    ``own_storage``: the sweep directory's SQLite file, which only this machine uses, so a RUNNING trial that
    did not yet record its process (killed right after it started) is an interrupted one too."""
    optuna = import_optuna()
    host = socket.gethostname()
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    requeued = []
    for t in trials:
        state = t.state.name
        pid = int(t.user_attrs.get("pid", 0))
        mine = t.user_attrs.get("host") == host if "host" in t.user_attrs else own_storage
        if state == "RUNNING" and mine and not (pid and _alive(pid)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            state = "FAIL"
        if state != "FAIL" or "error" in t.user_attrs or t.number in retried:
            continue
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            requeued.append(t.number)
    return requeued
