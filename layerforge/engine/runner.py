"""What `layerforge train`, `predict` and `evaluate` do, between argument parsing and the library."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, ConfigError, Problem, RunFailed

MODEL_KEYS = ("inputs", "input_shape", "input_dtype", "batch_size", "layers", "outputs")


def _allow_code(flag: bool) -> None:
    from .. import expressions

    expressions.allow_code(flag)


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


def train_command(config: Path, *, overrides, output, resume, data, validation_data, quiet, allow_code, threads,
                  console, init_from: Path | None = None) -> None:
    from ..api import Model
    from ..config import load_config
    from ..graph import build_graph
    from ..io.rundir import read_run

    _allow_code(allow_code)
    spec = load_config(config, overrides)
    graph = build_graph(spec)
    run = None
    seed = None
    if resume is not None:
        run = read_run(resume)
        diff = _same_model(run["config"], spec.canonical_dict())
        if diff:
            raise CheckpointError(problems=[Problem(
                message=f"the model in {config} differs from the one saved in {resume} ({', '.join(diff)})",
                file=str(resume), hint="resume with the same model config; only training settings may change")])
        seed = (run.get("state") or {}).get("seed")
    model = Model(spec, graph, seed=seed)
    run_dir = Path(output) if output else (Path(resume) if resume else default_run_dir(spec.config.name))
    _check_output_dir(run_dir, Path(resume) if resume else None)
    if run is not None:
        model.restore(run)
        done = model.trainer.epoch
        if done >= spec.config.training.epochs:
            raise ConfigError(problems=[Problem(
                message=f"the run already has {done} epochs and the config asks for "
                        f"{spec.config.training.epochs}", file=str(resume),
                hint=f"raise the total, e.g. `layerforge train {config} --resume {resume} "
                     f"training.epochs={done + 10}`")])

    _warm_start(model, spec, init_from, resume, config, console, quiet)

    def save(trainer, epoch):
        model.save(run_dir)

    started = time.perf_counter()
    if not quiet:
        console.print(f"[bold]{spec.config.name}[/]: {graph.total_params:,} parameters, "
                      f"{len(graph.nodes)} layers, seed {model.seed}"
                      + (f", resuming after epoch {model.trainer.epoch}" if run is not None else ""), highlight=False)
    try:
        history = model.fit(data=data, validation_data=validation_data, quiet=quiet, console=console,
                            on_epoch_end=save)
    except KeyboardInterrupt:
        done = model.trainer.epoch
        if done:
            console.print(f"[yellow]interrupted[/]: {run_dir} holds epoch {done}; continue with "
                          f"`layerforge train {config} --resume {run_dir}`")
        raise
    if not history:
        raise RunFailed("no epoch ran")
    model.save(run_dir)  # after callbacks such as EarlyStopping(restore_best_weights)
    for note in model.trainer.notes:
        console.print(f"[dim]{note}[/]", highlight=False)
    from .progress import format_logs

    last = history[-1]
    elapsed = time.perf_counter() - started
    console.print(f"[green]done[/] {len(history)} epochs in {elapsed:.1f}s  {format_logs(last)}", highlight=False)
    console.print(f"run saved to [bold]{run_dir}[/]  (predict: layerforge predict {run_dir} --data FILE)",
                  highlight=False)
    if not np.isfinite(last["loss"]):
        raise RunFailed("the loss became NaN or infinite; lower the learning rate or check the data")


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
    from .warm_start import init_from_run

    warm = init_from_run(model, source)
    if not quiet:
        console.print(f"weights of {len(warm.loaded)} layer(s) from {source}"
                      + (f"; fresh: {', '.join(warm.fresh)}" if warm.fresh else "")
                      + (f"; not in this model: {', '.join(warm.unused)}" if warm.unused else ""), highlight=False)
    return warm


def _load_run_model(run_dir: Path, allow_code: bool):
    from ..api import load

    _allow_code(allow_code)
    return load(run_dir)


def decode_outputs(model, outs: list[np.ndarray], probabilities: bool) -> tuple[list[str], list[np.ndarray]]:
    """Columns to write: class labels (mapped back), probabilities, or raw values."""
    names, columns = [], []
    for info, out in zip(model._output_infos(), outs):
        enc = (model.encoders or {}).get(info.name) or {}
        classes = enc.get("classes")
        flat = out.reshape(len(out), -1)
        is_classifier = info.sparse or info.categorical or (classes is not None)
        if probabilities or not is_classifier:
            if flat.shape[1] == 1:
                names.append(info.name if not probabilities else f"p_{classes[-1] if classes else info.name}")
                columns.append(flat[:, 0])
            else:
                labels = classes if classes is not None and len(classes) == flat.shape[1] else range(flat.shape[1])
                for j, c in enumerate(labels):
                    names.append(f"p_{c}" if probabilities else f"{info.name}_{j}")
                    columns.append(flat[:, j])
            continue
        idx = (flat[:, 0] > 0.5).astype(np.int64) if flat.shape[1] == 1 else flat.argmax(axis=1)
        labels = np.asarray(classes, dtype=object)[idx] if classes is not None else idx
        names.append(info.name)
        columns.append(labels)
    return names, columns


def predict_command(run_dir: Path, *, data: Path, output: Path | None, probabilities: bool, batch_size: int,
                    allow_code: bool, console) -> None:
    model = _load_run_model(run_dir, allow_code)
    ds = model.load_data(data, require_target=False)
    outs = model.trainer.predict(ds.xs, batch_size)
    names, columns = decode_outputs(model, outs, probabilities)
    if output is None:
        from rich.table import Table

        table = Table(*names, box=None, header_style="bold")
        for row in zip(*columns):
            table.add_row(*[f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v) for v in row])
        console.print(table)
        return
    _write_predictions(Path(output), names, columns, outs)
    console.print(f"wrote {len(columns[0]) if columns else 0} predictions to {output}", highlight=False)


def _write_predictions(path: Path, names, columns, outs) -> None:
    from ..io.atomic import atomic_write_bytes, atomic_write_text

    suffix = path.suffix.lower()
    if suffix == ".npy":
        import io

        arr = np.column_stack(columns) if all(np.asarray(c).dtype != object for c in columns) else \
            np.column_stack(columns).astype(str)
        buf = io.BytesIO()
        np.save(buf, arr if arr.shape[1] > 1 else arr[:, 0])
        atomic_write_bytes(path, buf.getvalue())
        return
    if suffix not in (".csv", ".tsv", ".txt"):
        raise ConfigError(problems=[Problem(message=f"cannot write predictions as '{suffix or path.name}'",
                                            file=str(path), expected=".csv, .tsv or .npy")])
    sep = "\t" if suffix == ".tsv" else ","
    lines = [sep.join(names)]
    for row in zip(*columns):
        lines.append(sep.join(f"{v:.9g}" if isinstance(v, (float, np.floating)) else str(v) for v in row))
    atomic_write_text(path, "\n".join(lines) + "\n")


def evaluate_command(run_dir: Path, *, data: Path | None, batch_size: int, as_json: bool, allow_code: bool,
                     console) -> None:
    model = _load_run_model(run_dir, allow_code)
    if data is None:
        d = model.spec.config.data
        if not (d and d.test):
            raise ConfigError(problems=[Problem(message="no evaluation data", file=str(run_dir),
                                                hint="pass --data FILE (or set data.test in the config)")])
        results = model.evaluate(data=d.test, batch_size=batch_size)
    else:
        results = model.evaluate(data=data, batch_size=batch_size)
    if as_json:
        console.print_json(json.dumps(results))
        return
    from rich.table import Table

    table = Table("metric", "value", box=None, header_style="bold")
    for k, v in results.items():
        table.add_row(k, f"{v:.6g}")
    console.print(table)
