"""A request body -> one array per model input, through the same code `layerforge predict` uses.

- JSON: rows as objects keyed by the training column names (``[{"sepal_length": 5.1, ...}, ...]``), or as
  arrays (flat feature rows, or nested per-sample arrays), bare or under ``"rows"``; a multi-input model
  takes ``{"inputs": {name: rows, ...}}``. JSON-only rules (no unknown or missing keys, numbers only, no
  NaN/Infinity tokens) are checked here; the arrays then go through the data readers' own fitting (shape
  fitting such as 64 values -> (8, 8, 1), NaN/infinity and dtype checks, the cast to the input's dtype).
- CSV/TSV: the body goes through ``Model.load_data`` exactly as a file given to `layerforge predict`
  (header detection, the training columns picked by name, extra columns ignored).
- NPY: read with ``allow_pickle=False`` and fitted like a .npy file. Parquet (when pyarrow is installed):
  the columns are read and treated like CSV columns.

Every problem raises :class:`BadInput` with an HTTP status and a message that says what is wrong.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from operator import itemgetter
from pathlib import Path

import numpy as np

from ..data import InputInfo
from ..data.readers import _fit_input_array  # the array fitting `predict` applies to .npy/.npz inputs
from ..data.table import Problems, short_list
from ..errors import UserError, did_you_mean

MAX_ERRORS_SHOWN = 5


class BadInput(Exception):
    """A request the server refuses: HTTP ``status`` (4xx) and a message for the client."""

    def __init__(self, message: str, status: int = 400, problems: list | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.problems = problems or []


def _from_user_error(exc: UserError, body_path: str | None = None) -> BadInput:
    """A DataError from the readers as a 400, the temporary file named 'the request body'."""
    text = exc.render_plain()
    problems = [{k: v for k, v in vars(p).items() if v not in (None, "")} for p in exc.problems]
    if body_path:
        text = text.replace(body_path, "request body")
        for p in problems:
            for k, v in p.items():
                if isinstance(v, str):
                    p[k] = v.replace(body_path, "request body")
    return BadInput(text, 400, problems)


def _reject_constant(token: str):
    raise ValueError(f"{token} is not a number JSON allows; send finite numbers (a missing value cannot be "
                     "predicted: fill it in or leave the row out)")


def parse_json(body: bytes):
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInput(f"the body is not UTF-8 text (byte 0x{body[e.start]:02x} at offset {e.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise BadInput(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except ValueError as e:  # NaN / Infinity tokens
        raise BadInput(f"invalid JSON value: {e}") from None
    except RecursionError:
        raise BadInput("invalid JSON: nested too deeply") from None


def _describe(v) -> str:
    if v is None:
        return "null (a missing value)"
    if isinstance(v, bool):
        return f"the boolean {json.dumps(v)}"
    if isinstance(v, str):
        return f"the string {json.dumps(v)[:60]}"
    if isinstance(v, (list, dict)):
        return "a list" if isinstance(v, list) else "an object"
    return repr(v)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _first_non_number(value, path: str):
    """(path, value) of the first element of a nested list that is not a number, or None."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_non_number(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if _is_number(value) else (path, value)


def _numeric_array(rows, what: str) -> np.ndarray:
    """Nested JSON lists of numbers -> a float64/int64 array; a clear 400 for anything else."""
    try:
        arr = np.asarray(rows)
    except (ValueError, OverflowError):
        arr = None
    if arr is not None and arr.dtype.kind in "biuf":
        return arr
    bad = _first_non_number(rows, what)
    if bad is not None:
        path, value = bad
        raise BadInput(f"{path} is {_describe(value)}, but the model's inputs are numbers"
                       + ("; fill in the missing value or leave the row out" if value is None else ""))
    if arr is not None and arr.dtype == object and arr.ndim >= 1:
        raise BadInput(f"{what}: a number is too large to represent")
    lengths = sorted({len(r) if isinstance(r, list) else 0 for r in rows})
    raise BadInput(f"{what}: the rows have different shapes (lengths {short_list(lengths, 6)}); every row needs "
                   "the same number of values")


