"""Fitting a data file to a model: `load_source(DataSource, ...) -> Dataset`.

Rules (also what the error messages explain):

- CSV/TSV feed single-input models. Features default to every column except the target(s) and the
  sample-weight column; they are reshaped to the input's shape (64 columns -> (8, 8, 1)). The target
  defaults to the column named like the output, else (one output) the last column. Columns are chosen
  by header name or by 0-based index (negative counts from the end).
- Class labels (text, or whole numbers for a classifier) are encoded: text labels by their sorted
  unique values, whole numbers 0..units-1 as themselves, other whole numbers by sorted unique value.
  The mapping is returned in ``Dataset.encoders`` and, passed back for evaluate/predict, makes labels
  map the same way and refuses classes that training never saw.
- Targets: sparse outputs get int64 class ids (n,), categorical outputs float32 one-hot (n, units),
  other outputs float32 values of the output's shape (text labels there: two classes and one unit ->
  0/1, as many classes as units -> one-hot).
- NPY: the file is the (single) input; the targets come from `target_path:`. NPZ: `features:` names
  the arrays for the inputs (default `x`, or the input names), `target:` those for the outputs
  (default `y`, or the output names). An array of shape (n, 64) also fits an (8, 8, 1) input, and size-1
  axes may be missing or extra; anything else is a shape error naming both shapes.
- NaN/empty/NA cells are "missing values", infinities are refused, for features and targets alike.
  Integer inputs (Embedding) are checked for whole numbers only; their range is the layer's business.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, did_you_mean
from .dataset import Dataset, InputInfo, LazyCast, OutputInfo
from .table import (
    MISSING,
    Located,
    Problems,
    Table,
    display_path,
    is_missing,
    is_number,
    load_npy,
    read_table,
    resolve_path,
    shape_str,
    short_list,
)

_CHUNK_ELEMENTS = 1 << 22  # elements checked at a time in memory-mapped arrays
MAX_SHOWN = 12  # rows reported per kind of problem


# ---------------------------------------------------------------------------------------------- helpers


def _as_input(i) -> InputInfo:
    if isinstance(i, InputInfo):
        return i
    return InputInfo(name=i.name, shape=tuple(i.shape), dtype=str(getattr(i, "dtype", "float32")))


def _py(v):
    """A numpy scalar as the plain Python value (so messages show 'abc', not np.str_('abc'))."""
    return v.item() if isinstance(v, np.generic) else v


def _size(shape) -> int | None:
    if any(d is None for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _matches(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(w is None or w == g for g, w in zip(got, want, strict=True))


def _squeezed(shape: tuple) -> tuple:
    return tuple(d for d in shape if d != 1)


def _fit_shape(arr, want: tuple):
    """``arr`` (n, ...) with per-sample shape ``want``: as is, from flat rows, or up to size-1 axes; else None."""
    got = tuple(arr.shape[1:])
    want = tuple(want)
    if _matches(got, want):
        return arr
    size = _size(want)
    if size is not None and _size(got) == size and (len(got) <= 1 or _squeezed(got) == _squeezed(want)):
        return arr.reshape((arr.shape[0],) + want)
    return None


def _chunks(arr):
    """(start, block) pieces of ``arr`` along the sample axis; one piece unless memory-mapped."""
    if not isinstance(arr, np.memmap):
        yield 0, np.asarray(arr)
        return
    per = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)))
    step = max(1, _CHUNK_ELEMENTS // per)
    for start in range(0, arr.shape[0], step):
        yield start, np.asarray(arr[start:start + step])


def _index_str(shape_tail: tuple, flat_pos: int) -> str:
    if not shape_tail or int(np.prod(shape_tail)) == 1:
        return ""
    return ", position " + str(tuple(int(v) for v in np.unravel_index(flat_pos, shape_tail)))


def _check_array_values(arr, what: str, P: Problems, *, dtype: np.dtype, role: str, file=None) -> None:
    """Missing (NaN), infinite, too large for ``dtype``, or non-whole values for an integer input."""
    kind = arr.dtype.kind
    if dtype.kind in "iu" and kind in "iuf" and arr.size:
        info = np.iinfo(dtype)
        lo, hi = np.inf, -np.inf
        for _, block in _chunks(arr):
            vals = np.asarray(block, dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
        if lo < info.min or hi > info.max:
            P.add(f"{what} holds values from {lo:g} to {hi:g}, outside the range of {dtype.name} "
                  f"({info.min} to {info.max})", file=file, hint="check the data, or declare the input int64")
            return
    if kind not in "f" and not (kind in "iu" and dtype.kind == "f"):
        return
    limit = np.finfo(dtype).max if dtype.kind == "f" else None
    tail = tuple(arr.shape[1:])
    for start, block in _chunks(arr):
        flat = block.reshape(block.shape[0], int(np.prod(block.shape[1:], dtype=np.int64)))
        if kind == "f":
            nan = np.isnan(flat)
            inf = np.isinf(flat)
            bad_rows = np.flatnonzero(nan.any(axis=1) | inf.any(axis=1))
            for r in bad_rows[:12]:
                pos = int(np.flatnonzero(nan[r] | inf[r])[0])
                val = flat[r, pos]
                label = "missing value (NaN)" if np.isnan(val) else f"infinite value ({val})"
                P.add(f"{label} in {what}, sample index {start + r}{_index_str(tail, pos)}", file=file,
                      hint=f"remove or fill in the {role} samples with missing or infinite values")
            if len(bad_rows) > 12:
                P.add(f"{len(bad_rows) - 12} more samples with NaN or infinite values in {what}", file=file)
            if dtype.kind in "iu":
                frac = np.isfinite(flat) & (flat != np.round(flat))
                rows = np.flatnonzero(frac.any(axis=1))
                if len(rows):
                    r = rows[0]
                    pos = int(np.flatnonzero(frac[r])[0])
                    P.add(f"{what} holds {_py(flat[r, pos])!r} at sample index {start + r}{_index_str(tail, pos)}, "
                          f"but the model input is {dtype.name}: it needs whole numbers "
                          f"({len(rows)} sample{'s' if len(rows) > 1 else ''} affected)", file=file,
                          hint="integer inputs are token/category ids (Embedding); round the values or "
                               "declare the input as float32")
        if limit is not None and flat.size:
            big = np.abs(np.where(np.isfinite(flat), flat, 0).astype(np.float64)) > limit
            rows = np.flatnonzero(big.any(axis=1))
            if len(rows):
                r = rows[0]
                pos = int(np.flatnonzero(big[r])[0])
                P.add(f"{what} holds {_py(flat[r, pos])!r} at sample index {start + r}{_index_str(tail, pos)}, "
                      f"too large for {dtype.name}", file=file, hint="rescale the data")
        if len(P) > 30:
            return


def _cast(arr, dtype: np.dtype):
    if arr.dtype == dtype:
        return arr
    if isinstance(arr, np.memmap):
        return LazyCast(arr, dtype)
    return arr.astype(dtype)


# ---------------------------------------------------------------------------------------------- labels


def _label_too_large(values: np.ndarray, loc: Located, per_sample: int, P: Problems) -> bool:
    """Whole-number labels beyond what an int64 holds exactly (2**53 as a float) are reported by cell."""
    big = np.flatnonzero(np.abs(values) > 2**53)
    if not len(big):
        return False
    desc, line = loc.at(int(big[0]) // per_sample)
    P.add(f"{desc}: {_py(values[big[0]])!r} is too large for a class label", line=line,
          hint="class labels are small whole numbers or text; for numeric targets use a regression loss")
    return True


def _encode_labels(raw: np.ndarray, out: OutputInfo, enc: dict | None, loc: Located, P: Problems):
    """Class labels -> (int64 class ids of raw's shape, encoder dict). Problems go to ``P``."""
    flat = raw.reshape(-1)
    text = raw.dtype.kind in "US"
    width = out.shape[-1] if len(out.shape) else None
    per_sample = max(1, flat.size // max(1, raw.shape[0]))
    if enc is not None:
        kind = enc.get("kind", "string")
        classes = list(enc["classes"])
        if kind == "int" and not text:
            values = flat
            if values.dtype.kind == "f":
                whole = np.round(values)
                if not np.array_equal(whole, values):
                    i = int(np.flatnonzero(whole != values)[0])
                    desc, line = loc.at(i // per_sample)
                    P.add(f"{desc}: {_py(values[i])!r} is not a class label (the training labels were whole numbers)",
                          line=line)
                    return None, enc
                if _label_too_large(values, loc, per_sample, P):
                    return None, enc
            values = values.astype(np.int64)
            keys = [int(c) for c in classes]
        else:
            keys = [str(c) for c in classes]
            values = flat if text else np.asarray([_num_str(v) for v in flat.tolist()], dtype=str)
    else:
        if text:
            kind = "string"
            values = flat
            classes = sorted(set(np.unique(flat).tolist()))
            keys = classes
        else:
            kind = "int"
            values = flat
            if values.dtype.kind == "f":
                whole = np.round(values)
                bad = np.flatnonzero(whole != values)
                if len(bad):
                    desc, line = loc.at(int(bad[0]) // per_sample)
                    P.add(f"{desc}: {_py(values[bad[0]])!r} is not a class label: labels are text or whole numbers "
                          f"({len(bad)} value{'s' if len(bad) > 1 else ''} affected)", line=line,
                          hint=f"output {out.name!r} is a classifier (its loss takes class labels); for numeric "
                               "targets use a regression loss such as mean_squared_error")
                    return None, None
                if _label_too_large(values, loc, per_sample, P):
                    return None, None
            values = values.astype(np.int64)
            uniq = np.unique(values)
            if width is not None and uniq.size and uniq.min() >= 0 and uniq.max() < width:
                classes = list(range(int(width)))
            else:
                classes = [int(v) for v in uniq]
            keys = classes
        enc = {"classes": classes, "kind": kind}
    uniq, inv = np.unique(values, return_inverse=True)
    lookup = {k: i for i, k in enumerate(keys)}
    mapped = np.array([lookup.get(u, -1) for u in uniq.tolist()], dtype=np.int64)
    for ui in np.flatnonzero(mapped < 0):
        u = uniq[ui].item()
        hits = np.flatnonzero(inv == ui)
        desc, line = loc.at(int(hits[0]) // per_sample)
        near = did_you_mean(str(u), [str(k) for k in keys])
        more = f" (and {len(hits) - 1} more time{'s' if len(hits) > 2 else ''})" if len(hits) > 1 else ""
        P.add(f"{desc}: class {u!r}{more} was not in the training data"
              + (f"; did you mean {near!r}?" if near and near != str(u) else ""), line=line,
              found=repr(u), expected=f"one of the known classes: {short_list(keys, 20)}",
              hint="the model can only predict the classes it was trained on: remove these rows, "
                   "or retrain with them")
    if (mapped < 0).any():
        return None, enc
    return mapped[inv].reshape(raw.shape), enc


def _num_str(v) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _labels_to_target(idx: np.ndarray, enc: dict, out: OutputInfo, loc: Located, P: Problems):
    """Class ids -> the array the loss takes (ids, one-hot or 0/1), checking the output's width."""
    n_classes = len(enc["classes"])
    width = out.shape[-1] if len(out.shape) else None
    shown = short_list(enc["classes"], 8)
    if out.sparse or out.categorical:
        if width is not None and (n_classes > width or (idx.size and idx.max() >= width)):
            P.add(f"{loc.what} has {n_classes} classes ({shown}) but output {out.name!r} has {width} units",
                  hint=f"give the output layer units: {n_classes} (one per class)")
            return None
        if out.sparse:
            return idx.astype(np.int64)
        if width is None:
            P.add(f"output {out.name!r} has no fixed width, so its labels cannot be one-hot encoded",
                  hint="give the output layer a fixed number of units")
            return None
        return _one_hot(idx, int(width))
    if width == 1 and n_classes <= 2:
        return idx.astype(np.float32).reshape(idx.shape + (1,))
    if width is not None and width == n_classes:
        return _one_hot(idx, int(width))
    P.add(f"{loc.what} holds class labels ({shown}) but output {out.name!r} (shape {shape_str(out.shape)}) is "
          "not a classifier for them",
          hint=f"for {n_classes} classes use an output with {n_classes} units and softmax, with loss "
               "sparse_categorical_crossentropy (or 1 unit + sigmoid + binary_crossentropy for 2 classes); "
               "for regression the target must be numbers")
    return None


def _one_hot(idx: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros(idx.shape + (width,), dtype=np.float32)
    np.put_along_axis(out, idx[..., None].astype(np.intp), 1.0, axis=-1)
    return out


# ---------------------------------------------------------------------------------------------- CSV


def _missing_mask(col: np.ndarray) -> np.ndarray:
    return np.isin(np.char.lower(col), list(MISSING))


def _parse_numeric(table: Table, j: int, P: Problems, role: str) -> np.ndarray:
    """Column ``j`` as float64; missing, text and infinite cells are reported (NaN in the result)."""
    col = table.cells[:, j]
    name = table.column_label(j)
    try:
        vals = col.astype(np.float64)
    except ValueError:
        vals = None
    if vals is None:
        vals = np.full(col.shape[0], np.nan)
        text_rows = []
        for i, cell in enumerate(col.tolist()):
            if is_missing(cell):
                ln = int(table.lines[i])
                P.add(f"missing value in row {ln}, {name}", line=ln, found=repr(cell) if cell else "an empty cell",
                      hint=f"fill in or remove the rows with missing {role} values")
            else:
                try:
                    vals[i] = float(cell)
                except ValueError:
                    text_rows.append(i)
        nonmissing = int((~_missing_mask(col)).sum())
        if text_rows and len(text_rows) * 2 > nonmissing and len(text_rows) > 1:
            i = text_rows[0]
            ln = int(table.lines[i])
            P.add(f"{name} holds text (e.g. {_py(col[i])!r} in row {ln}), but {role}s must be numbers", line=ln,
                  hint="leave the column out with `features: [...]`, make it the `target:`, or encode it as numbers"
                  if role == "feature" else "class labels need a classification loss (sparse_categorical_"
                                            "crossentropy); regression targets must be numbers")
        else:
            for i in text_rows:
                ln = int(table.lines[i])
                P.add(f"row {ln}, {name}: {_py(col[i])!r} is not a number", line=ln, found=repr(_py(col[i])),
                      expected=f"a number (the {role} column's other values are numbers)")
        return vals
    nan = np.flatnonzero(np.isnan(vals))
    for i in nan:
        ln = int(table.lines[i])
        P.add(f"missing value in row {ln}, {name}", line=ln, found=repr(_py(col[i])),
              hint=f"fill in or remove the rows with missing {role} values")
    for i in np.flatnonzero(np.isinf(vals)):
        ln = int(table.lines[i])
        P.add(f"infinite value {_py(col[i])!r} in row {ln}, {name}", line=ln, hint=f"{role}s must be finite numbers")
    return vals


def _csv_target(table: Table, cols: list[int], out: OutputInfo, enc: dict | None, P: Problems):
    n = table.n_rows
    if len(cols) == 1:
        j = cols[0]
        col = table.cells[:, j]
        loc = Located(table.path, table.column_label(j), table.lines)
        miss = _missing_mask(col)
        if miss.any():
            for i in np.flatnonzero(miss):
                ln = int(table.lines[i])
                P.add(f"missing value in row {ln}, {table.column_label(j)}", line=ln,
                      found=repr(_py(col[i])) if col[i] else "an empty cell",
                      hint="every training/evaluation row needs a target; remove the unlabelled rows")
            return None, enc
        try:
            numbers = col.astype(np.float64)
        except ValueError:
            numbers = None
        is_class = out.sparse or out.categorical
        if numbers is not None and (enc is None or enc.get("kind") == "int") and not is_class:
            return _csv_regression(table, cols, out, P), None
        if numbers is not None and (enc is None or enc.get("kind") == "int"):
            if len(out.shape) != 1:
                P.add(f"output {out.name!r} has shape {shape_str(out.shape)}; labels from one CSV column fit "
                      "outputs of one axis (units,)", hint="use an .npz file for sequence targets")
                return None, enc
            if np.isinf(numbers).any():
                i = int(np.flatnonzero(np.isinf(numbers))[0])
                P.add(f"infinite value {_py(col[i])!r} in row {int(table.lines[i])}, {table.column_label(j)}",
                      line=int(table.lines[i]))
                return None, enc
            idx, enc = _encode_labels(numbers, out, enc, loc, P)
        else:
            if numbers is None and not is_class and (enc is None):
                nonnum = [i for i, c in enumerate(col.tolist()) if not is_number(c)]
                if len(nonnum) * 2 < n:  # mostly numbers: typos in a regression target
                    return _csv_regression(table, cols, out, P), None
            if len(out.shape) != 1:
                P.add(f"output {out.name!r} has shape {shape_str(out.shape)}; labels from one CSV column fit "
                      "outputs of one axis (units,)", hint="use an .npz file for sequence targets")
                return None, enc
            idx, enc = _encode_labels(col, out, enc, loc, P)
        if idx is None:
            return None, enc
        return _labels_to_target(idx, enc, out, loc, P), enc
    if out.sparse:
        P.add(f"output {out.name!r} uses sparse_categorical_crossentropy, which takes ONE column of class labels, "
              f"but `target:` lists {len(cols)} columns",
              hint="name the label column, or use categorical_crossentropy for one-hot columns")
        return None, enc
    return _csv_regression(table, cols, out, P), None


def _float32_cells(table: Table, j: int, values: np.ndarray, P: Problems) -> None:
    """Report the first cell of column ``j`` too large for float32 (it would become infinite)."""
    big = np.flatnonzero(np.isfinite(values) & (np.abs(values) > np.finfo(np.float32).max))
    if len(big):
        i = int(big[0])
        ln = int(table.lines[i])
        P.add(f"row {ln}, {table.column_label(j)}: {_py(table.cells[i, j])!r} is too large for float32", line=ln,
              hint="rescale the column")


def _csv_regression(table: Table, cols: list[int], out: OutputInfo, P: Problems):
    n = table.n_rows
    y = np.empty((n, len(cols)), dtype=np.float64)
    for k, j in enumerate(cols):
        y[:, k] = _parse_numeric(table, j, P, "target")
        _float32_cells(table, j, y[:, k], P)
    shape = tuple(out.shape)
    size = _size(shape)
    names = ", ".join(table.column_label(j) for j in cols)
    if size is None:
        if len(shape) == 1:
            return y.astype(np.float32)
        P.add(f"output {out.name!r} has shape {shape_str(shape)} with unknown sizes; CSV targets cannot be "
              "reshaped to it", hint="use an .npz file")
        return None
    if size != len(cols):
        P.add(f"output {out.name!r} has shape {shape_str(shape)} ({size} value{'s' if size > 1 else ''} per "
              f"sample) but the target is {len(cols)} column{'s' if len(cols) > 1 else ''} ({names})",
              hint=f"list {size} target columns (target: [a, b, ...]) or change the output's units"
              if size > 1 else "name one target column")
        return None
    return y.reshape((n,) + shape).astype(np.float32)


def _from_csv(table: Table, source, inputs: list[InputInfo], outputs: list[OutputInfo], require_target: bool,
              encoders: dict, feature_names: list[str] | None, P: Problems) -> Dataset:
    if len(inputs) != 1:
        raise P.fail(f"CSV/TSV files feed models with one input; this model has {len(inputs)} inputs "
                     f"({', '.join(i.name for i in inputs)})",
                     hint="save one array per input in an .npz file: "
                          f"np.savez('data.npz', {', '.join(f'{i.name}=...' for i in inputs)}, y=...)")
    inp = inputs[0]
    ncols = table.n_columns
    want = _size(tuple(inp.shape))

    sw_col = None
    if source.sample_weight is not None:
        sw_col = table.find_column(source.sample_weight, "sample_weight", P, "sample_weight",
                                   required=require_target)

    # target columns, one list per output (None: not present / not wanted)
    target_cols: list[list[int] | None] = [None] * len(outputs)
    by_default = False
    if source.target is None:
        if table.has_header:
            for k, out in enumerate(outputs):
                hits = [j for j, c in enumerate(table.columns) if c == out.name]
                if len(hits) == 1:
                    target_cols[k] = hits
        if require_target and any(c is None for c in target_cols):
            if len(outputs) == 1:
                target_cols[0] = [ncols - 1]
                by_default = True
            else:
                missing = [o.name for o, c in zip(outputs, target_cols, strict=True) if c is None]
                P.add(f"the model has {len(outputs)} outputs ({', '.join(o.name for o in outputs)}); name their "
                      f"target columns, one per output (no column is named {', '.join(map(repr, missing))})",
                      path=f"{P.where}.target" if P.where else "target", hint="target: [column_a, column_b]",
                      expected=f"columns of the file: {short_list(table.column_names(), 20)}")
                raise P.error()
    else:
        specs = source.target if isinstance(source.target, list) else [source.target]
        if len(outputs) == 1:
            found = [table.find_column(s, "target", P, "target", required=require_target) for s in specs]
            if all(f is not None for f in found):
                target_cols[0] = found
        else:
            if len(specs) != len(outputs):
                raise P.fail(f"`target:` lists {len(specs)} column{'s' if len(specs) > 1 else ''} but the model "
                             f"has {len(outputs)} outputs ({', '.join(o.name for o in outputs)})",
                             path=f"{P.where}.target" if P.where else "target",
                             hint="give one target column per output, in the order of `outputs:`")
            for k, s in enumerate(specs):
                j = table.find_column(s, "target", P, "target", required=require_target)
                target_cols[k] = None if j is None else [j]
    P.raise_if_any()

    # feature columns
    if source.features is not None:
        feat = [table.find_column(f, "feature", P, "features") for f in source.features]
        P.raise_if_any()
    elif feature_names and table.has_header and all(f in table.columns for f in feature_names):
        feat = [table.find_column(f, "feature", P, "features") for f in feature_names]
        P.raise_if_any()
    elif feature_names and table.has_header and any(
            f in table.columns for f in feature_names):
        missing = [f for f in feature_names if f not in table.columns]
        near = {m: did_you_mean(m, table.columns) for m in missing}
        raise P.fail(f"the model was trained on the columns {short_list(feature_names, 12)}; this file lacks "
                     + ", ".join(repr(m) + (f" (did you mean {near[m]!r}?)" if near[m] else "") for m in missing),
                     line=table.header_line,
                     found=f"columns: {short_list(table.column_names(), 20)}")
    else:
        excluded = {j for cols in target_cols if cols for j in cols}
        if sw_col is not None:
            excluded.add(sw_col)
        feat = [j for j in range(ncols) if j not in excluded]
        if not require_target:
            everything = [j for j in range(ncols) if j != sw_col]
            if want is not None and len(everything) == want:
                feat = everything  # the file has no target column
            elif source.target is None and not any(target_cols) and want is not None and len(feat) == want + 1:
                feat = feat[:-1]  # the default target (the last column) is present: ignore it
    if require_target:
        overlap = sorted({j for cols in target_cols if cols for j in cols} & set(feat))
        for j in overlap:
            P.add(f"{table.column_label(j)} is both a feature and the target",
                  path=f"{P.where}.features" if P.where else "features", hint="leave the target out of `features:`")
        P.raise_if_any()
    if not feat:
        raise P.fail("no feature columns are left: the file has only the target column"
                     + (" and the sample weights" if sw_col is not None else ""),
                     hint="the model needs input columns besides the target")
    if want is not None and len(feat) != want:
        all_names = table.column_names()  # once: it is a list over every column
        names = short_list([all_names[j] for j in feat], 20)
        tgt = ""
        if require_target and by_default:
            tgt = f" (the target defaults to the last column, {table.column_label(ncols - 1)})"
        raise P.fail(f"model input {inp.name!r} has shape {shape_str(inp.shape)}, {want} value"
                     f"{'s' if want != 1 else ''} per sample, but the file gives {len(feat)} feature column"
                     f"{'s' if len(feat) != 1 else ''}{tgt}",
                     found=names if len(names) < 300 else names[:300] + " ...",
                     expected=f"{want} feature columns",
                     hint="choose the columns with `features: [...]` and `target:`, or change the input's shape")
    if want is None and len([d for d in inp.shape if d is None]) and len(inp.shape) > 1:
        raise P.fail(f"model input {inp.name!r} has shape {shape_str(inp.shape)}; CSV columns can only be "
                     "reshaped to a shape whose sizes are all known (or a single (None,) axis)",
                     hint="use an .npz file for variable-size samples")

    n = table.n_rows
    x = np.empty((n, len(feat)), dtype=np.float64)
    for k, j in enumerate(feat):
        x[:, k] = _parse_numeric(table, j, P, "feature")
    dtype = np.dtype(inp.dtype)
    if dtype.kind in "iu" and not len(P):
        frac = np.flatnonzero((x != np.round(x)).any(axis=1))
        for i in frac[:MAX_SHOWN]:
            k = int(np.flatnonzero(x[i] != np.round(x[i]))[0])
            ln = int(table.lines[i])
            P.add(f"row {ln}, {table.column_label(feat[k])}: {_py(table.cells[i, feat[k]])!r} is not a whole number, "
                  f"but model input {inp.name!r} is {dtype.name}", line=ln,
                  hint="integer inputs are token/category ids (Embedding); declare the input float32 otherwise")

    ys = None
    sw = None
    out_encoders = dict(encoders)
    if require_target:
        ys = []
        for k, out in enumerate(outputs):
            y, enc = _csv_target(table, target_cols[k], out, encoders.get(out.name), P)
            ys.append(y)
            if enc is not None:
                out_encoders[out.name] = enc
        if sw_col is not None:
            sw = _parse_numeric(table, sw_col, P, "sample weight")
            for i in np.flatnonzero(sw < 0)[:MAX_SHOWN]:
                ln = int(table.lines[i])
                P.add(f"row {ln}, {table.column_label(sw_col)}: sample weight {_py(table.cells[i, sw_col])!r} is "
                      "negative", line=ln, hint="sample weights must be >= 0")
            _float32_cells(table, sw_col, sw, P)
            sw = sw.astype(np.float32)
    P.raise_if_any()
    if dtype.kind == "f" and np.isinf(x.astype(dtype)).any():
        i, k = (int(v[0]) for v in np.nonzero(np.isinf(x.astype(dtype))))
        raise P.fail(f"row {int(table.lines[i])}, {table.column_label(feat[k])}: {_py(table.cells[i, feat[k]])!r} is "
                     f"too large for {dtype.name}", line=int(table.lines[i]), hint="rescale the column")
    xs = [x.reshape((n,) + tuple(len(feat) if d is None else d for d in inp.shape)).astype(dtype)]
    return Dataset(xs=xs, ys=ys, sample_weight=sw, encoders=out_encoders,
                   feature_names=[table.columns[j] for j in feat] if table.has_header else None, n=n,
                   input_names=[inp.name], output_names=[o.name for o in outputs], source=display_path(table.path))


# ---------------------------------------------------------------------------------------------- arrays


def _fit_input_array(arr, inp: InputInfo, what: str, P: Problems, file: Path):
    if arr.ndim == 0:
        P.add(f"{what} is a single number, not one row per sample", file=file)
        return None
    if arr.dtype.kind not in "biuf":
        P.add(f"{what} holds {arr.dtype} values, but model input {inp.name!r} needs numbers", file=file,
              found=str(arr.dtype), expected=f"a numeric array ({inp.dtype})",
              hint="text features must be encoded as numbers before saving")
        return None
    fitted = _fit_shape(arr, tuple(inp.shape))
    if fitted is None:
        P.add(f"{what} has samples of shape {shape_str(arr.shape[1:])}, but model input {inp.name!r} expects "
              f"{shape_str(inp.shape)}", file=file,
              found=f"array shape {shape_str(arr.shape)} = (samples, {', '.join(map(str, arr.shape[1:]))})",
              expected=f"(samples, {', '.join('None' if d is None else str(d) for d in inp.shape)})",
              hint="reshape the array when saving it, or change the input's `shape:` in the config")
        return None
    dtype = np.dtype(inp.dtype)
    before = len(P)
    _check_array_values(fitted, what, P, dtype=dtype, role="feature", file=file)
    if len(P) > before:
        return None
    if arr.dtype.kind == "b":
        fitted = fitted.astype(np.uint8)
    return _cast(fitted, dtype)


def _fit_target_array(arr, out: OutputInfo, enc: dict | None, what: str, P: Problems, file: Path):
    """An NPY/NPZ target array -> (target, encoder)."""
    if arr.ndim == 0:
        P.add(f"{what} is a single number, not one row per sample", file=file)
        return None, enc
    if arr.dtype.kind not in "biufUS":
        P.add(f"{what} holds {arr.dtype} values; targets are numbers or text labels", file=file)
        return None, enc
    arr = np.asarray(arr)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    loc = Located(file, what)
    text = arr.dtype.kind in "US"
    lead = tuple(arr.shape[1:])
    oshape = tuple(out.shape)
    label_shape = oshape[:-1]
    n = arr.shape[0]
    width = oshape[-1] if oshape else None
    if _matches(lead, label_shape):
        labels = arr
    elif lead[-1:] == (1,) and _matches(lead[:-1], label_shape):
        labels = arr.reshape((n,) + lead[:-1])
    else:
        labels = None
    if out.sparse or out.categorical or text:
        if labels is None:
            if not text and out.categorical and _matches(lead, oshape):
                before = len(P)
                _check_array_values(arr, what, P, dtype=np.dtype(np.float32), role="target", file=file)
                return (None if len(P) > before else arr.astype(np.float32)), enc
            if not text and out.sparse and _matches(lead, oshape) and width and width > 1:
                P.add(f"{what} has shape {shape_str(arr.shape)}, like one-hot rows, but output {out.name!r} uses "
                      "sparse_categorical_crossentropy, which takes class ids of shape "
                      f"{shape_str((n,) + label_shape)}", file=file,
                      hint="use loss categorical_crossentropy for one-hot targets, or save y.argmax(-1)")
                return None, enc
            P.add(f"{what} has samples of shape {shape_str(lead)}, but output {out.name!r} (shape "
                  f"{shape_str(oshape)}) takes class labels of shape {shape_str(label_shape)}"
                  + (f" or one-hot rows of shape {shape_str(oshape)}" if out.categorical else ""), file=file,
                  found=f"array shape {shape_str(arr.shape)}", expected=f"{shape_str((n,) + label_shape)}")
            return None, enc
        if not text:
            before = len(P)
            _check_array_values(labels, what, P, dtype=np.dtype(np.float64), role="target", file=file)
            if len(P) > before:
                return None, enc
        idx, enc = _encode_labels(labels, out, enc, loc, P)
        if idx is None:
            return None, enc
        return _labels_to_target(idx, enc, out, loc, P), enc
    fitted = _fit_shape(arr, oshape)
    if fitted is None:
        P.add(f"{what} has samples of shape {shape_str(lead)}, but output {out.name!r} has shape "
              f"{shape_str(oshape)}", file=file, found=f"array shape {shape_str(arr.shape)}",
              expected=f"(samples, {', '.join('None' if d is None else str(d) for d in oshape)})",
              hint="the targets need one value per output unit")
        return None, enc
    before = len(P)
    _check_array_values(fitted, what, P, dtype=np.dtype(np.float32), role="target", file=file)
    return (None if len(P) > before else fitted.astype(np.float32)), enc


def _check_counts(arrays: list[tuple[str, np.ndarray]], P: Problems) -> int:
    """The common number of samples of the arrays (named in messages), or a DataError."""
    for what, arr in arrays:
        if arr.ndim == 0:
            P.add(f"{what} is a single number, not one row per sample", found=f"shape {arr.shape}",
                  expected="shape (samples, ...)")
    P.raise_if_any()
    counts = [(what, int(arr.shape[0])) for what, arr in arrays]
    if len({c for _, c in counts}) > 1:
        raise P.fail("the features and targets hold different numbers of samples: "
                     + ", ".join(f"{w} has {c}" for w, c in counts),
                     hint="every array needs one row per sample, in the same order")
    if counts[0][1] == 0:
        raise P.fail(f"{counts[0][0]} holds no samples")
    return counts[0][1]


def _sample_weight_array(arr, what: str, P: Problems, file: Path):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        P.add(f"{what} holds {arr.dtype} values; sample weights are numbers", file=file)
        return None
    if arr.ndim > 1 and int(np.prod(arr.shape[1:])) == 1:
        arr = arr.reshape(len(arr))
    if arr.ndim != 1:
        P.add(f"{what} has shape {shape_str(arr.shape)}; sample weights are one number per sample", file=file)
        return None
    before = len(P)
    _check_array_values(arr, what, P, dtype=np.dtype(np.float32), role="sample weight", file=file)
    if len(P) == before and (arr < 0).any():
        P.add(f"{what} has a negative weight at sample index {int(np.flatnonzero(arr < 0)[0])}", file=file,
              hint="sample weights must be >= 0")
    return None if len(P) > before else arr.astype(np.float32)


def _from_npy(table: Table, source, base_dir: Path, inputs, outputs, require_target, encoders, where,
              P: Problems) -> Dataset:
    name = display_path(table.path)
    if len(inputs) != 1:
        raise P.fail(f"an .npy file holds one array, but this model has {len(inputs)} inputs "
                     f"({', '.join(i.name for i in inputs)})",
                     hint="save one array per input in an .npz file: "
                          f"np.savez('data.npz', {', '.join(f'{i.name}=...' for i in inputs)}, y=...)")
    for key in ("features", "target", "sample_weight"):
        if getattr(source, key) is not None:
            raise P.fail(f"`{key}:` names CSV columns or .npz arrays; an .npy file is a single array",
                         path=f"{where}.{key}" if where else key,
                         hint="give the targets as a second .npy file with `target_path:`"
                         if key == "target" else "use an .npz file to hold several arrays")
    inp = inputs[0]
    xarr = table.arrays["x"]
    ys = None
    out_encoders = dict(encoders)
    if not require_target:
        _check_counts([(name, xarr)], P)
        x = _fit_input_array(xarr, inp, f"the array in {name}", P, table.path)
        P.raise_if_any()
        return Dataset(xs=[x], ys=None, sample_weight=None, encoders=out_encoders, feature_names=None,
                       n=int(xarr.shape[0]), input_names=[inp.name], output_names=[o.name for o in outputs],
                       source=name)
    if len(outputs) != 1:
        raise P.fail(f"`target_path:` holds one array, but this model has {len(outputs)} outputs",
                     hint="use an .npz file with one target array per output")
    if not source.target_path:
        raise P.fail(f"{name} holds only the features; the targets must come from a second file",
                     path=f"{where}.target_path" if where else "target_path",
                     hint="add `target_path: labels.npy` (np.save('labels.npy', y)) to the data source, or "
                          "use one .npz file: np.savez('data.npz', x=x, y=y)")
    tpath = resolve_path(source.target_path, base_dir, where=where, key="target_path")
    tp = Problems(tpath, where)
    yarr = load_npy(tpath, None, tp)
    tname = display_path(tpath)
    n = _check_counts([(name, xarr), (tname, yarr)], P)
    x = _fit_input_array(xarr, inp, f"the array in {name}", P, table.path)
    y, enc = _fit_target_array(yarr, outputs[0], encoders.get(outputs[0].name), f"the array in {tname}", tp, tpath)
    P.items.extend(tp.items)
    if enc is not None:
        out_encoders[outputs[0].name] = enc
    ys = [y]
    P.raise_if_any()
    return Dataset(xs=[x], ys=ys, sample_weight=None, encoders=out_encoders, feature_names=None, n=n,
                   input_names=[inp.name], output_names=[o.name for o in outputs], source=name)


def _npz_names(table: Table, spec, infos, default_one: str, role: str, config_key: str, P: Problems,
               required: bool) -> list[str | None]:
    available = table.arrays.keys()
    where = f"{P.where}.{config_key}" if P.where else config_key
    if spec is None:
        if len(infos) == 1:
            names = [default_one if default_one in available else infos[0].name if infos[0].name in available
                     else default_one]
        else:
            names = [i.name for i in infos]
    else:
        names = list(spec) if isinstance(spec, list) else [spec]
        if len(names) != len(infos):
            raise P.fail(f"`{config_key}:` names {len(names)} array{'s' if len(names) > 1 else ''} but the model "
                         f"has {len(infos)} {role}s ({', '.join(i.name for i in infos)})", path=where,
                         hint=f"one array name per {role}, in order")
        for s in names:
            if not isinstance(s, str):
                raise P.fail(f"`{config_key}:` in an .npz source names arrays; {s!r} is not a name", path=where,
                             expected=f"array names: {short_list(available, 20)}")
    result: list[str | None] = []
    for nm, info in zip(names, infos, strict=True):
        if nm in available:
            result.append(nm)
            continue
        result.append(None)
        if required:
            near = did_you_mean(nm, available)
            how = "" if spec is not None else (
                f" (the default for {'the' if len(infos) == 1 else 'each'} {role})")
            P.add(f"{display_path(table.path)} has no array {nm!r}{how} for {role} {info.name!r}"
                  + (f"; did you mean {near!r}?" if near else ""), path=where,
                  found=f"arrays in the file: {short_list(available, 20) or 'none'}",
                  hint=f"name the arrays with `{config_key}:` in the data source")
    return result


def _from_npz(table: Table, source, inputs, outputs, require_target, encoders, P: Problems) -> Dataset:
    fname = display_path(table.path)
    xnames = _npz_names(table, source.features, inputs, "x", "input", "features", P, True)
    ynames = _npz_names(table, source.target, outputs, "y", "output", "target", P, require_target) \
        if require_target else []
    swname = None
    if require_target and source.sample_weight is not None:
        swname = str(source.sample_weight)
        if swname not in table.arrays:
            near = did_you_mean(swname, table.arrays.keys())
            P.add(f"{fname} has no array {swname!r} for the sample weights"
                  + (f"; did you mean {near!r}?" if near else ""),
                  path=f"{P.where}.sample_weight" if P.where else "sample_weight",
                  found=f"arrays in the file: {short_list(table.arrays.keys(), 20)}")
    P.raise_if_any()
    used = list(xnames) + list(ynames) + ([swname] if swname is not None else [])
    n = _check_counts([(f"array {nm!r}", table.arrays[nm]) for nm in used], P)
    xs = [_fit_input_array(table.arrays[nm], inp, f"array {nm!r}", P, table.path)
          for nm, inp in zip(xnames, inputs, strict=True)]
    ys = None
    out_encoders = dict(encoders)
    if require_target:
        ys = []
        for nm, out in zip(ynames, outputs, strict=True):
            y, enc = _fit_target_array(table.arrays[nm], out, encoders.get(out.name), f"array {nm!r}", P,
                                       table.path)
            ys.append(y)
            if enc is not None:
                out_encoders[out.name] = enc
    sw = None
    if swname is not None:
        sw = _sample_weight_array(table.arrays[swname], f"array {swname!r}", P, table.path)
    P.raise_if_any()
    return Dataset(xs=xs, ys=ys, sample_weight=sw, encoders=out_encoders, feature_names=None, n=n,
                   input_names=[i.name for i in inputs], output_names=[o.name for o in outputs], source=fname)


# ---------------------------------------------------------------------------------------------- entry


def _quiet_numpy(fn):
    """Run a reader with numpy's floating-point warnings off: values that overflow or are invalid are checked
    and reported by cell (row and column) instead of as a RuntimeWarning printed to the user."""
    import functools
    import warnings

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)
    return run


@_quiet_numpy
def load_source(source, base_dir: Path | str, *, inputs: list, outputs: list, require_target: bool = True,
                encoders: dict | None = None, feature_names: list[str] | None = None,
                where: str = "", preprocessing: dict | None = None, holdout_fraction: float = 0.0) -> Dataset:
    """Read the file a data source names and fit it to the model's inputs and outputs.

    ``source``: a DataSource (or a path string). ``base_dir``: the config file's folder (relative paths
    start there). ``require_target=False`` (predict): targets are not needed and ignored when present.
    ``encoders``: the label mappings saved with the training run. ``feature_names``: the CSV columns
    the model was trained on (a predict file with a header then may hold extra columns, in any order).
    ``where``: the config path of the source, e.g. "data.train", used in messages.
    ``preprocessing``: the fitted text/numeric preprocessing saved with the run (None: fit it here, on the
    rows that a ``holdout_fraction`` validation split at the end leaves for training). Image folders and
    Parquet/Feather/JSON Lines files are read by data/images.py, data/arrow.py and data/jsonl.py.
    Raises DataError naming the file, row and column for anything wrong in the data."""
    from ..config.training import DataSource

    if isinstance(source, (str, Path)):
        source = DataSource(path=str(source))
    inputs = [_as_input(i) for i in inputs]
    outputs = [o if isinstance(o, OutputInfo) else OutputInfo(name=o.name, shape=tuple(o.shape),
                                                              sparse=bool(getattr(o, "sparse", False)),
                                                              categorical=bool(getattr(o, "categorical", False)))
               for o in outputs]
    encoders = {k: dict(v) for k, v in (encoders or {}).items()}
    wanted = set()
    text_column = source.text.column if source.text is not None else None
    for spec in (source.target, source.features, source.sample_weight, feature_names, text_column):
        for v in (spec if isinstance(spec, list) else [spec]):
            if isinstance(v, str):
                wanted.add(v)
    base_dir = Path(base_dir)
    from .images import is_image_source

    if is_image_source(source, base_dir):
        from .images import load_images

        return load_images(source, base_dir, inputs=inputs, outputs=outputs, require_target=require_target,
                           encoders=encoders, where=where)
    table = read_table(source, base_dir, where=where, wanted_names=wanted)
    P = Problems(table.path, where)
    try:
        if table.is_text:
            from .preprocess import prepare_table

            n = table.n_rows
            table, source, state = prepare_table(table, source, preprocessing, outputs=outputs, where=where,
                                                 fit_rows=n - int(round(n * holdout_fraction)))
            ds = _from_csv(table, source, inputs, outputs, require_target, encoders, feature_names, P)
            ds.preprocessing = state
            return ds
        if table.format == "npy":
            return _from_npy(table, source, base_dir, inputs, outputs, require_target, encoders, where, P)
        return _from_npz(table, source, inputs, outputs, require_target, encoders, P)
    except DataError:
        raise
    except MemoryError:
        raise P.fail(f"{display_path(table.path)} is too large to load into memory",
                     hint="save the features as .npy: files over 100 MB are memory-mapped") from None
    finally:
        table.close()
