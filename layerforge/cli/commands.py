"""What `layerforge train`, `predict` and `evaluate` do, between argument parsing (app.py) and the library (api)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, ConfigError, Problem, RunFailed

MODEL_KEYS = ("inputs", "input_shape", "input_dtype", "batch_size", "layers", "outputs")


def default_run_dir(name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def _check_output_dir(path: Path, resume: Path | None) -> None:
    if path.exists() and (resume is None or path.resolve() != resume.resolve()):
        if path.is_file() or any(path.iterdir()):
            raise ConfigError(problems=[Problem(
                message="the output directory already exists and is not empty", file=str(path),
                hint=f"choose another --output, delete it, or continue it with --resume {path}")])


def _same_model(saved: dict, current: dict) -> list[str]:
    return [k for k in MODEL_KEYS if saved.get(k) != current.get(k)]


def _resume_hint(config, overrides: list[str], run_dir: Path) -> str:
    """The command that continues ``run_dir`` with the config and overrides it was started with."""
    import shlex

    words = ["layerforge", "train", *([str(config)] if config else []), *overrides, "--resume", str(run_dir)]
    return " ".join(shlex.quote(w) for w in words)


def train_command(config: Path | None, *, overrides, output, resume, data, validation_data, quiet, allow_code,
                  console, init_from: Path | None = None) -> dict:
    """Train and write the run directory; returns {"run_dir", "history", "notes", "test", ...} for the CLI to show.

    With ``resume`` and no ``config`` the run's own config.yaml (overrides included) is trained further; with a
    config, the overrides the run was started with apply first, then ``overrides``."""
    from ..api import Model
    from ..config import load_config
    from ..graph import build_graph
    from ..io.rundir import read_run

    run = None
    seed = None
    overrides = list(overrides or [])
    if resume is not None:
        run = read_run(resume)
        state = run.get("state") or {}
        seed = state.get("seed")
        started_with = list(state.get("overrides") or [])
        if config is None:
            config_file = state.get("config_file")
            spec = load_config(Path(resume) / "config.yaml", overrides, allow_code=allow_code)
            all_overrides = started_with + overrides
        else:
            config_file = str(config)
            all_overrides = started_with + overrides
            spec = load_config(config, all_overrides, allow_code=allow_code)
            diff = _same_model(run["config"], spec.canonical_dict())
            if diff:
                raise CheckpointError(problems=[Problem(
                    message=f"the model in {config} differs from the one saved in {resume} ({', '.join(diff)})",
                    file=str(resume), hint="resume with the same model config; only training settings may change")])
    else:
        if config is None:
            raise ConfigError(problems=[Problem(message="no config given", file="<command line>",
                                                hint="layerforge train CONFIG, or layerforge train --resume RUN")])
        config_file, all_overrides = str(config), overrides
        spec = load_config(config, overrides, allow_code=allow_code)
    graph = build_graph(spec)
    model = Model(spec, graph, seed=seed)
    model.overrides, model.config_file = all_overrides, config_file
    run_dir = Path(output) if output else (Path(resume) if resume else default_run_dir(spec.config.name))
    _check_output_dir(run_dir, Path(resume) if resume else None)
    model.trainer.run_dir = run_dir
    model.trainer.say = lambda message: console.print(message, highlight=False)
    if run is not None:
        model.restore(run)
        done = model.trainer.epoch
        if (run.get("state") or {}).get("stopped_early"):
            raise ConfigError(problems=[Problem(
                message=f"the run was stopped by a callback (EarlyStopping) after epoch {done}; there is nothing "
                        "to resume", file=str(resume),
                hint="start a new run (e.g. with more patience) to train further")])
        if done >= spec.config.training.epochs:
            raise ConfigError(problems=[Problem(
                message=f"the run already has {done} epochs and the config asks for "
                        f"{spec.config.training.epochs}", file=str(resume),
                hint=f"raise the total, e.g. `layerforge train --resume {resume} training.epochs={done + 10}`")])
    # the Ctrl-C hint: with the CONFIG, every override the run has; without, the run's config.yaml holds them
    hint_overrides = all_overrides if config is not None else overrides

    _warm_start(model, spec, init_from, resume, config, console, quiet)

    def save(trainer, epoch):
        if np.isfinite(trainer.history[-1]["loss"]):  # a NaN epoch never replaces the last good one
            model.save(run_dir, overwrite=True)

    started = time.perf_counter()
    if not quiet:
        console.print(f"[bold]{spec.config.name}[/]: {graph.total_params:,} parameters, "
                      f"{len(graph.nodes)} layers, seed {model.seed}"
                      + (f", resuming after epoch {model.trainer.epoch}" if run is not None else ""), highlight=False)
    try:
        history = model.fit(data=data, validation_data=validation_data, verbose=0 if quiet else 1, console=console,
                            on_epoch_end=save, resume=run is not None)
    except KeyboardInterrupt:
        done = _saved_epochs(run_dir)
        if done:
            console.print(f"[yellow]interrupted[/]: {run_dir} holds epoch {done}; continue with "
                          f"`{_resume_hint(config, hint_overrides, run_dir)}`", highlight=False)
        else:
            console.print("[yellow]interrupted[/] before the first epoch ended; nothing was saved", highlight=False)
        raise
    trainer = model.trainer
    result = {"run_dir": run_dir, "history": history, "notes": list(trainer.notes), "seconds":
              time.perf_counter() - started, "test": None, "failed": None}
    if not history.epoch:
        raise RunFailed("no epoch ran")
    if trainer.nan_at is not None:
        kept = _saved_epochs(run_dir)
        epoch, batch = trainer.nan_at
        where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
        result["failed"] = (f"the loss became NaN or infinite in {where}; lower the learning rate or check the data. "
                            + (f"{run_dir} keeps the weights after epoch {kept}, the last good one" if kept else
                               "no epoch finished with a finite loss, so nothing was saved"))
        return result
    model.save(run_dir, overwrite=True)  # after callbacks such as EarlyStopping(restore_best_weights)
    d = spec.config.data
    if d is not None and d.test is not None:  # as Ludwig's `experiment`: end with the test set
        result["test"] = model.evaluate(data=d.test)
    return result


def _saved_epochs(run_dir: Path) -> int:
    """Epochs held by the run directory on disk (0 when it has none yet)."""
    try:
        return int(json.loads((run_dir / "state.json").read_text()).get("epoch", 0))
    except (OSError, ValueError):
        return 0


def _warm_start(model, spec, init_from: Path | None, resume, config: Path, console, quiet: bool):
    """--init-from RUN (or training.init_from): start from a run's weights, matched by layer name."""
    if resume is not None:  # a resumed run has its own weights; training.init_from only started it
        if init_from is not None:
            raise ConfigError(problems=[Problem(
                message="--resume continues a run; --init-from starts a new one from a run's weights",
                file=str(config), hint="give only one of them")])
        return None
    source = init_from
    if source is None and spec.config.training.init_from:
        source = spec.base_dir / spec.config.training.init_from
    if source is None:
        return None
    from ..engine.warm_start import init_from_run

    warm = init_from_run(model, source)
    if not quiet:
        console.print(f"weights of {len(warm.loaded)} layer(s) from {source}"
                      + (f"; fresh: {', '.join(warm.fresh)}" if warm.fresh else "")
                      + (f"; not in this model: {', '.join(warm.unused)}" if warm.unused else ""), highlight=False)
    return warm