def _object_rows(rows: list, feature_names: list[str] | None) -> np.ndarray:
    """Rows as JSON objects keyed by the training column names -> (n, features) float64."""
    if not feature_names:
        raise BadInput("rows are JSON objects, but this model was trained on arrays without column names; send "
                       "each row as an array of numbers (GET /metadata shows the input shape)")
    wanted = set(feature_names)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadInput(f"rows[{i}] is {_describe(row)}; send every row as an object, or every row as an array")
        if row.keys() != wanted:
            unknown = [k for k in row if k not in wanted]
            missing = [k for k in feature_names if k not in row]
            parts = []
            if unknown:
                near = {k: did_you_mean(k, feature_names) for k in unknown}
                parts.append("unknown column" + ("s " if len(unknown) > 1 else " ") + ", ".join(
                    repr(k) + (f" (did you mean {near[k]!r}?)" if near[k] else "") for k in unknown[:8]))
            if missing:
                parts.append("missing column" + ("s " if len(missing) > 1 else " ") + short_list(missing, 8))
            raise BadInput(f"rows[{i}]: {'; '.join(parts)}; the model's columns are {short_list(feature_names, 20)}")
    get = itemgetter(*feature_names)
    table = [get(row) for row in rows] if len(feature_names) > 1 else [[row[feature_names[0]]] for row in rows]
    try:
        arr = np.asarray(table)
    except (ValueError, OverflowError):
        arr = None
    if arr is not None and arr.dtype.kind in "iuf":
        return arr
    for i, row in enumerate(rows):  # find the offending cell for the message (the error path only)
        for name in feature_names:
            v = row[name]
            if not _is_number(v):
                raise BadInput(f"rows[{i}].{name} is {_describe(v)}, but {name!r} is a numeric column"
                               + ("; fill in the missing value or leave the row out" if v is None else ""))
    raise BadInput("a number in the rows is too large to represent")


def _fit(arrays: list[np.ndarray], inputs: list[InputInfo], whats: list[str]) -> list[np.ndarray]:
    """The readers' fitting of arrays to the model's inputs (shape, NaN/infinity, dtype)."""
    P = Problems(None)
    out = [_fit_input_array(a, inp, what, P, None) for a, inp, what in zip(arrays, inputs, whats)]
    if len(P):
        raise _from_user_error(P.error())
    return out


def _rows_of(value, what: str) -> list:
    if not isinstance(value, list):
        raise BadInput(f"{what} must be a list of rows, not {_describe(value)}")
    if not value:
        raise BadInput(f"{what} is an empty list: send at least one row")
    return value


def json_inputs(doc, inputs: list[InputInfo], feature_names: list[str] | None) -> list[np.ndarray]:
    """A parsed JSON body -> one fitted array per input."""
    if isinstance(doc, dict):
        keys = set(doc)
        if keys == {"rows"}:
            doc = doc["rows"]
        elif keys == {"inputs"}:
            named = doc["inputs"]
            if not isinstance(named, dict):
                raise BadInput(f'"inputs" must map each input name to its rows, not {_describe(named)}')
            names = [i.name for i in inputs]
            unknown = [k for k in named if k not in names]
            missing = [n for n in names if n not in named]
            if unknown or missing:
                raise BadInput(f'"inputs": the model\'s inputs are {short_list(names, 12)}'
                               + (f"; unknown: {short_list(unknown, 8)}" if unknown else "")
                               + (f"; missing: {short_list(missing, 8)}" if missing else ""))
            arrays = [_numeric_array(_rows_of(named[n], f"inputs.{n}"), f"inputs.{n}") for n in names]
            counts = {len(a) for a in arrays}
            if len(counts) > 1:
                raise BadInput("the inputs have different numbers of rows: "
                               + ", ".join(f"{n}: {len(a)}" for n, a in zip(names, arrays)))
            return _fit(arrays, inputs, [f"inputs.{n}" for n in names])
        else:
            raise BadInput('expected a list of rows, {"rows": [...]}'
                           + (' or {"inputs": {name: rows}}' if len(inputs) > 1 else "")
                           + f"; got an object with the keys {short_list(sorted(keys), 8)}")
    rows = _rows_of(doc, "the body")
    if len(inputs) > 1:
        raise BadInput(f"this model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); send "
                       '{"inputs": {"' + inputs[0].name + '": rows, ...}}')
    if isinstance(rows[0], dict):
        arr = _object_rows(rows, feature_names)
    else:
        arr = _numeric_array(rows, "rows")
    if arr.ndim == 1:
        raise BadInput("rows must each be a list of values (or an object keyed by column name), not single "
                       "numbers: send [[...], [...]]")
    return _fit([arr], inputs, ["rows"])


