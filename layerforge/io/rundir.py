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
    import stat

    from safetensors.numpy import load_file

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise _damaged(path, f"cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise _damaged(path, "it is a directory, not a tensor file" if stat.S_ISDIR(mode) else
                       "it is not a regular file")
    try:
        return load_file(str(path))
    except Exception as exc:  # a truncated or foreign file: safetensors checks its header against the file
        raise _damaged(path, f"cannot read it: {exc}") from None


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


def _damaged(file: Path, message: str, *, line: int | None = None, column: int | None = None,
             hint: str | None = None) -> CheckpointError:
    return CheckpointError(problems=[Problem(
        message=f"damaged run directory: {file.name}: {message}", file=str(file), line=line, column=column,
        hint=hint or "train again, or restore the run directory from a backup")])


def _line_of(text: str, key: str) -> int | None:
    """The line of the first ``"key":`` in a JSON text (to point at the bad entry)."""
    at = text.find(f'"{key}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else None


MAX_RUN_FILE_BYTES = 256 * 1024 * 1024  # config/state/schema/history texts; weights are separate


def _read_json(file: Path, *, required: bool, default):
    """(value, text) of a JSON file of the run; a damaged one names the file, line and column."""
    from ..config.source import read_text_file

    if not file.exists() and not file.is_symlink():
        if required:
            raise _damaged(file, "the file is missing")
        return default, ""
    try:
        text = read_text_file(file, what="run file", limit=MAX_RUN_FILE_BYTES, error=CheckpointError)
    except CheckpointError as exc:
        p = exc.problems[0]
        raise _damaged(file, p.message, line=p.line, column=p.column) from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise _damaged(file, f"not valid JSON: {exc.msg}", line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise _damaged(file, "not valid JSON: nested too deeply") from None


def _read_config(file: Path) -> dict:
    from ..config.source import MAX_CONFIG_BYTES, parse_yaml_text, read_text_file
    from ..errors import ConfigError

    if not file.exists() and not file.is_symlink():
        raise _damaged(file, "the file is missing")
    try:
        text = read_text_file(file, what="run file", limit=MAX_CONFIG_BYTES, error=CheckpointError)
        if not text.strip():
            raise _damaged(file, "the file is empty", hint="copy the config you trained with to this file")
        data, smap = parse_yaml_text(text, str(file))
    except (CheckpointError, ConfigError) as exc:
        if exc.problems and exc.problems[0].message.startswith("damaged run directory"):
            raise
        p = exc.problems[0] if exc.problems else Problem(message=str(exc))
        raise _damaged(file, p.message, line=p.line, column=p.column) from None
    if not isinstance(data, dict):
        found = "null" if data is None else "a list" if isinstance(data, list) else "a single value"
        raise _damaged(file, f"it holds {found}, not the model's config (a mapping with `layers:`)", line=1,
                       column=1, hint="copy the config you trained with to this file")
    return data


def _int_at_least(value, lo: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


def _rng_problem(value) -> str | None:
    """Why ``value`` is not a numpy bit-generator state, or None (tried on a throwaway generator)."""
    if not isinstance(value, dict):
        return f"it is {type(value).__name__}, not a generator state"
    try:
        np.random.default_rng(0).bit_generator.state = value
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _check_state(file: Path, state, text: str) -> dict:
    if not isinstance(state, dict):
        raise _damaged(file, f"it holds {json.dumps(state)[:40]}, not a mapping of training state", line=1,
                       column=1)
    seed = state.get("seed")
    if seed is not None and not _int_at_least(seed, 0):
        raise _damaged(file, f"seed must be a non-negative integer, not {seed!r}", line=_line_of(text, "seed"))
    epoch = state.get("epoch")
    if epoch is not None:
        if not _int_at_least(epoch, 0):
            raise _damaged(file, f"epoch must be a non-negative integer, not {epoch!r}", line=_line_of(text, "epoch"))
        why = _rng_problem(state.get("rng"))
        if why:
            raise _damaged(file, f"rng is not a random-generator state ({why})", line=_line_of(text, "rng"))
    layer_rngs = state.get("layer_rngs")
    if layer_rngs is not None:
        if not isinstance(layer_rngs, dict):
            raise _damaged(file, "layer_rngs must be a mapping", line=_line_of(text, "layer_rngs"))
        for name, value in layer_rngs.items():
            why = _rng_problem(value)
            if why:
                raise _damaged(file, f"layer_rngs.{name} is not a random-generator state ({why})",
                               line=_line_of(text, name))
    history = state.get("history")
    if history is not None and not (isinstance(history, list) and all(isinstance(r, dict) for r in history)):
        raise _damaged(file, "history must be a list of per-epoch mappings", line=_line_of(text, "history"))
    opt = state.get("optimizer")
    if opt is not None:
        if not isinstance(opt, dict):
            raise _damaged(file, "optimizer must be a mapping of the optimizer's scalars",
                           line=_line_of(text, "optimizer"))
        for key, value in opt.items():
            if isinstance(value, dict) and set(value) == {"dtype", "value"}:
                ok = value["dtype"] in _SCALAR_DTYPES and isinstance(value["value"], (int, float)) and not (
                    isinstance(value["value"], bool))
            else:
                ok = value is None or isinstance(value, (int, float, str, list))
            if not ok:
                raise _damaged(file, f"optimizer.{key} is not a saved scalar: {json.dumps(value)[:60]}",
                               line=_line_of(text, key))
    return state


_SCALAR_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                  "uint64", "bool"}


def _check_schema(file: Path, schema, text: str) -> dict:
    if not isinstance(schema, dict):
        raise _damaged(file, f"it holds {json.dumps(schema)[:40]}, not a mapping of inputs, outputs and "
                             "label mappings", line=1, column=1)
    for key in ("inputs", "outputs"):
        value = schema.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            raise _damaged(file, f"{key} must be a list of mappings", line=_line_of(text, key))
    names = schema.get("feature_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise _damaged(file, "feature_names must be a list of column names or null",
                       line=_line_of(text, "feature_names"))
    encoders = schema.get("encoders")
    if encoders is not None:
        if not isinstance(encoders, dict):
            raise _damaged(file, "encoders must be a mapping output -> label mapping", line=_line_of(text, "encoders"))
        for name, enc in encoders.items():
            classes = enc.get("classes") if isinstance(enc, dict) else None
            if not isinstance(classes, list) or not all(
                    isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in classes):
                raise _damaged(file, f"encoders.{name} must hold `classes:`, a list of labels",
                               line=_line_of(text, name))
            if enc.get("kind", "string") not in ("string", "int"):
                raise _damaged(file, f"encoders.{name}.kind must be 'string' or 'int'", line=_line_of(text, name))
    return schema


_OPTIMIZER_SCALARS = ("iterations", "learning_rate", "schedule_active", "u_product")


def _check_optimizer(file: Path, state: dict, weights: dict) -> dict:
    """The optimizer state has its scalars and only per-weight slots (``name/index``), all numeric, each the size
    of one of the saved weights (slot i belongs to the i-th trainable weight)."""
    import re

    sizes = {int(np.asarray(w).size) for w in weights.values()}

    for key in ("iterations", "learning_rate"):
        if key not in state:
            raise _damaged(file, f"the optimizer state has no {key!r} entry")
    for key, value in state.items():
        if key not in _OPTIMIZER_SCALARS and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*/[0-9]+", key):
            raise _damaged(file, f"unexpected optimizer state entry {key[:60]!r}")
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise _damaged(file, f"optimizer state entry {key[:60]!r} is not numeric")
        if key in _OPTIMIZER_SCALARS and arr.size != 1:
            raise _damaged(file, f"optimizer state entry {key!r} should be one number, it has {arr.size}")
        if key not in _OPTIMIZER_SCALARS and (int(key.rpartition("/")[2]) >= len(weights) or arr.size not in sizes):
            raise _damaged(file, f"optimizer state entry {key[:60]!r} ({arr.size} values) belongs to no saved weight")
    iterations = float(np.asarray(state["iterations"]).reshape(-1)[0])
    if not (np.isfinite(iterations) and iterations >= 0 and iterations == int(iterations)):
        raise _damaged(file, f"the optimizer's iteration count is {iterations}")
    return state


def read_run(path: str | Path) -> dict:
    """Everything in a run directory, validated; CheckpointError when it is missing or damaged (naming the file,
    and the line where the file is text)."""
    import errno
    import os

    path = Path(path)
    try:
        _recover(path)
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(problems=[Problem(message="symbolic link loop", file=str(path),
                                                    hint="point the link at the run directory")]) from None
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
    config = _read_config(path / "config.yaml")
    schema = _check_schema(path / "schema.json", *_read_json(path / "schema.json", required=True, default={}))
    state = _check_state(path / "state.json", *_read_json(path / "state.json", required=False, default={}))
    history, _ = _read_json(path / "history.json", required=False, default=[])
    if not isinstance(history, list):
        raise _damaged(path / "history.json", "it must hold a list of per-epoch mappings", line=1, column=1)
    weights = _load_tensors(path / "weights.safetensors")
    optimizer = None
    if (path / "optimizer.safetensors").exists():
        arrays = {k: v for k, v in _load_tensors(path / "optimizer.safetensors").items() if k != "_empty"}
        optimizer = _check_optimizer(path / "optimizer.safetensors",
                                     join_optimizer_state(arrays, state.get("optimizer", {})), weights)
    callback_arrays = _load_tensors(path / CALLBACK_ARRAYS) if (path / CALLBACK_ARRAYS).exists() else {}
    return {"path": path, "config": config, "schema": schema, "state": state, "history": history,
            "weights": weights, "optimizer": optimizer, "callback_arrays": callback_arrays}
