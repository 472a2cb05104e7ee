"""Reading a table file larger than memory a piece at a time, for `predict` and `evaluate`.

A file over the data memory budget (``LAYERFORGE_DATA_BUDGET``, default 256 MB; "64MB", "2GB" or bytes)
is not read whole: CSV/TSV (also gzipped), Parquet, Feather and JSON Lines are read in pieces of about a
tenth of the budget each, every piece fitted to the model with the run's label mapping, feature columns
and preprocessing exactly as a whole file would be (same checks, same messages with the row and column).

- ``iter_datasets(...)`` yields one :class:`Dataset` per piece.
- ``SequentialData`` wraps that sequence so that code which slices ``data.xs[k][a:b]`` in increasing,
  non-overlapping order (the evaluation loop) sees one long dataset, with only the current piece in memory.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .dataset import Dataset
from .table import (
    HEADER_SAMPLE_ROWS,
    Problems,
    Table,
    _looks_like_header,
    detect_format,
    display_path,
    resolve_path,
)

DEFAULT_BUDGET = 256 * 1024 * 1024
STREAMABLE = ("csv", "tsv", "parquet", "feather", "jsonl")


def data_budget() -> int:
    """The memory budget for one data file, from ``LAYERFORGE_DATA_BUDGET`` (bytes, or 64MB / 2GB)."""
    raw = os.environ.get("LAYERFORGE_DATA_BUDGET", "").strip().upper().replace(" ", "")
    if not raw:
        return DEFAULT_BUDGET
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
        if raw.endswith(unit):
            raw, mult = raw[: -len(unit)], scale
            break
    else:
        mult = 1
    try:
        return max(1024, int(float(raw) * mult))
    except ValueError:
        return DEFAULT_BUDGET


def should_stream(source, base_dir: Path) -> bool:
    """Whether a data source is a table file bigger than the budget (images, NPY/NPZ: never)."""
    from .images import is_image_source

    if is_image_source(source, base_dir):
        return False
    try:
        path = resolve_path(source.path, base_dir)
        fmt = detect_format(path, source.format)
    except Exception:  # noqa: BLE001 - the whole-file reader reports the problem properly
        return False
    return fmt in STREAMABLE and path.stat().st_size > data_budget()


def _rows_per_piece(path: Path, bytes_per_row: float) -> int:
    return int(max(256, min(1 << 20, data_budget() / 10 / max(bytes_per_row * 12, 1.0))))


def wanted_names(source, feature_names=None) -> set[str]:
    """Column names the config refers to (a first row holding one of them is a header)."""
    names = set()
    specs = [source.target, source.features, source.sample_weight, feature_names,
             source.text.column if source.text is not None else None]
    for spec in specs:
        for v in (spec if isinstance(spec, list) else [spec]):
            if isinstance(v, str):
                names.add(v)
    return names


def _has_header(source, rows: list[list[str]]) -> bool:
    return source.header if source.header is not None else _looks_like_header(rows, wanted_names(source))


def _iter_csv(path: Path, fmt: str, source, rows: int | None, where: str) -> Iterator[Table]:
    from .table import _pick_delimiter

    P = Problems(path, where)
    opener = (lambda: gzip.open(path, "rt", encoding="utf-8-sig", newline="")) if path.name.lower().endswith(
        ".gz") else (lambda: open(path, encoding="utf-8-sig", newline=""))
    with opener() as fh:
        head = fh.read(65536)
        fh.seek(0)
        delim = _pick_delimiter(head, fmt, source.delimiter)
        reader = csv.reader(fh, delimiter=delim)
        columns, header_line, ncols = None, None, None
        buf: list[list[str]] = []
        lines: list[int] = []
        prev = 0
        decided = False
        per = rows
        try:
            for row in reader:
                start, prev = prev + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                buf.append([c.strip() for c in row])
                lines.append(start)
                if not decided and len(buf) > HEADER_SAMPLE_ROWS:
                    decided = True
                    has_header = _has_header(source, buf)
                    if has_header:
                        columns, header_line = buf.pop(0), lines.pop(0)
                    ncols = len(columns) if columns else len(buf[0])
                    if per is None:
                        per = _rows_per_piece(path, len(head) / max(head.count("\n"), 1))
                if decided and len(buf) >= per:
                    yield _csv_table(path, fmt, columns, header_line, ncols, buf, lines, delim, P)
                    buf, lines = [], []
        except csv.Error as e:
            raise P.fail(f"line {reader.line_num}: cannot parse the CSV: {e}", line=reader.line_num) from None
        if not decided:
            if not buf:
                raise P.fail(f"{display_path(path)} is empty")
            has_header = _has_header(source, buf)
            if has_header:
                columns, header_line = buf.pop(0), lines.pop(0)
            ncols = len(columns) if columns else (len(buf[0]) if buf else 0)
        if buf:
            yield _csv_table(path, fmt, columns, header_line, ncols, buf, lines, delim, P)


def _csv_table(path, fmt, columns, header_line, ncols, rows, lines, delim, P: Problems) -> Table:
    for r, ln in zip(rows, lines, strict=True):
        if len(r) != ncols:
            P.add(f"row {ln} has {len(r)} fields but {'the header' if columns else 'the first row'} has {ncols}",
                  line=ln, found=delim.join(r)[:120])
            if len(P) >= 10:
                break
    P.raise_if_any()
    cells = np.array(rows, dtype=str).reshape(len(rows), ncols)
    return Table(path=path, format=fmt, columns=columns, cells=cells, lines=np.asarray(lines, dtype=np.int64),
                 delimiter=delim, header_line=header_line)


def iter_tables(source, base_dir: Path, *, rows: int | None = None, where: str = "") -> Iterator[Table]:
    """The file of a data source as consecutive Tables (the same columns in each)."""
    path = resolve_path(source.path, base_dir, where=where)
    fmt = detect_format(path, source.format, where=where)
    if fmt in ("csv", "tsv"):
        yield from _iter_csv(path, fmt, source, rows, where)
        return
    per = rows or _rows_per_piece(path, 64.0)
    if fmt in ("parquet", "feather"):
        from .arrow import iter_arrow

        yield from iter_arrow(path, fmt, per, where=where)
    elif fmt == "jsonl":
        from .jsonl import iter_jsonl

        yield from iter_jsonl(path, per, where=where)
    else:
        raise ValueError(f"{fmt} files are not read in pieces")


def iter_datasets(source, base_dir: Path, *, inputs, outputs, require_target: bool, encoders: dict | None,
                  feature_names: list | None, preprocessing: dict | None, rows: int | None = None,
                  where: str = "") -> Iterator[Dataset]:
    """One Dataset per piece of the file, fitted like a whole file with the run's mappings."""
    from .preprocess import prepare_table
    from .readers import _as_input, _from_csv

    inputs = [_as_input(i) for i in inputs]
    encoders = {k: dict(v) for k, v in (encoders or {}).items()}
    for table in iter_tables(source, base_dir, rows=rows, where=where):
        P = Problems(table.path, where)
        table, src, state = prepare_table(table, source, preprocessing, outputs=outputs, where=where)
        ds = _from_csv(table, src, inputs, outputs, require_target, encoders, feature_names, P)
        ds.preprocessing = state
        yield ds


