"""Reading a data file into a :class:`Table`: what the file holds, before it is fitted to a model.

CSV/TSV (optionally gzipped) are parsed with the standard ``csv`` module into a 2-D array of
stripped cell strings plus the 1-based line number of every row; NPY/NPZ files are opened with
``allow_pickle=False`` (no pickle anywhere). Everything a user can get wrong becomes a
:class:`~layerforge.errors.DataError` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, Problem, did_you_mean

MMAP_THRESHOLD = 100 * 1024 * 1024  # NPY files over this size are memory-mapped unless `mmap: false`
MAX_PROBLEMS = 10  # problems listed per error; the rest are counted
HEADER_SAMPLE_ROWS = 200  # rows looked at to decide whether the first row is a header
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "#n/a", "-nan"})
FORMAT_BY_SUFFIX = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv", ".npy": "npy", ".npz": "npz",
                    ".parquet": "parquet", ".pq": "parquet", ".feather": "feather", ".arrow": "feather",
                    ".ipc": "feather", ".jsonl": "jsonl", ".ndjson": "jsonl"}
COLUMNAR_FORMATS = ("parquet", "feather", "jsonl")  # read into cell tables like CSV (data/arrow.py, data/jsonl.py)
KNOWN_FORMATS = ("CSV (.csv, .txt), TSV (.tsv, .tab) — either may be gzipped (.csv.gz) — "
                 "NumPy .npy (with target_path: for the targets), NumPy .npz, Parquet (.parquet), "
                 "Feather (.feather, .arrow), JSON Lines (.jsonl, .ndjson), or a folder of images")

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def display_path(path: Path) -> str:
    """The path as shown in messages: relative to the working directory when it is below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return str(path)


class Problems:
    """Collects the problems of one file and raises them together, at most MAX_PROBLEMS listed."""

    def __init__(self, file: Path | str | None, where: str = ""):
        self.file = display_path(Path(file)) if file is not None else None
        self.where = where
        self.items: list[Problem] = []

    def add(self, message: str, *, line: int | None = None, file: Path | str | None = None, path: str | None = None,
            found: str | None = None, expected: str | None = None, hint: str | None = None) -> None:
        self.items.append(Problem(message=message, path=self.where if path is None else path,
                                  file=display_path(Path(file)) if file is not None else self.file,
                                  line=line, found=found, expected=expected, hint=hint))

    def fail(self, message: str, **kw) -> DataError:
        """Add one problem and return the error to raise (for problems that stop reading)."""
        self.add(message, **kw)
        return self.error()

    def error(self) -> DataError:
        items = self.items
        if len(items) > MAX_PROBLEMS:
            rest = len(items) - MAX_PROBLEMS
            items = items[:MAX_PROBLEMS] + [Problem(
                message=f"... and {rest} more problem{'s' if rest > 1 else ''} not shown", path=self.where,
                file=self.file)]
        return DataError(problems=items)

    def raise_if_any(self) -> None:
        if self.items:
            raise self.error()

    def __len__(self) -> int:
        return len(self.items)


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def shape_str(shape) -> str:
    shape = tuple(shape)
    if len(shape) == 1:
        return f"({'None' if shape[0] is None else shape[0]},)"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def short_list(values, limit: int = 8) -> str:
    values = [str(v) for v in values]
    if len(values) > limit:
        return ", ".join(values[:limit]) + f", ... ({len(values)} in all)"
    return ", ".join(values)


# ---------------------------------------------------------------------------------------------- files


def _refuse_special(path: Path, config_path: str) -> None:
    """A symlink loop, a device (/dev/zero), a FIFO or a socket is not a data file: reading one would hang or
    never end."""
    import errno
    import stat

    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(problems=[Problem(
                message=f"{display_path(path)} is a symbolic link loop (the link points, through others, back to "
                        "itself)", path=config_path, hint="point the link at a real file")]) from None
        return  # missing: reported by the caller with a "did you mean"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device" if (
            stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket or other special file"
        raise DataError(problems=[Problem(message=f"{display_path(path)} is {kind}, not a data file",
                                          path=config_path, hint="save the data to a regular file")])


