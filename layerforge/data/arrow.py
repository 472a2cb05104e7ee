"""Parquet and Feather (Arrow IPC) files through pyarrow, an optional dependency (`pip install layerforge[data]`).

``read_arrow(path, fmt)`` gives a whole file as a Table; ``iter_arrow(path, fmt, rows)`` gives it in
pieces of about ``rows`` rows (one record batch at a time, so memory stays bounded on files larger than
memory: Parquet row groups are read one by one, Feather files are memory-mapped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DataError, Problem
from .columnar import expand_lists, number_cells, object_cells, table_from_columns
from .table import Problems, Table, display_path


def _pyarrow(path: Path):
    try:
        import pyarrow as pa
        import pyarrow.feather  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError(problems=[Problem(
            message=f"reading {display_path(path)} needs pyarrow, which is not installed",
            file=display_path(path),
            hint='pip install "layerforge[data]" (or pip install pyarrow), or save the data as CSV')]) from None
    return pa


def _columns(pa, batch, path: Path, first_row: int, P: Problems):
    n = batch.num_rows
    lines = np.arange(first_row + 1, first_row + n + 1, dtype=np.int64)
    names, cols = [], []
    for name, col in zip(batch.schema.names, batch.columns):
        t = col.type
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
            t = col.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            sub_names, sub_cols = expand_lists(str(name), col.to_pylist(), lines, P, "row")
            names += sub_names
            cols += sub_cols
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            values = col.to_numpy(zero_copy_only=False)
            if col.null_count:
                values = np.where(np.asarray(col.is_null().to_numpy(zero_copy_only=False)), np.nan,
                                  np.asarray(values, dtype=np.float64))
            names.append(str(name))
            cols.append(number_cells(values))
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_temporal(t) or \
                pa.types.is_decimal(t):
            names.append(str(name))
            cols.append(object_cells(col.to_pylist()))
        else:
            raise P.fail(f"column {str(name)!r} of {display_path(path)} has type {t}, which layerforge cannot use "
                         "as features or targets", hint="use number, text or list-of-number columns; leave this "
                                                        "one out of the file")
    return names, cols, lines


def _open_error(path: Path, fmt: str, e: Exception, P: Problems) -> DataError:
    kind = "Parquet" if fmt == "parquet" else "Feather (Arrow IPC)"
    return P.fail(f"{display_path(path)} is not a readable {kind} file: {e}",
                  hint="check the file and its extension; set `format:` in the data source if the extension "
                       "is misleading")


def _batches(pa, path: Path, fmt: str, rows: int, P: Problems):
    try:
        if fmt == "parquet":
            pf = pa.parquet.ParquetFile(path, memory_map=True)
            return pf.iter_batches(batch_size=rows)
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    except (pa.ArrowException, OSError) as e:
        raise _open_error(path, fmt, e, P) from None

    def gen():
        for k in range(reader.num_record_batches):
            batch = reader.get_batch(k)
            for start in range(0, batch.num_rows, rows):
                yield batch.slice(start, rows)
    return gen()


def iter_arrow(path: Path, fmt: str, rows: int = 65536, *, where: str = "") -> Iterator[Table]:
    """The file as Tables of at most ``rows`` rows each (the same columns in every one)."""
    pa = _pyarrow(path)
    P = Problems(path, where)
    first = 0
    try:
        for batch in _batches(pa, path, fmt, rows, P):
            if batch.num_rows == 0:
                continue
            names, cols, lines = _columns(pa, batch, path, first, P)
            first += batch.num_rows
            yield table_from_columns(path, fmt, names, cols, lines, P)
    except pa.ArrowException as e:
        raise _open_error(path, fmt, e, P) from None
    if first == 0:
        raise P.fail(f"{display_path(path)} has no rows", expected="one row per sample")


def read_arrow(path: Path, fmt: str, *, where: str = "") -> Table:
    """The whole file as one Table."""
    pa = _pyarrow(path)
    P = Problems(path, where)
    try:
        table = pa.parquet.read_table(path) if fmt == "parquet" else pa.feather.read_table(str(path))
    except (pa.ArrowException, OSError) as e:
        raise _open_error(path, fmt, e, P) from None
    if table.num_rows == 0:
        raise P.fail(f"{display_path(path)} has no rows", expected="one row per sample")
    table = table.combine_chunks()
    batch = table.to_batches()[0] if table.num_rows else None
    names, cols, lines = _columns(pa, batch, path, 0, P)
    return table_from_columns(path, fmt, names, cols, lines, P)
