"""What `layerforge sweep` does between argument parsing and Optuna."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from ..errors import ConfigError, Problem
from .study import SweepSpec, counted, default_storage, import_optuna, open_study, recover_interrupted

PRUNERS = ("median", "hyperband", "halving", "none")
SAMPLERS = ("tpe", "random")


def default_sweep_dir(name: str) -> Path:
    return Path("sweeps") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _has_validation(model_spec) -> bool:
    cfg = model_spec.config
    return cfg.training.validation_split > 0 or bool(cfg.data and cfg.data.validation)


def _new_sweep(config: Path, space_path: Path, *, overrides, trials, storage, pruner, sampler, metric, direction,
               output, study_name, seed, allow_code) -> tuple[SweepSpec, Path]:
    from ..config import load_config
    from ..engine.callbacks import monitor_direction
    from .space import check_space, load_space

    model_spec = load_config(config, overrides, allow_code=allow_code)
    space = load_space(space_path)
    check_space(space, config, overrides, allow_code=allow_code)
    if metric is None:
        metric = "val_loss" if _has_validation(model_spec) else "loss"
    elif metric.startswith("val_") and not _has_validation(model_spec):
        raise ConfigError(problems=[Problem(message=f"--metric {metric} needs validation data, which the config "
                                                    "does not have", file=str(config),
                                            hint="set training.validation_split (e.g. 0.2) or data.validation, "
                                                 "or use --metric loss")])
    if direction is None:
        direction = "maximize" if monitor_direction(metric, "auto") == "max" else "minimize"
    sweep_dir = Path(output) if output else default_sweep_dir(model_spec.config.name)
    if sweep_dir.exists() and (sweep_dir.is_file() or any(sweep_dir.iterdir())):
        raise ConfigError(problems=[Problem(message="the sweep directory already exists and is not empty",
                                            file=str(sweep_dir),
                                            hint=f"choose another -o, or continue it with --resume {sweep_dir}")])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    from ..io.atomic import atomic_write_text

    atomic_write_text(sweep_dir / "space.yaml", space.text)
    spec = SweepSpec(config=str(Path(config).resolve()), overrides=list(overrides), metric=metric,
                     direction=direction, trials=trials, sampler=sampler, pruner=pruner, seed=seed,
                     storage=storage or default_storage(sweep_dir), study_name=study_name or sweep_dir.name,
                     allow_code=allow_code)
    spec.save(sweep_dir)
    return spec, sweep_dir


def sweep_command(config: Path | None, *, space: Path | None, overrides: list[str], trials: int | None, jobs: int,
                  storage: str | None, dask: str | None, pruner: str, sampler: str, metric: str | None,
                  direction: str | None, output: Path | None, resume: Path | None, study_name: str | None,
                  seed: int | None, allow_code: bool, console) -> None:
    import_optuna()
    if resume is not None:
        sweep_dir = Path(resume)
        spec = SweepSpec.load(sweep_dir)
        if overrides or (config is not None and "=" in str(config)):
            raise ConfigError(problems=[Problem(
                message="a resumed sweep keeps its config and overrides (sweep.json); KEY=VALUE cannot change them",
                file="<command line>", hint=f"resume with `layerforge sweep --resume {sweep_dir}` (--trials N "
                                            "raises the number of trials), or start a new sweep")])
        if config is not None and Path(config).resolve() != Path(spec.config):
            raise ConfigError(problems=[Problem(message=f"this sweep was started with {spec.config}, not {config}",
                                                file=str(sweep_dir / "sweep.json"),
                                                hint=f"resume with `layerforge sweep --resume {sweep_dir}`")])
        if trials is not None and trials != spec.trials:
            spec.trials = trials
            spec.save(sweep_dir)
    else:
        if config is None or space is None:
            raise ConfigError(problems=[Problem(message="a new sweep needs CONFIG and --space FILE",
                                                hint="e.g. layerforge sweep configs/iris.yaml --space space.yaml "
                                                     "--trials 20, or continue one with --resume SWEEPDIR")])
        spec, sweep_dir = _new_sweep(config, space, overrides=overrides, trials=trials or 20, storage=storage,
                                     pruner=pruner, sampler=sampler, metric=metric, direction=direction,
                                     output=output, study_name=study_name, seed=seed, allow_code=allow_code)
    study = open_study(spec, create=True)
    if resume is not None:
        requeued = recover_interrupted(study, own_storage=spec.storage == default_storage(sweep_dir))
        if requeued:
            console.print(f"trials {', '.join(map(str, requeued))} were interrupted; running them again",
                          highlight=False)
    existing = study.get_trials(deepcopy=False)
    elsewhere = sum(1 for t in existing if t.state.name == "RUNNING")  # other machines on a shared storage
    remaining = spec.trials - sum(1 for t in existing if counted(t)) - elsewhere
    console.print(f"[bold]sweep[/] {sweep_dir}: {spec.metric} ({spec.direction}), {spec.trials} trials, "
                  f"{max(remaining, 0)} to run, {spec.sampler.upper()} sampler, {spec.pruner} pruner, "
                  f"storage {_safe_url(spec.storage)}", highlight=False)
    if remaining > 0:
        _run_trials(spec, sweep_dir, remaining, len(existing), jobs, dask, console)
    _finish(spec, sweep_dir, study, console)


def _safe_url(url: str) -> str:
    """The storage URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def _run_trials(spec: SweepSpec, sweep_dir: Path, remaining: int, start: int, jobs: int, dask: str | None,
                console) -> None:
    from ..kernels.threads import cpu_count
    from .execute import dask_client, run_dask, run_local

    cores = cpu_count()
    processes = max(1, min(jobs, remaining))
    if dask is None and processes > cores:
        console.print(f"[dim]{jobs} jobs on {cores} cores: running {cores} at a time[/]", highlight=False)
        processes = cores
    threads = max(1, cores // processes)
    job_list = [{"spec": asdict(spec), "sweep_dir": str(sweep_dir.resolve()), "index": start + i,
                 "threads": threads if processes > 1 or dask else None} for i in range(remaining)]
    rows: list[dict] = []
    cluster = client = None
    try:
        if dask is not None:
            client, cluster = dask_client(dask, processes)
            results = run_dask(job_list, client)
        else:
            results = run_local(job_list, processes, threads)
        _stream(results, rows, spec, console)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: continue with `layerforge sweep --resume {sweep_dir}`")
        raise
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _stream(results, rows: list, spec: SweepSpec, console) -> None:
    """Show each trial as it finishes: a live table on a terminal, a line per trial in a log."""
    if console.is_terminal:
        from rich.live import Live

        with Live(trials_table(rows, spec), console=console, refresh_per_second=4) as live:
            for row in results:
                rows.append(row)
                live.update(trials_table(rows, spec))
        return
    for row in results:
        rows.append(row)
        value = "" if row.get("value") is None else f" {spec.metric} {row['value']:.5g}"
        params = "  ".join(f"{k}={_short(v)}" for k, v in row.get("params", {}).items())
        console.print(f"trial {row['number']}: {row['state']}{value} after {row['epochs']} epochs "
                      f"({row['seconds']:.1f}s)  {params}" + (f"\n  {row['message']}" if row.get("message") else ""),
                      highlight=False)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 30 else text[:27] + "..."


def trials_table(rows: list[dict], spec: SweepSpec, best: int | None = None):
    from rich.table import Table

    paths = list(dict.fromkeys(p for r in rows for p in r.get("params", {})))
    table = Table(header_style="bold", box=None)
    for name in ("trial", "state", spec.metric, "epochs", "time", *paths):
        table.add_column(name, overflow="fold")
    styles = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan", "INTERRUPTED": "dim"}
    for r in sorted(rows, key=lambda r: r["number"]):
        value = "" if r.get("value") is None else f"{r['value']:.5g}"
        cells = [str(r["number"]), f"[{styles.get(r['state'], '')}]{r['state'].lower()}[/]", value,
                 str(r.get("epochs", "")), f"{r['seconds']:.1f}s" if r.get("seconds") is not None else ""]
        cells += [_short(r["params"][p]) if p in r.get("params", {}) else "" for p in paths]
        table.add_row(*cells, style="bold" if r["number"] == best else None)
    return table


def _rows_from_study(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        value = t.value if t.state.name == "COMPLETE" else \
            (t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        state = t.state.name
        if state == "FAIL" and "error" not in t.user_attrs:  # killed with its sweep; --resume runs it again
            state = "INTERRUPTED"
        rows.append({"number": t.number, "state": state, "value": value,
                     "epochs": len(t.intermediate_values), "seconds": seconds,
                     "params": {p: v for p, v in t.user_attrs.get("assignments", [])},
                     "message": t.user_attrs.get("error", "")})
    return rows


def _finish(spec: SweepSpec, sweep_dir: Path, study, console) -> None:
    from ..io.atomic import atomic_write_text

    rows = _rows_from_study(study)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    # a log (no terminal) gets the whole table rather than one squeezed into 80 columns
    if not console.is_terminal:
        console.width = max(console.width, 200)
    console.print(trials_table(rows, spec, best.number if best else None))
    atomic_write_text(sweep_dir / "trials.csv", _trials_csv(rows))
    states = {s: sum(1 for r in rows if r["state"] == s)
              for s in ("COMPLETE", "PRUNED", "FAIL", "INTERRUPTED", "RUNNING")}
    console.print(", ".join(f"{n} {s.lower()}" for s, n in states.items() if n), highlight=False)
    if best is None:
        console.print("[yellow]no trial completed[/]; see the messages above and trials.csv", highlight=False)
        return
    path = sweep_dir / "best.yaml"
    atomic_write_text(path, best_config_yaml(spec, best, sweep_dir))
    console.print(f"[green]best[/] trial {best.number}: {spec.metric} {best.value:.6g}; config written to "
                  f"[bold]{path}[/] (train it: layerforge train {path}); its run: "
                  f"{best.user_attrs.get('run_dir', '')}", highlight=False)


def _trials_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    paths = list(dict.fromkeys(p for r in rows for p in r["params"]))
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "state", "value", "epochs", "seconds", *paths, "message"])
    for r in rows:
        writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"], r["epochs"],
                         "" if r["seconds"] is None else round(r["seconds"], 2),
                         *[_csv_value(r["params"][p]) if p in r["params"] else "" for p in paths],
                         r["message"].splitlines()[0] if r["message"] else ""])
    return buf.getvalue()