def resolve_path(path_str: str, base_dir: Path, *, where: str = "", key: str = "path") -> Path:
    """The file a data source names; relative paths start from the config file's folder."""
    base_dir = Path(base_dir)
    path = Path(os.path.expanduser(str(path_str)))
    if not path.is_absolute():
        path = base_dir / path
    config_path = f"{where}.{key}" if where else key
    _refuse_special(path, config_path)
    if path.is_dir():
        raise DataError(problems=[Problem(
            message=f"{display_path(path)} is a folder, not a data file", path=config_path,
            hint=f"name a file: {KNOWN_FORMATS}")])
    if not path.exists():
        hint = (f"relative paths start from the config file's folder ({display_path(base_dir)}), "
                "not from the current directory")
        if path.parent.is_dir():
            near = did_you_mean(path.name, [p.name for p in path.parent.iterdir()])
            if near:
                hint = f"did you mean {near!r}? " + hint
        elif not Path(path_str).is_absolute():
            hint += f"; the folder {display_path(path.parent)} does not exist either"
        raise DataError(problems=[Problem(message=f"data file not found: {path.absolute()}", path=config_path,
                                          found=str(path_str), hint=hint)])
    return path


def detect_format(path: Path, fmt: str = "auto", *, where: str = "") -> str:
    if fmt and fmt != "auto":
        return fmt
    name = path.name.lower()
    suffix = Path(name[:-3]).suffix if name.endswith(".gz") else Path(name).suffix
    found = FORMAT_BY_SUFFIX.get(suffix)
    if found is None or (name.endswith(".gz") and found not in ("csv", "tsv", "jsonl")):
        hint = ("set `format:` (csv, tsv, npy, npz, parquet, feather or jsonl) in the data source if the extension "
                "is misleading")
        if suffix in (".xls", ".xlsx", ".ods"):
            hint = "save the spreadsheet as CSV (File > Save as > CSV UTF-8)"
        elif suffix == ".json":
            hint = "write one JSON object per line and name the file .jsonl (JSON Lines)"
        elif suffix in (".h5", ".hdf5", ".pkl", ".pickle"):
            hint = "convert it to CSV, Parquet or NumPy arrays (np.savez('data.npz', x=..., y=...))"
        raise DataError(problems=[Problem(
            message=f"cannot tell the format of {display_path(path)} from its extension {suffix or '(none)'!r}",
            path=f"{where}.path" if where else "path", expected=KNOWN_FORMATS, hint=hint)])
    return found


# ---------------------------------------------------------------------------------------------- table


