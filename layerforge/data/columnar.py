"""Column-oriented files (Parquet, Feather, JSON Lines) as a :class:`~layerforge.data.table.Table`.

Such a file becomes the same (rows, columns) table of cell strings that the CSV reader makes, so
everything the CSV path does (columns by name, label encoding, missing-value and range checks, messages
naming the row and the column) works unchanged. ``lines`` holds the row number (1-based) for Parquet and
Feather, the line of the file for JSON Lines. A column of lists (a sequence of numbers per row) becomes
one column per position, named ``name[0]``, ``name[1]``, ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .table import Problems, Table, display_path


def number_cells(values: np.ndarray) -> np.ndarray:
    """Numbers -> cell strings that parse back to the same value (NaN -> 'nan', a missing value)."""
    values = np.asarray(values)
    if values.dtype.kind == "b":
        return values.astype(np.int8).astype(str)
    return values.astype(str)


def object_cells(values: list) -> np.ndarray:
    """Python values (None = missing) -> cell strings."""
    out = []
    for v in values:
        if v is None:
            out.append("")
        elif isinstance(v, bool):
            out.append("1" if v else "0")
        elif isinstance(v, float):
            out.append(repr(v))
        else:
            out.append(str(v))
    return np.asarray(out, dtype=str) if out else np.zeros(0, dtype=str)


def expand_lists(name: str, values: list, lines: np.ndarray, P: Problems, unit: str) -> tuple[list[str], list]:
    """A column holding one list per row -> (names ``name[i]``, one cell array per position)."""
    lengths = {len(v) for v in values if v is not None}
    if len(lengths) > 1:
        first = next(len(v) for v in values if v is not None)
        for i, v in enumerate(values):
            if v is not None and len(v) != first:
                raise P.fail(f"{unit} {int(lines[i])}, column {name!r}: a list of {len(v)} values, but the first "
                             f"row's list has {first}", line=int(lines[i]) if unit == "line" else None,
                             hint="every row's list needs the same length (pad the sequences first)")
    width = lengths.pop() if lengths else 0
    cols = []
    for k in range(width):
        cells = []
        for v in values:
            item = None if v is None else v[k]
            if isinstance(item, (list, dict)):
                raise P.fail(f"column {name!r} holds nested lists; layerforge reads one list of numbers per row",
                             hint="flatten the values, or save the arrays as .npz")
            cells.append(item)
        cols.append(object_cells(cells))
    return [f"{name}[{k}]" for k in range(width)], cols


def table_from_columns(path: Path, fmt: str, names: list[str], columns: list[np.ndarray], lines: np.ndarray,
                       P: Problems) -> Table:
    if not names:
        raise P.fail(f"{display_path(path)} has no columns")
    n = len(lines)
    if n == 0:
        raise P.fail(f"{display_path(path)} has no rows", expected="one row per sample")
    cells = np.empty((n, len(names)), dtype=object)
    for j, col in enumerate(columns):
        cells[:, j] = col
    return Table(path=path, format=fmt, columns=list(names), cells=cells.astype(str),
                 lines=np.asarray(lines, dtype=np.int64), header_line=None)
