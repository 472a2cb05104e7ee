"""The run directory `train` writes and `predict` / `evaluate` / `--resume` read.

    config.yaml            the resolved config, canonical names
    weights.safetensors    every weight, key "<layer>/<weight>" (Keras 3 layout)
    optimizer.safetensors  optimizer slots (and its scalar state in state.json)
    state.json             epochs done, RNG state, callback state, optimizer scalars, the overrides
    callbacks.safetensors  arrays of callback state (EarlyStopping's best weights), when there are any
    history.csv / .json    one row per epoch
    schema.json            inputs/outputs (names, shapes, dtypes), data columns, label mappings

Everything is written into a temporary sibling folder and renamed into place, so a
crash never leaves a half-written run; no pickle anywhere.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import yaml

from ..errors import CheckpointError, Problem
from .atomic import atomic_directory

FORMAT_VERSION = 1
REQUIRED = ("config.yaml", "weights.safetensors", "schema.json")
CALLBACK_ARRAYS = "callbacks.safetensors"  # arrays of callback state (EarlyStopping's best weights)
RUN_FILES = {*REQUIRED, "optimizer.safetensors", "state.json", "history.json", "history.csv", CALLBACK_ARRAYS}


def _save_tensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in tensors.items()}, str(path),
              metadata=metadata)  # reshape: ascontiguousarray makes a 0-d weight (1,)


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(problems=[Problem(message=f"cannot read {path.name}: {exc}", file=str(path),
                                                hint="the run directory is damaged; train again or use a "
                                                     "checkpoint")]) from None


def history_csv(history: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for i, row in enumerate(history):
        writer.writerow([i + 1, *[row.get(k, "") for k in keys]])
    return buf.getvalue()


def split_optimizer_state(state: dict) -> tuple[dict[str, np.ndarray], dict]:
    arrays, scalars = {}, {}
    for k, v in state.items():
        if isinstance(v, np.ndarray) and v.ndim > 0:
            arrays[k] = v
        elif isinstance(v, np.ndarray):
            scalars[k] = {"dtype": str(v.dtype), "value": v.item()}
        else:
            scalars[k] = v
    return arrays, scalars


def join_optimizer_state(arrays: dict, scalars: dict) -> dict:
    out = dict(arrays)
    for k, v in scalars.items():
        if isinstance(v, dict) and set(v) == {"dtype", "value"}:
            out[k] = np.array(v["value"], dtype=v["dtype"])
        else:
            out[k] = v
    return out


def write_run(path: str | Path, *, config: dict, weights: dict[str, np.ndarray], optimizer_state: dict | None,
              state: dict, history: list[dict], schema: dict, callback_arrays: dict[str, np.ndarray] | None = None
              ) -> Path:
    """Write a complete run directory atomically (replacing an older one at the same path).

    Anything else in an older directory at ``path`` (checkpoints, a CSV log) is carried into the new one."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        if callback_arrays:
            _save_tensors(tmp / CALLBACK_ARRAYS, callback_arrays)
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        _save_tensors(tmp / "weights.safetensors", weights, {"format": "layerforge", "version": str(FORMAT_VERSION)})
        full_state = dict(state)
        if optimizer_state is not None:
            arrays, scalars = split_optimizer_state(optimizer_state)
            _save_tensors(tmp / "optimizer.safetensors", arrays or {"_empty": np.zeros(0, np.float32)})
            full_state["optimizer"] = scalars
        full_state["format_version"] = FORMAT_VERSION
        (tmp / "state.json").write_text(json.dumps(full_state, indent=1, default=_json_default))
        (tmp / "history.json").write_text(json.dumps(history, indent=1, default=_json_default))
        (tmp / "history.csv").write_text(history_csv(history))
        (tmp / "schema.json").write_text(json.dumps(schema, indent=1, default=_json_default))
        _carry_over(path, tmp)
    return path


def _carry_over(old: Path, new: Path) -> None:
    """Hard-link (copy where links fail) what the old run directory holds beyond the files write_run writes:
    the old directory stays whole until the new one replaces it."""
    if not old.is_dir():
        return
    for entry in old.iterdir():
        if entry.name in RUN_FILES or (new / entry.name).exists() or entry.name.startswith("."):
            continue
        if entry.is_dir():
            shutil.copytree(entry, new / entry.name, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(entry, new / entry.name)


def _link_or_copy(src, dst) -> None:
    import os

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _recover(path: Path) -> None:
    """If a save was interrupted between its two renames, put the previous run back."""
    if path.exists():
        return
    olds = sorted(path.parent.glob(f".{path.name}.old-*"))
    if olds:
        shutil.move(str(olds[-1]), str(path))


def read_run(path: str | Path) -> dict:
    """Everything in a run directory, validated; CheckpointError when it is missing or damaged."""
    path = Path(path)
    _recover(path)
    if not path.exists():
        raise CheckpointError(problems=[Problem(message="run directory not found", file=str(path),
                                                hint="pass the folder `layerforge train` wrote (runs/<name>-<time>)")])
    if not path.is_dir():
        raise CheckpointError(problems=[Problem(message="not a run directory (it is a file)", file=str(path),
                                                hint="pass the folder `layerforge train` wrote")])
    missing = [f for f in REQUIRED if not (path / f).exists()]
    if missing:
        raise CheckpointError(problems=[Problem(message=f"not a complete run directory: {', '.join(missing)} "
                                                        "missing", file=str(path))])
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
        schema = json.loads((path / "schema.json").read_text())
        state = json.loads((path / "state.json").read_text()) if (path / "state.json").exists() else {}
        history = json.loads((path / "history.json").read_text()) if (path / "history.json").exists() else []
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise CheckpointError(problems=[Problem(message=f"damaged run directory: {exc}", file=str(path))]) from None
    weights = _load_tensors(path / "weights.safetensors")
    optimizer = None
    if (path / "optimizer.safetensors").exists():
        arrays = {k: v for k, v in _load_tensors(path / "optimizer.safetensors").items() if k != "_empty"}
        optimizer = join_optimizer_state(arrays, state.get("optimizer", {}))
    callback_arrays = _load_tensors(path / CALLBACK_ARRAYS) if (path / CALLBACK_ARRAYS).exists() else {}
    return {"path": path, "config": config, "schema": schema, "state": state, "history": history,
            "weights": weights, "optimizer": optimizer, "callback_arrays": callback_arrays}