@dataclass
class Table:
    """What a data file holds, before it is fitted to a model.

    CSV/TSV: ``cells`` is a (rows, columns) array of stripped strings, ``lines`` the 1-based line of
    each row in the file (the header, when there is one, is line ``lines[0] - 1`` or earlier) and
    ``columns`` the header names (None without a header). NPY: ``arrays == {"x": array}``. NPZ:
    ``arrays`` maps the array names in the file to arrays, read when first accessed.
    """

    path: Path
    format: str  # "csv" | "tsv" | "npy" | "npz" | "parquet" | "feather" | "jsonl"
    columns: list[str] | None = None
    cells: np.ndarray | None = None
    lines: np.ndarray | None = None
    delimiter: str | None = None
    arrays: dict | _LazyNpz | None = None
    mmapped: bool = False
    header_line: int | None = None

    @property
    def is_text(self) -> bool:
        """A table of cells (CSV/TSV, and Parquet/Feather/JSON Lines read the same way)."""
        return self.format in ("csv", "tsv") + COLUMNAR_FORMATS

    @property
    def n_rows(self) -> int:
        if self.cells is not None:
            return int(self.cells.shape[0])
        first = next(iter(self.arrays.values())) if self.arrays else None
        return 0 if first is None else int(first.shape[0])

    @property
    def n_columns(self) -> int:
        return 0 if self.cells is None else int(self.cells.shape[1])

    @property
    def has_header(self) -> bool:
        return self.columns is not None

    def column_label(self, j: int) -> str:
        """'column 'species'' with a header, 'column index 4' (0-based, as in the config) without."""
        if self.columns is not None and self.columns[j]:
            return f"column {self.columns[j]!r}"
        return f"column index {j}"

    def column_names(self) -> list[str]:
        if self.columns is not None:
            return [c or f"[{j}]" for j, c in enumerate(self.columns)]
        return [f"[{j}]" for j in range(self.n_columns)]

    def find_column(self, key: str | int, role: str, problems: Problems, config_key: str,
                    *, required: bool = True) -> int | None:
        """Column index of a `target:`/`features:`/`sample_weight:` entry (a name or a 0-based index)."""
        where = f"{problems.where}.{config_key}" if problems.where else config_key
        n = self.n_columns
        if isinstance(key, bool):
            key = int(key)
        if isinstance(key, str) and key.strip().lstrip("-").isdigit() and (
                self.columns is None or key not in self.columns):
            key = int(key)
        if isinstance(key, int):
            j = key + n if key < 0 else key
            if 0 <= j < n:
                return j
            if required:
                problems.add(f"{role} column index {key} is out of range: the file has {n} columns "
                             f"(indices 0 to {n - 1}, or -1 for the last)", path=where,
                             found=str(key), expected=f"one of: {short_list(self.column_names(), 12)}")
            return None
        if self.columns is None:
            if required:
                problems.add(f"{role} column {key!r} is named, but the file has no header row "
                             f"(its first row, line {int(self.lines[0])}, looks like data)", path=where,
                             hint="choose columns by 0-based index (e.g. target: -1 for the last column), "
                                  "or set `header: true` if the first row holds the names")
            return None
        hits = [j for j, c in enumerate(self.columns) if c == key]
        if not hits:
            hits = [j for j, c in enumerate(self.columns) if c.lower() == str(key).lower()]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            problems.add(f"{role} column {key!r} is ambiguous: the header has it {len(hits)} times "
                         f"(indices {', '.join(map(str, hits))})", path=where,
                         hint="rename the duplicates in the header, or choose the column by 0-based index")
            return None
        if required:
            near = did_you_mean(str(key), [c for c in self.columns if c])
            problems.add(f"{role} column {key!r} is not in the file" + (f"; did you mean {near!r}?" if near else ""),
                         path=where, found=str(key),
                         expected=f"one of the columns: {short_list(self.column_names(), 20)}",
                         line=self.header_line)
        return None

    def close(self) -> None:
        if isinstance(self.arrays, _LazyNpz):
            self.arrays.close()


def _npy_header(fh):
    """(shape, dtype) from the header of an .npy stream positioned at its start, read without allocating the
    array; ValueError says what is wrong. The header is parsed by numpy's own literal reader (no eval)."""
    from numpy.lib import format as npformat

    if fh.read(6) != _NPY_MAGIC:
        raise ValueError("it is not a NumPy array (no .npy header)")
    fh.seek(0)
    try:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = npformat.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _fortran, dtype = npformat.read_array_header_2_0(fh)
        else:
            shape, _fortran, dtype = npformat._read_array_header(fh, version)
    except Exception as e:  # numpy's header parser fails in many ways (tokenize errors too) on damaged bytes
        raise ValueError(f"its .npy header is damaged ({type(e).__name__}: {e})") from None
    if not isinstance(shape, tuple) or any(not isinstance(d, int) or d < 0 for d in shape):
        raise ValueError(f"its .npy header has an invalid shape {shape!r}")
    return shape, dtype


def _check_npy_size(shape, dtype, data_bytes: int, what: str) -> None:
    """The header's shape must fit the bytes that follow it (a 2 KB file cannot hold (10**10, 8) floats)."""
    if dtype.hasobject:
        return  # refused later, with the pickle message
    need = dtype.itemsize
    for d in shape:
        need *= d
    if need > data_bytes:
        raise ValueError(f"{what} header says shape {tuple(shape)} of {dtype.name} ({need:,} bytes), but only "
                         f"{max(data_bytes, 0):,} bytes of data follow: the file is truncated or damaged")


def _too_big_for_memory(nbytes: int) -> str | None:
    from ..memory_budget import free_memory, human_bytes

    free = free_memory()
    if free is not None and nbytes > free:
        return f"it needs {human_bytes(nbytes)} in memory and this machine has {human_bytes(free)} free"
    return None