def _load_run_model(run_dir: Path, allow_code: bool):
    from ..api import load

    return load(run_dir, allow_code=allow_code)


CLASSIFIER_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
                     "categorical_hinge")


def prediction_encoders(model) -> dict:
    """Label mapping per classifier output: the saved one, or 0/1 (0..k-1) for numeric labels, so a model
    trained on 0/1 labels predicts labels too."""
    out = {}
    for info, loss in zip(model._output_infos(), model._loss_per_output()):
        enc = (model.encoders or {}).get(info.name)
        kind = loss["type"] if isinstance(loss, dict) else str(loss)
        width = info.shape[-1] if info.shape else None
        if enc is None and kind in CLASSIFIER_LOSSES and len(info.shape) == 1 and width:
            enc = {"classes": [0, 1] if width == 1 else list(range(width)), "kind": "int"}
        if enc is not None:
            out[info.name] = enc
    return out


def target_column_names(model) -> list[str]:
    """The CSV column each output's predictions are named after: the training target column when the model
    was trained from a CSV with named targets, else the output's name."""
    names = list(model.output_names)
    d = model.spec.config.data
    target = d.train.target if d is not None and d.train is not None else None
    targets = target if isinstance(target, list) else [target] if target is not None else []
    trained_csv = d is not None and d.train is not None and not str(d.train.path).lower().endswith((".npy", ".npz"))
    if trained_csv and len(targets) == len(names) and all(isinstance(t, str) for t in targets):
        return [str(t) for t in targets]
    return names