class _SequentialArray:
    """One array of a SequentialData: supports ``len``, ``shape`` and increasing slices ``[a:b]``."""

    def __init__(self, owner: SequentialData, kind: str, k: int):
        self.owner, self.kind, self.k = owner, kind, k

    def __len__(self) -> int:
        return self.owner.n

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a piece-by-piece dataset only takes increasing slices")
        return self.owner._slice(self.kind, self.k, key.start or 0, min(key.stop, self.owner.n))


class SequentialData:
    """Pieces of a file seen as one dataset of ``n`` samples, read front to back (only the slices asked for,
    in increasing order, are kept in memory)."""

    def __init__(self, pieces: Iterator[Dataset], n: int, n_inputs: int, n_outputs: int, with_targets: bool,
                 with_weights: bool):
        self._pieces = pieces
        self.n = n
        self._lo = 0  # sample index of the first buffered row
        self._buf: dict | None = None
        self.xs = [_SequentialArray(self, "x", k) for k in range(n_inputs)]
        self.ys = [_SequentialArray(self, "y", k) for k in range(n_outputs)] if with_targets else None
        self.sample_weight = _SequentialArray(self, "w", 0) if with_weights else None
        self.encoders: dict = {}

    def _arrays(self, ds: Dataset) -> dict:
        return {"x": list(ds.xs), "y": list(ds.ys or []), "w": [ds.sample_weight] if ds.sample_weight is not None
                else []}

    def _slice(self, kind: str, k: int, a: int, b: int):
        if a < self._lo:
            raise IndexError("a piece-by-piece dataset is read front to back only")
        if self._buf is not None and a > self._lo:  # rows before the slice are done with (views: no copy)
            drop = a - self._lo
            self._buf = {key: [arr[drop:] for arr in arrays] for key, arrays in self._buf.items()}
            self._lo = a
        while self._buf is None or self._lo + len(self._buf["x"][0]) < b:
            piece = next(self._pieces, None)
            if piece is None:
                have = self._lo + (len(self._buf["x"][0]) if self._buf else 0)
                raise IndexError(f"the file ended after {have} samples, {self.n} were counted")
            new = self._arrays(piece)
            self._buf = new if self._buf is None else {
                key: [np.concatenate([old, fresh]) for old, fresh in zip(self._buf[key], new[key])] for key in new}
        return self._buf[kind][k][a - self._lo:b - self._lo]


def count_rows(source, base_dir: Path, where: str = "") -> int:
    """Samples in a table file, without keeping it in memory (one fast pass; Parquet: the metadata)."""
    path = resolve_path(source.path, base_dir, where=where)
    fmt = detect_format(path, source.format, where=where)
    if fmt == "parquet":
        from .arrow import _pyarrow

        pa = _pyarrow(path)
        return int(pa.parquet.ParquetFile(path).metadata.num_rows)
    if fmt in ("csv", "tsv"):
        return _count_csv_rows(path, fmt, source)
    return sum(t.n_rows for t in iter_tables(source, base_dir, where=where))


def _count_csv_rows(path: Path, fmt: str, source) -> int:
    """Data rows of a CSV/TSV: the csv module alone (no cell arrays), the header decided as the reader does."""
    from .table import _pick_delimiter

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        head = fh.read(65536)
        fh.seek(0)
        reader = csv.reader(fh, delimiter=_pick_delimiter(head, fmt, source.delimiter))
        first: list[list[str]] = []
        n = 0
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            n += 1
            if len(first) <= HEADER_SAMPLE_ROWS:
                first.append([c.strip() for c in row])
    return n - (1 if first and _has_header(source, first) else 0)