class _LazyNpz:
    """Mapping over the arrays of an .npz file; each array is read on first access, pickle refused."""

    def __init__(self, path: Path, problems: Problems):
        self.path = path
        self.problems = problems
        self._fh = None
        try:
            self._fh = open(path, "rb")  # ours to close, also when numpy gives up on it
            self._npz = np.load(self._fh, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as e:  # NotImplementedError:
            # zipfile's word for a zip version or compression method it cannot read
            if self._fh is not None:
                self._fh.close()
            raise problems.fail(f"{display_path(path)} is not a readable .npz file: {e}",
                                hint="write it with np.savez('file.npz', x=features, y=targets)") from None
        if not isinstance(self._npz, np.lib.npyio.NpzFile):
            self._fh.close()
            raise problems.fail(f"{display_path(path)} holds a single array (.npy), not an .npz archive",
                                hint="set `format: npy` (targets then come from `target_path:`)")
        self._cache: dict[str, np.ndarray] = {}

    def keys(self) -> list[str]:
        return list(self._npz.files)

    def __contains__(self, name) -> bool:
        return name in self._npz.files

    def __iter__(self) -> Iterator[str]:
        return iter(self._npz.files)

    def values(self):
        return [self[k] for k in self.keys()]

    def _check_member(self, name: str) -> None:
        """Refuse a member that is not an array, or whose header promises more than it holds, before reading it."""
        member = name if name in self._npz.zip.namelist() else name + ".npy"
        info = self._npz.zip.getinfo(member)
        with self._npz.zip.open(member) as fh:
            shape, dtype = _npy_header(fh)
            header_bytes = fh.tell()
        _check_npy_size(shape, dtype, info.file_size - header_bytes, f"array {name!r}:")
        why = _too_big_for_memory(info.file_size)
        if why:
            raise ValueError(f"array {name!r} is too large to load: {why}")

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            try:
                self._check_member(name)
                value = self._npz[name]
                if not isinstance(value, np.ndarray):
                    raise ValueError("it is not a NumPy array")
                self._cache[name] = value
            except (zipfile.BadZipFile, EOFError, OSError, KeyError, zipfile.LargeZipFile, NotImplementedError) as e:
                raise self.problems.fail(f"cannot read array {name!r} from {display_path(self.path)}: the archive "
                                         f"is damaged ({e})", hint="write the file again with np.savez") from None
            except ValueError as e:
                if "pickle" in str(e):
                    raise self.problems.fail(
                        f"array {name!r} in {display_path(self.path)} holds Python objects, which need pickle; "
                        "layerforge never loads pickled data",
                        hint="save strings as a fixed-width text array: np.array(labels, dtype=str)") from None
                raise self.problems.fail(f"cannot read array {name!r} from {display_path(self.path)}: {e}") from None
        return self._cache[name]

    def close(self) -> None:
        self._npz.close()
        self._fh.close()


def load_npy(path: Path, mmap: bool | None, problems: Problems) -> np.ndarray:
    """One .npy array; memory-mapped read-only when asked or when the file is over MMAP_THRESHOLD."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        size = path.stat().st_size
    except OSError as e:
        raise problems.fail(f"cannot read {display_path(path)}: {e.strerror or e}", file=path) from None
    if size == 0:
        raise problems.fail(f"{display_path(path)} is empty", file=path,
                            hint="write it with np.save('file.npy', array)")
    if magic.startswith(_ZIP_MAGIC[:2]):
        raise problems.fail(f"{display_path(path)} is an .npz archive, not a single .npy array", file=path,
                            hint="name it .npz or set `format: npz`")
    if magic != _NPY_MAGIC:
        looks_text = all(32 <= b < 127 or b in (9, 10, 13) for b in magic)
        raise problems.fail(f"{display_path(path)} is not a NumPy .npy file (it starts with {magic!r})", file=path,
                            hint="name it .csv or set `format: csv`" if looks_text else
                            "write it with np.save('file.npy', array)")
    try:
        with open(path, "rb") as fh:
            shape, dtype = _npy_header(fh)
            _check_npy_size(shape, dtype, size - fh.tell(), "the")
    except ValueError as e:
        raise problems.fail(f"{display_path(path)} is not a valid .npy file: {e}", file=path,
                            hint="write it again with np.save('file.npy', array)") from None
    except OSError as e:
        raise problems.fail(f"cannot read {display_path(path)}: {e.strerror or e}", file=path) from None
    # a file larger than the free memory is memory-mapped rather than read whole
    use_mmap = bool(mmap) if mmap is not None else (size > MMAP_THRESHOLD or _too_big_for_memory(size) is not None)
    try:
        arr = np.load(path, mmap_mode="r" if use_mmap else None, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise problems.fail(f"{display_path(path)} holds Python objects, which need pickle; layerforge never "
                                "loads pickled data", file=path,
                                hint="save numbers as a numeric array and text labels with dtype=str") from None
        raise problems.fail(f"{display_path(path)} is not a valid .npy file: {e}", file=path) from None
    except (OSError, EOFError) as e:
        raise problems.fail(f"{display_path(path)} is truncated or unreadable: {e}", file=path) from None
    if arr.ndim == 0:
        raise problems.fail(f"{display_path(path)} holds a single number, not one row per sample", file=path,
                            found=f"shape {arr.shape}", expected="shape (samples, ...)")
    return arr


TEXT_MEMORY_FACTOR = 10  # parsed CSV cells take about this many times the text's size in memory


def _read_bytes(path: Path, problems: Problems) -> bytes:
    """The file's bytes (gunzipped), refusing text that would not fit in memory once parsed: a gzip bomb stops
    at that limit instead of filling the memory."""
    from ..memory_budget import free_memory, human_bytes

    free = free_memory()
    limit = free // TEXT_MEMORY_FACTOR if free is not None else None

    def too_big(n: int):
        return problems.fail(f"{display_path(path)} holds over {human_bytes(n)} of text; parsed, that needs about "
                             f"{TEXT_MEMORY_FACTOR}x as much memory and this machine has {human_bytes(free)} free",
                             hint="convert the data to .npy (files over 100 MB are memory-mapped)")
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                if limit is None:
                    return fh.read()
                raw = fh.read(limit + 1)
                if len(raw) > limit:
                    raise too_big(limit)
                return raw
        size = path.stat().st_size
        if limit is not None and size > limit:
            raise too_big(size)
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zipfile.BadZipFile) as e:
        raise problems.fail(f"{display_path(path)} is not a valid gzip file: {e}") from None
    except OSError as e:
        raise problems.fail(f"cannot read {display_path(path)}: {e.strerror or e}") from None


def _decode_text(raw: bytes, path: Path, problems: Problems) -> str:
    head = raw[:8192]
    if head.startswith(_NPY_MAGIC):
        raise problems.fail(f"{display_path(path)} is a NumPy .npy file, not CSV text",
                            hint="name it .npy or set `format: npy`")
    if head.startswith(_ZIP_MAGIC):
        raise problems.fail(f"{display_path(path)} is a zip archive (an .npz, or a spreadsheet?), not CSV text",
                            hint="name it .npz / set `format: npz`, or save the spreadsheet as CSV")
    if b"\x00" in head:
        raise problems.fail(f"{display_path(path)} is a binary file, not CSV text",
                            hint="if it is UTF-16 text, save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise problems.fail(f"{display_path(path)} is not UTF-8 text: byte 0x{raw[e.start]:02x} on line {line}",
                            line=line, hint="save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8')") from None


def _pick_delimiter(text: str, fmt: str, given: str | None) -> str:
    if given:
        return "\t" if given in ("\\t", "tab") else given
    default = "\t" if fmt == "tsv" else ","
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if default in first:
        return default
    for cand in (";", "\t", ",", "|"):
        if cand in first:
            return cand
    return default


def _looks_like_header(rows: list[list[str]], wanted_names: set[str]) -> bool:
    first = rows[0]
    if wanted_names and any(c in wanted_names for c in first):
        return True
    rest = rows[1:1 + HEADER_SAMPLE_ROWS]
    if not rest:  # a single row: a header when none of its cells is a number
        return any(c for c in first) and not any(is_number(c) for c in first if not is_missing(c))
    for j, cell in enumerate(first):
        if is_missing(cell) or is_number(cell):
            continue
        vals = [r[j] for r in rest if j < len(r) and not is_missing(r[j])]
        if vals and sum(is_number(v) for v in vals) * 2 >= len(vals):
            return True  # text above a numeric column
    return False


def read_csv(path: Path, fmt: str, *, header: bool | None = None, delimiter: str | None = None,
             wanted_names: set[str] | None = None, where: str = "") -> Table:
    problems = Problems(path, where)
    text = _decode_text(_read_bytes(path, problems), path, problems)
    delim = _pick_delimiter(text, fmt, delimiter)
    if len(delim) != 1:
        raise problems.fail(f"the delimiter must be one character, not {delim!r}",
                            path=f"{where}.delimiter" if where else "delimiter")
    rows: list[list[str]] = []
    lines: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    needs_strip = any(ch in text for ch in (" ", "\t", "\xa0") if ch != delim)
    prev = 0
    try:
        for row in reader:
            start, prev = prev + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            rows.append([c.strip() for c in row] if needs_strip else row)
            lines.append(start)
    except csv.Error as e:
        raise problems.fail(f"line {reader.line_num}: cannot parse the CSV: {e}", line=reader.line_num,
                            hint="check the quotes on this line: a field with the delimiter or a newline "
                                 "must be enclosed in double quotes") from None
    if not rows:
        raise problems.fail(f"{display_path(path)} is empty", expected="a header row (optional) and one row per sample")
    while len(rows[0]) > 1 and all(len(r) == len(rows[0]) and r[-1] == "" for r in rows):
        for r in rows:  # a trailing delimiter on every line: an empty, unnamed last column
            r.pop()
    has_header = header if header is not None else _looks_like_header(rows, wanted_names or set())
    ncols = len(rows[0])
    columns = rows[0] if has_header else None
    header_line = lines[0] if has_header else None
    data_rows, data_lines = (rows[1:], lines[1:]) if has_header else (rows, lines)
    if not data_rows:
        raise problems.fail(f"{display_path(path)} has a header row but no data rows", line=header_line,
                            found=f"header: {delim.join(columns)}", expected="one row per sample below the header")
    what = "the header" if has_header else f"the first row (line {lines[0]})"
    for r, ln in zip(data_rows, data_lines, strict=True):
        if len(r) != ncols:
            problems.add(f"row {ln} has {len(r)} fields but {what} has {ncols}", line=ln,
                         found=delim.join(r)[:120],
                         hint="a field that contains the delimiter must be enclosed in double quotes"
                         if len(r) > ncols else "fill in the missing fields (leave a cell empty only "
                                                "between two delimiters; empty cells are reported as missing)")
    problems.raise_if_any()
    cells = np.array(data_rows, dtype=str)
    if cells.ndim != 2:  # all rows empty strings of length 0 cannot happen; keep the shape explicit
        cells = cells.reshape(len(data_rows), ncols)
    return Table(path=path, format=fmt, columns=columns, cells=cells, lines=np.asarray(data_lines, dtype=np.int64),
                 delimiter=delim, header_line=header_line)


def read_table(source, base_dir: Path, *, where: str = "", wanted_names: set[str] | None = None) -> Table:
    """Open the file a :class:`~layerforge.config.training.DataSource` names (features only for NPY)."""
    path = resolve_path(source.path, base_dir, where=where)
    fmt = detect_format(path, source.format, where=where)
    problems = Problems(path, where)
    if fmt in ("csv", "tsv"):
        return read_csv(path, fmt, header=source.header, delimiter=source.delimiter, wanted_names=wanted_names,
                        where=where)
    if fmt in ("parquet", "feather"):
        from .arrow import read_arrow

        return read_arrow(path, fmt, where=where)
    if fmt == "jsonl":
        from .jsonl import read_jsonl

        return read_jsonl(path, where=where)
    if fmt == "npy":
        arr = load_npy(path, source.mmap, problems)
        return Table(path=path, format="npy", arrays={"x": arr}, mmapped=isinstance(arr, np.memmap))
    return Table(path=path, format="npz", arrays=_LazyNpz(path, problems))


@dataclass
class Located:
    """Where the values of one column/array came from, to name them in messages."""

    file: Path
    what: str  # "column 'species'" or "array 'y'"
    lines: np.ndarray | None = None  # CSV: line of each sample

    def at(self, i: int) -> tuple[str, int | None]:
        if self.lines is not None:
            ln = int(self.lines[i])
            return f"row {ln}, {self.what}", ln
        return f"{self.what}, sample index {i}", None