def npy_inputs(body: bytes, inputs: list[InputInfo]) -> list[np.ndarray]:
    if len(inputs) > 1:
        raise BadInput(f"an .npy body is one array, but this model has {len(inputs)} inputs; send JSON "
                       '{"inputs": {...}}')
    if not body.startswith(b"\x93NUMPY"):
        raise BadInput(f"the body is not a NumPy .npy array (it starts with {body[:6]!r}); write it with np.save")
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise BadInput("the .npy array holds Python objects, which would need pickle; the server never "
                           "unpickles: send a numeric array") from None
        raise BadInput(f"the .npy body is not a valid array: {e}") from None
    except (OSError, EOFError) as e:
        raise BadInput(f"the .npy body is truncated or unreadable: {e}") from None
    if arr.ndim == 0:
        raise BadInput("the .npy array is a single number, not one row per sample")
    return _fit([arr], inputs, ["the .npy array"])


def csv_inputs(body: bytes, model, suffix: str = ".csv") -> list[np.ndarray]:
    """A CSV/TSV body, read exactly as `layerforge predict --data FILE.csv` reads a file."""
    fd, name = tempfile.mkstemp(prefix="layerforge-serve-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        try:
            return model.load_data(Path(name), require_target=False).xs
        except UserError as exc:
            raise _from_user_error(exc, name) from None
    finally:
        os.unlink(name)


def parquet_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def parquet_inputs(body: bytes, inputs: list[InputInfo], feature_names: list[str] | None) -> list[np.ndarray]:
    """A Parquet body: the training columns by name (extra columns ignored, as for CSV), else every column."""
    if not parquet_available():
        raise BadInput("Parquet bodies need pyarrow, which this server does not have (pip install pyarrow); "
                       "send CSV, NPY or JSON", status=415)
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(inputs) > 1:
        raise BadInput(f"a Parquet body is one table, but this model has {len(inputs)} inputs; send JSON")
    try:
        table = pq.read_table(pa.BufferReader(body))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise BadInput(f"the body is not a readable Parquet file: {e}") from None
    columns = table.column_names
    if feature_names:
        missing = [f for f in feature_names if f not in columns]
        if missing:
            raise BadInput(f"the Parquet table lacks the column(s) {short_list(missing, 8)}; the model was trained "
                           f"on {short_list(feature_names, 20)}")
        columns = feature_names
    if table.num_rows == 0:
        raise BadInput("the Parquet table has no rows")
    cols = []
    for name in columns:
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
            raise BadInput(f"Parquet column {name!r} holds {col.type}, but the model's inputs are numbers")
        if col.null_count:
            raise BadInput(f"Parquet column {name!r} has {col.null_count} missing value(s)")
        cols.append(col.to_numpy().astype(np.float64))
    return _fit([np.column_stack(cols)], inputs, ["the Parquet table"])


JSON_TYPES = ("application/json", "text/json")
CSV_TYPES = {"text/csv": ".csv", "application/csv": ".csv", "text/tab-separated-values": ".tsv",
             "text/plain": ".csv"}
NPY_TYPES = ("application/x-npy", "application/npy", "application/octet-stream")
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet")
SNIFFED = ("", "application/x-www-form-urlencoded")  # curl -d sends the latter by default


def supported_types() -> list[str]:
    types = ["application/json", "text/csv", "text/tab-separated-values", "application/x-npy"]
    return types + (["application/vnd.apache.parquet"] if parquet_available() else [])


def _sniff(body: bytes) -> str:
    if body.startswith(b"\x93NUMPY"):
        return "application/x-npy"
    if body.startswith(b"PAR1"):
        return "application/vnd.apache.parquet"
    head = body.lstrip()[:1]
    return "application/json" if head in (b"[", b"{") else "text/csv"


def decode_body(body: bytes, content_type: str, model, inputs: list[InputInfo],
                feature_names: list[str] | None) -> list[np.ndarray]:
    """The body of POST /predict -> one fitted array per model input (raises BadInput)."""
    if not body.strip():
        raise BadInput("the request body is empty; send rows as JSON (e.g. [[5.1, 3.5, 1.4, 0.2]]), CSV or NPY")
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in SNIFFED:
        ctype = _sniff(body)
    try:
        if ctype in JSON_TYPES or ctype.endswith("+json"):
            return json_inputs(parse_json(body), inputs, feature_names)
        if ctype in CSV_TYPES:
            return csv_inputs(body, model, CSV_TYPES[ctype])
        if ctype in NPY_TYPES:
            return npy_inputs(body, inputs)
        if ctype in PARQUET_TYPES:
            return parquet_inputs(body, inputs, feature_names)
    except UserError as exc:
        raise _from_user_error(exc) from None
    raise BadInput(f"unsupported content type {content_type!r}; send one of {', '.join(supported_types())}",
                   status=415)


def rows_in(arrays: list[np.ndarray]) -> int:
    return int(len(arrays[0])) if arrays else 0

