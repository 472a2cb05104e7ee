"""JSON Lines: one JSON object per line, one sample per object (``{"sepal": 5.1, ..., "species": "setosa"}``).

Keys become columns (in the order first seen); a key missing from a line is a missing value; a list of
numbers becomes one column per position (``key[0]``, ``key[1]``, ...). Blank lines are skipped. Every
problem names the line of the file. ``iter_jsonl`` reads a file larger than memory a piece at a time.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .columnar import expand_lists, object_cells, table_from_columns
from .table import Problems, Table, display_path


def _open(path: Path, P: Problems):
    try:
        if path.name.lower().endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8-sig")
        return open(path, encoding="utf-8-sig")
    except OSError as e:
        raise P.fail(f"cannot read {display_path(path)}: {e.strerror or e}") from None


def _records(path: Path, P: Problems) -> Iterator[tuple[int, dict]]:
    fh = _open(path, P)
    with fh:
        ln = 0
        try:
            for ln, text in enumerate(fh, start=1):  # noqa: B007 (ln is used after the loop for messages)
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise P.fail(f"line {ln}: not valid JSON: {e.msg} (character {e.colno})", line=ln,
                                 found=text.strip()[:120],
                                 hint="each line must be one complete JSON object, e.g. {\"x\": 1.5, \"label\": \"a\"}"
                                 ) from None
                if not isinstance(obj, dict):
                    raise P.fail(f"line {ln}: a JSON {type(obj).__name__}, not an object", line=ln,
                                 found=text.strip()[:120], hint="each line is one sample: {\"column\": value, ...}")
                yield ln, obj
        except UnicodeDecodeError as e:
            raise P.fail(f"{display_path(path)} is not UTF-8 text near line {ln + 1}: {e.reason}", line=ln + 1,
                         hint="save the file as UTF-8") from None
        except (OSError, EOFError) as e:
            raise P.fail(f"cannot read {display_path(path)} near line {ln + 1}: {e}") from None


def _to_table(path: Path, records: list[tuple[int, dict]], keys: list[str], P: Problems) -> Table:
    lines = np.asarray([ln for ln, _ in records], dtype=np.int64)
    names, cols = [], []
    for key in keys:
        values = [obj.get(key) for _, obj in records]
        if any(isinstance(v, list) for v in values):
            for i, v in enumerate(values):
                if v is not None and not isinstance(v, list):
                    raise P.fail(f"line {int(lines[i])}, key {key!r}: {v!r} where other lines hold a list",
                                 line=int(lines[i]), hint="give every sample a list of the same length")
            sub_names, sub_cols = expand_lists(key, values, lines, P, "line")
            names += sub_names
            cols += sub_cols
            continue
        for i, v in enumerate(values):
            if isinstance(v, dict):
                raise P.fail(f"line {int(lines[i])}, key {key!r}: a nested object; layerforge reads numbers, text "
                             "and lists of numbers", line=int(lines[i]), hint="flatten the object into keys")
        names.append(key)
        cols.append(object_cells(values))
    return table_from_columns(path, "jsonl", names, cols, lines, P)


def read_jsonl(path: Path, *, where: str = "") -> Table:
    P = Problems(path, where)
    records = list(_records(path, P))
    if not records:
        raise P.fail(f"{display_path(path)} is empty", expected="one JSON object per line")
    keys: dict[str, None] = {}
    for _, obj in records:
        for k in obj:
            keys.setdefault(k, None)
    return _to_table(path, records, list(keys), P)


def iter_jsonl(path: Path, rows: int = 65536, *, where: str = "") -> Iterator[Table]:
    """The file as Tables of at most ``rows`` rows; the columns are those of the first piece."""
    P = Problems(path, where)
    keys: list[str] | None = None
    chunk: list[tuple[int, dict]] = []
    seen = 0
    for rec in _records(path, P):
        chunk.append(rec)
        if len(chunk) >= rows:
            if keys is None:
                keys = list(dict.fromkeys(k for _, obj in chunk for k in obj))
            yield _to_table(path, chunk, keys, P)
            seen += len(chunk)
            chunk = []
    if chunk:
        if keys is None:
            keys = list(dict.fromkeys(k for _, obj in chunk for k in obj))
        yield _to_table(path, chunk, keys, P)
        seen += len(chunk)
    if not seen:
        raise P.fail(f"{display_path(path)} is empty", expected="one JSON object per line")