def _csv_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def best_config_yaml(spec: SweepSpec, best, sweep_dir: Path) -> str:
    """The model config with the best trial's values in place, its data paths made relative to the sweep
    directory, so `layerforge train SWEEPDIR/best.yaml` runs it."""
    import yaml

    from ..config.overrides import apply_overrides
    from ..config.source import load_yaml
    from .space import ordered_overrides

    data, source = load_yaml(spec.config)
    assignments = [(p, v) for p, v in best.user_attrs.get("assignments", [])]
    data = apply_overrides(data, list(spec.overrides) + ordered_overrides(assignments), source)
    base = Path(spec.config).parent
    for part in ("train", "validation", "test"):
        src = (data.get("data") or {}).get(part)
        if isinstance(src, dict):
            for key in ("path", "target_path"):
                if isinstance(src.get(key), str) and not Path(src[key]).is_absolute():
                    full = (base / src[key]).resolve()
                    rel = os.path.relpath(full, sweep_dir.resolve())
                    src[key] = rel if rel.count("..") <= 2 else str(full)  # near: relative; far: absolute
    header = (f"# best trial {best.number} of the sweep in {sweep_dir} ({spec.metric} = {best.value:.6g})\n"
              f"# made from {spec.config} with: " + " ".join(ordered_overrides(assignments)) + "\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