def decode_outputs(model, outs: list[np.ndarray], probabilities: bool) -> tuple[list[str], list[np.ndarray]]:
    """The prediction columns (header, columns) of ``outs``, as the one prediction writer makes them."""
    from ..data.writers import prediction_columns

    return prediction_columns(outs, model.output_names, encoders=prediction_encoders(model),
                              mode="probabilities" if probabilities else "labels",
                              column_names=target_column_names(model))


def predict_command(run_dir: Path, *, data: Path, output: Path | None, probabilities: bool, batch_size: int,
                    allow_code: bool, keep_columns: list[str] | None = None, overwrite: bool = False) -> dict:
    """Predict; writes ``output`` when given, else returns the columns (or the shape of outputs too large
    to print) for the CLI to show."""
    from ..data.writers import check_output_path, prediction_columns, write_predictions

    model = _load_run_model(run_dir, allow_code)
    encoders = prediction_encoders(model)
    if probabilities and not encoders:
        losses = [loss["type"] if isinstance(loss, dict) else str(loss) for loss in model._loss_per_output()]
        raise ConfigError(problems=[Problem(
            message=f"--probabilities needs a classifier, but {', '.join(model.output_names)} "
                    f"{'is a regression output' if len(losses) == 1 else 'are regression outputs'} "
                    f"(loss {', '.join(losses)})", file="<command line>",
            hint="drop --probabilities: the predictions are the values themselves")])
    if output is not None:
        check_output_path(Path(output), overwrite=overwrite)
    mode = "probabilities" if probabilities else "labels"
    names = target_column_names(model)
    from .streaming import stream_predict, wants_streaming

    if output is not None and wants_streaming(model, data, output):  # a file over the data memory budget
        rows = stream_predict(model, data, output, probabilities=probabilities, batch_size=batch_size,
                              decode=decode_outputs)
        return {"written": Path(output), "n": rows}
    passthrough = _input_columns(Path(data), keep_columns) if keep_columns else {}
    ds = model.load_data(data, require_target=False)
    outs = model.predict_arrays(ds.xs, batch_size)
    if getattr(ds, "files", None):  # images: the file each prediction is for
        passthrough = {"file": np.asarray(ds.files, dtype=object), **passthrough}
    if passthrough and len(next(iter(passthrough.values()))) != len(outs[0]):
        raise ConfigError(problems=[Problem(message="--keep-columns: the columns and the predictions have "
                                                    "different numbers of rows", file=str(data))])
    if output is not None:
        write_predictions(Path(output), outs, model.output_names, encoders=encoders, mode=mode, column_names=names,
                          passthrough=passthrough, overwrite=True)
        return {"written": Path(output), "n": len(outs[0])}
    header, columns = prediction_columns(outs, model.output_names, encoders=encoders, mode=mode, column_names=names)
    shapes = [tuple(o.shape) for o in outs]
    return {"header": [*passthrough, *header],
            "columns": [np.asarray(v).astype(str) for v in passthrough.values()] + columns,
            "shapes": shapes, "n": len(outs[0])}


def _input_columns(path: Path, names: list[str]) -> dict:
    """Columns of a CSV input, by name, as text (for --keep-columns)."""
    import csv

    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        raise ConfigError(problems=[Problem(message="--keep-columns names columns of a CSV/TSV input",
                                            file=str(path), hint="drop --keep-columns for .npy/.npz inputs")])
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(problems=[Problem(message=f"cannot read the input: {exc}", file=str(path))]) from None
    if not rows:
        return {}
    header = [h.strip() for h in rows[0]]
    missing = [n for n in names if n not in header]
    if missing:
        raise ConfigError(problems=[Problem(message=f"--keep-columns: no column '{missing[0]}' in the input",
                                            file=str(path), expected=", ".join(header))])
    body = [r for r in rows[1:] if r]
    return {n: np.array([r[header.index(n)] if header.index(n) < len(r) else "" for r in body], dtype=object)
            for n in names}


def evaluate_command(run_dir: Path, *, data: Path | None, batch_size: int, allow_code: bool) -> dict:
    """Loss and metrics of a run on ``data`` (default: the config's data.test)."""
    model = _load_run_model(run_dir, allow_code)
    if data is None:
        d = model.spec.config.data
        if not (d and d.test):
            raise ConfigError(problems=[Problem(message="no evaluation data", file=str(run_dir),
                                                hint="pass --data FILE (or set data.test in the config)")])
        return model.evaluate(data=d.test, batch_size=batch_size)
    from .streaming import stream_evaluate, wants_streaming

    if wants_streaming(model, data):  # a file over the data memory budget: read piece by piece
        return stream_evaluate(model, data, batch_size)
    return model.evaluate(data=data, batch_size=batch_size)
