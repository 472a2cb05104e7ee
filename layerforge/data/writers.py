"""Writing predictions: CSV/TSV (labels and class probabilities), NPY or NPZ, always atomically."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DataError, Problem
from .dataset import decode_labels
from .table import display_path

PREDICTION_FORMATS = ".csv, .tsv, .npy (one output) or .npz (one array per output)"
MODES = ("both", "labels", "probabilities")


def atomic_write(path: Path, write: Callable) -> None:
    """Call ``write(binary_file)`` on a temp file next to ``path``, fsync, then rename it over ``path``.

    Nothing is left behind if ``write`` fails, and readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fmt(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.char.mod("%.7g" if a.dtype.itemsize <= 4 else "%.15g", a)
    return a.astype(str)


def predicted_indices(p: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Class index per sample: p >= 0.5 for one unit (sigmoid), else argmax over the known classes."""
    flat = p.reshape(len(p), -1)
    if flat.shape[1] == 1:
        return (flat[:, 0] >= 0.5).astype(np.int64)
    if n_classes is not None and 0 < n_classes < flat.shape[1]:
        flat = flat[:, :n_classes]
    return flat.argmax(axis=1).astype(np.int64)


def _columns_for(name: str, p: np.ndarray, enc: dict | None, mode: str, prefix: str):
    """(header names, list of string columns) for one output."""
    n = len(p)
    flat = p.reshape(n, -1)
    if enc is None or p.ndim != 2:
        if flat.shape[1] == 1:
            return [name], [_fmt(flat[:, 0])]
        return [f"{name}_{k}" for k in range(flat.shape[1])], [_fmt(flat[:, k]) for k in range(flat.shape[1])]
    classes = list(enc["classes"])
    header, cols = [], []
    if mode in ("both", "labels"):
        header.append(name)
        cols.append(decode_labels(enc, predicted_indices(flat, len(classes))).astype(str))
    if mode in ("both", "probabilities"):
        if flat.shape[1] == 1:  # one sigmoid unit: the probability of the second (positive) class
            header.append(f"{prefix}p_{classes[-1]}")
            cols.append(_fmt(flat[:, 0]))
        else:
            for k in range(flat.shape[1]):
                header.append(f"{prefix}p_{classes[k]}" if k < len(classes) else f"{prefix}p_unit{k}")
                cols.append(_fmt(flat[:, k]))
    return header, cols


def prediction_columns(predictions: list[np.ndarray], output_names: list[str], *, encoders: dict | None = None,
                       mode: str = "both", column_names: list[str] | None = None) -> tuple[list[str], list[np.ndarray]]:
    """The CSV columns of the predictions: (header, string columns), as write_predictions writes them.
    ``column_names``: the header name of each output's label/value column (default: the output names)."""
    encoders = encoders or {}
    column_names = column_names or output_names
    header: list[str] = []
    cols: list[np.ndarray] = []
    for name, shown, p in zip(output_names, column_names, predictions, strict=True):
        prefix = f"{shown}_" if len(predictions) > 1 else ""
        h, c = _columns_for(shown, p, encoders.get(name), mode, prefix)
        header += h
        cols += c
    return header, cols


def check_output_path(path: Path, *, overwrite: bool = False) -> None:
    """Refuse to replace an existing file unless ``overwrite``; clear messages for a missing or file parent."""
    path = Path(path)
    shown = display_path(path)
    parent = path.parent
    if path.is_dir():
        raise DataError(problems=[Problem(message=f"{shown} is a folder, not a file", file=shown,
                                          hint="name a file inside it, e.g. " + display_path(path / "preds.csv"))])
    if parent.exists() and not parent.is_dir():
        raise DataError(problems=[Problem(message=f"cannot write {shown}: {display_path(parent)} is a file, not a "
                                                  "folder", file=shown, hint="choose an output path in a folder")])
    if not parent.exists():
        raise DataError(problems=[Problem(message=f"cannot write {shown}: the folder {display_path(parent)} does "
                                                  "not exist", file=shown, hint=f"create it first (mkdir -p "
                                                                                f"{display_path(parent)})")])
    if path.exists() and not overwrite:
        raise DataError(problems=[Problem(message=f"{shown} already exists", file=shown,
                                          hint="choose another output file, or pass --overwrite to replace it")])


def write_predictions(path, predictions, output_names: list[str] | None = None, *, encoders: dict | None = None,
                      mode: str = "both", column_names: list[str] | None = None, passthrough: dict | None = None,
                      overwrite: bool = True) -> Path:
    """Write one model's predictions to ``path`` (format by extension), atomically.

    ``predictions``: one array per output (or a single array). ``encoders``: the label mappings of the
    run (output name -> {"classes", "kind"}). CSV/TSV: for a classifier output, a label column named
    like the output (or ``column_names``, e.g. the training target column) and probability columns
    ``p_<class>`` (``<output>_p_<class>`` when the model has several outputs); other outputs give one
    column per value (``<output>`` or ``<output>_<k>``). ``mode``: "both" (default), "labels" (label
    columns only) or "probabilities" (no label columns). ``passthrough``: input columns (name -> values)
    written first (CSV, NPZ). NPY: the raw predictions of a single output, per-sample shape kept (decoded
    labels with mode="labels"). NPZ: one array per output name (plus ``<output>_labels`` for classifiers
    unless mode="probabilities"). ``overwrite=False``: an existing file is refused (check_output_path)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    path = Path(path)
    if not overwrite:
        check_output_path(path)
    preds = [np.asarray(p) for p in (predictions if isinstance(predictions, (list, tuple)) else [predictions])]
    if output_names is None:
        output_names = ["prediction"] if len(preds) == 1 else [f"output_{i}" for i in range(len(preds))]
    if len(output_names) != len(preds):
        raise ValueError(f"{len(preds)} prediction arrays but {len(output_names)} output names")
    encoders = encoders or {}
    passthrough = passthrough or {}
    ns = {len(p) for p in preds}
    if len(ns) > 1:
        raise ValueError(f"prediction arrays have different lengths: {sorted(ns)}")
    ext = path.suffix.lower()
    if ext in (".csv", ".tsv", ".txt"):
        header, cols = prediction_columns(preds, output_names, encoders=encoders, mode=mode,
                                          column_names=column_names)
        header = [*passthrough, *header]
        cols = [np.asarray(v).astype(str) for v in passthrough.values()] + cols
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, delimiter="\t" if ext == ".tsv" else ",", lineterminator="\n")
        writer.writerow(header)
        if cols:
            writer.writerows(zip(*[c.tolist() for c in cols], strict=True))
        data = buf.getvalue().encode("utf-8")
        atomic_write(path, lambda fh: fh.write(data))
    elif ext == ".npy":
        if len(preds) != 1:
            raise DataError(problems=[Problem(
                message=f"an .npy file holds one array, but the model has {len(preds)} outputs "
                        f"({', '.join(output_names)})", file=display_path(path),
                hint="write the predictions to an .npz (one array per output) or a .csv file")])
        if passthrough:
            raise DataError(problems=[Problem(
                message="an .npy file holds one array, so it cannot keep input columns", file=display_path(path),
                hint="write a .csv or .npz file to keep columns")])
        arr = preds[0]
        enc = encoders.get(output_names[0])
        if mode == "labels" and enc is not None and arr.ndim == 2:
            arr = decode_labels(enc, predicted_indices(arr, len(enc["classes"])))
        atomic_write(path, lambda fh: np.save(fh, arr, allow_pickle=False))
    elif ext == ".npz":
        arrays = {k: np.asarray(v).astype(str) for k, v in passthrough.items()}
        for name, p in zip(output_names, preds, strict=True):
            enc = encoders.get(name)
            if mode != "labels" or enc is None:
                arrays[name] = p
            if mode != "probabilities" and enc is not None and p.ndim == 2:
                arrays[f"{name}_labels"] = decode_labels(enc, predicted_indices(p, len(enc["classes"])))
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
    else:
        raise DataError(problems=[Problem(
            message=f"cannot write predictions to {display_path(path)}: unknown extension {ext or '(none)'!r}",
            file=display_path(path), expected=PREDICTION_FORMATS, hint="name the output file e.g. preds.csv")])
    return path
