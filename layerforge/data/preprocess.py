"""Preprocessing fitted on the training split and saved with the run: text vectorization, numeric scaling
and missing-value filling.

Both work on a cell :class:`~layerforge.data.table.Table` (CSV/TSV, Parquet, Feather, JSON Lines) before it
is fitted to the model, so the usual checks and messages (row, column) apply to what comes out:

- ``text:`` one raw text column -> ``sequence_length`` integer columns ``<column>[0]``, ... of token ids
  (0 padding, 1 out of vocabulary, 2.. the words by falling frequency), the model's features, as Keras'
  ``TextVectorization(max_tokens, output_mode="int", output_sequence_length)``.
- ``preprocess:`` per feature column ``(x - shift) / scale`` (standardize: mean/std; minmax: min/(max-min))
  and missing cells filled with the training split's mean/median, zero or a number.

The fitted state is a JSON-serialisable dict (``Dataset.preprocessing``); passed back for prediction and
evaluation it is applied as saved, never refitted. Fitting uses the first ``fit_rows`` rows only: the rows
that `validation_split` (which holds out the last rows) leaves for training.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .table import Problems, Table, is_missing, short_list

PAD, OOV = "", "[UNK]"
# Keras' TextVectorization default: lower case, then strip ASCII punctuation
_PUNCTUATION = re.compile(r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']")


# ---------------------------------------------------------------------------------------------- text


def standardize_text(text: str, how: str) -> str:
    if how in ("lower", "lower_and_strip_punctuation"):
        text = text.lower()
    if how in ("strip_punctuation", "lower_and_strip_punctuation"):
        text = _PUNCTUATION.sub("", text)
    return text


def tokenize(texts, how: str) -> list[list[str]]:
    return [standardize_text(str(t), how).split() for t in texts]


def fit_vocabulary(token_lists, max_tokens: int, min_count: int = 1) -> list[str]:
    """Padding, out-of-vocabulary, then the most frequent words (ties: first seen first)."""
    counts = Counter(w for toks in token_lists for w in toks)
    words = [w for w, c in counts.most_common() if c >= min_count][:max(0, max_tokens - 2)]
    return [PAD, OOV] + words


def vectorize(token_lists, vocabulary: list[str], length: int, padding: str = "post",
              truncating: str = "post") -> np.ndarray:
    """Token lists -> (n, length) int64 ids; unknown words -> 1, padding -> 0."""
    index = {w: i for i, w in enumerate(vocabulary) if i >= 2}
    out = np.zeros((len(token_lists), length), dtype=np.int64)
    for r, toks in enumerate(token_lists):
        ids = [index.get(w, 1) for w in toks]
        if len(ids) > length:
            ids = ids[:length] if truncating == "post" else ids[-length:]
        if ids:
            if padding == "post":
                out[r, :len(ids)] = ids
            else:
                out[r, length - len(ids):] = ids
    return out


class TextVectorizer:
    """The saved text state applied to raw strings (what ``predict`` on new text uses)."""

    def __init__(self, state: dict):
        self.state = state

    @classmethod
    def fit(cls, texts, *, column, max_tokens: int = 10000, sequence_length: int = 100,
            standardize: str = "lower_and_strip_punctuation", padding: str = "post", truncating: str = "post",
            min_count: int = 1) -> TextVectorizer:
        vocab = fit_vocabulary(tokenize(texts, standardize), max_tokens, min_count)
        return cls({"column": column, "vocabulary": vocab, "sequence_length": int(sequence_length),
                    "standardize": standardize, "padding": padding, "truncating": truncating})

    def __call__(self, texts) -> np.ndarray:
        s = self.state
        return vectorize(tokenize(texts, s["standardize"]), s["vocabulary"], s["sequence_length"],
                         s["padding"], s["truncating"])

    def token_names(self) -> list[str]:
        name = self.state["column"]
        return [f"{name}[{k}]" for k in range(self.state["sequence_length"])]


# ---------------------------------------------------------------------------------------------- helpers


def _key(table: Table, j: int) -> str:
    return table.columns[j] if table.columns is not None and table.columns[j] else f"[{j}]"


def _find(table: Table, key, P: Problems, role: str, config_key: str, required: bool = True) -> int | None:
    if isinstance(key, str) and key.startswith("[") and key.endswith("]") and key[1:-1].isdigit():
        if table.columns is None or key not in table.columns:
            key = int(key[1:-1])
    return table.find_column(key, role, P, config_key, required=required)


def _as_positive(spec, ncols: int):
    if isinstance(spec, bool):
        return int(spec)
    if isinstance(spec, int) and spec < 0:
        return spec + ncols
    return spec


def _resolved_targets(table: Table, source, outputs) -> list | None:
    """`target:` with negative indexes made positive and the default (the last column) made explicit, so that
    columns appended to the table do not move it."""
    n = table.n_columns
    if source.target is None:
        names = table.columns or []
        if outputs and all(o.name in names for o in outputs):
            return None
        return [n - 1] if len(outputs or [None]) == 1 else None
    specs = source.target if isinstance(source.target, list) else [source.target]
    return [_as_positive(s, n) for s in specs]


def _numbers(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float values with NaN where not a number, mask of missing cells)."""
    missing = np.fromiter((is_missing(c) for c in col), dtype=bool, count=len(col))
    try:
        vals = np.where(missing, "nan", col).astype(np.float64)
    except ValueError:
        vals = np.full(len(col), np.nan)
        for i, c in enumerate(col):
            if not missing[i]:
                try:
                    vals[i] = float(c)
                except ValueError:
                    pass  # left as is; the reader reports the cell with its row and column
    return vals, missing


def _cells(values: np.ndarray) -> np.ndarray:
    return np.char.mod("%.9g", values)


# ---------------------------------------------------------------------------------------------- entry


def _text_step(table: Table, source, state: dict | None, fit_rows: int, outputs, P: Problems):
    opts = source.text
    if state is None:
        j = _find(table, opts.column, P, "text", "text.column")
        P.raise_if_any()
        vec = TextVectorizer.fit(table.cells[:fit_rows, j], column=_key(table, j), max_tokens=opts.max_tokens,
                                 sequence_length=opts.sequence_length, standardize=opts.standardize,
                                 padding=opts.padding, truncating=opts.truncating, min_count=opts.min_count)
    else:
        vec = TextVectorizer(state)
        j = _find(table, state["column"], P, "text", "text.column")
        P.raise_if_any()
    ids = vec(table.cells[:, j])
    names = vec.token_names()
    columns = table.columns if table.columns is not None else [f"[{k}]" for k in range(table.n_columns)]
    clash = [c for c in names if c in columns]
    if clash:
        raise P.fail(f"the file already has a column {clash[0]!r}, the name of a token column of the text "
                     f"column {vec.state['column']!r}", hint="rename that column")
    update = {"features": names, "target": _resolved_targets(table, source, outputs)}
    if isinstance(source.sample_weight, int):
        update["sample_weight"] = _as_positive(source.sample_weight, table.n_columns)
    cells = np.concatenate([table.cells, ids.astype(str)], axis=1)
    new = Table(path=table.path, format=table.format, columns=list(columns) + names, cells=cells,
                lines=table.lines, delimiter=table.delimiter, header_line=table.header_line)
    return new, source.model_copy(update=update), vec.state


def _feature_columns(table: Table, source, outputs, P: Problems) -> list[int]:
    """The columns the CSV reader will take as features (for fitting the numeric preprocessing)."""
    if source.features is not None:
        cols = [_find(table, f, P, "feature", "features") for f in source.features]
        P.raise_if_any()
        return cols
    excluded = set()
    targets = _resolved_targets(table, source, outputs)
    if targets is None and table.columns is not None:
        excluded |= {j for j, c in enumerate(table.columns) if c in {o.name for o in outputs or []}}
    for t in targets or []:
        j = _find(table, t, P, "target", "target", required=False)
        if j is not None:
            excluded.add(j)
    if source.sample_weight is not None:
        j = _find(table, source.sample_weight, P, "sample_weight", "sample_weight", required=False)
        if j is not None:
            excluded.add(j)
    return [j for j in range(table.n_columns) if j not in excluded]


def _numeric_step(table: Table, source, state: dict | None, fit_rows: int, outputs, P: Problems):
    cells = table.cells.astype(object)  # fixed-width strings would cut the rewritten (longer) numbers
    if state is None:
        opts = source.preprocess
        unknown = [c for c in opts.columns if (table.columns is None or c not in table.columns)
                   and not (c.startswith("[") and c.endswith("]"))]
        if unknown:
            raise P.fail(f"preprocess.columns names {unknown[0]!r}, which is not a column of the file",
                         path=f"{P.where}.preprocess.columns" if P.where else "preprocess.columns",
                         expected=f"one of: {short_list(table.column_names(), 20)}")
        state = {"columns": {}}
        for j in _feature_columns(table, source, outputs, P):
            key = _key(table, j)
            kind = opts.columns.get(key, opts.scale)
            vals, missing = _numbers(cells[:, j])
            fit = vals[:fit_rows][np.isfinite(vals[:fit_rows])]
            fill = None
            if opts.fill_missing != "none":
                if isinstance(opts.fill_missing, (int, float)):
                    fill = float(opts.fill_missing)
                elif opts.fill_missing == "zero":
                    fill = 0.0
                elif fit.size:
                    fill = float(np.mean(fit) if opts.fill_missing == "mean" else np.median(fit))
                if fill is not None:
                    fit = np.where(np.isfinite(vals[:fit_rows]), vals[:fit_rows], fill)
                    fit = fit[np.isfinite(fit)]
            shift, scale = 0.0, 1.0
            if kind != "none" and fit.size:
                if kind == "standardize":
                    shift, spread = float(fit.mean()), float(fit.std())
                else:
                    shift, spread = float(fit.min()), float(fit.max() - fit.min())
                scale = spread if spread > 0 else 1.0
            if fill is not None or kind != "none":
                state["columns"][key] = {"kind": kind, "fill": fill, "shift": shift, "scale": scale}
    for key, st in state["columns"].items():
        j = _find(table, key, P, "feature", "preprocess", required=False)
        P.items.clear()  # a saved column absent from this file is the reader's to report, if it is needed
        if j is None:
            continue
        vals, missing = _numbers(cells[:, j])
        if st["fill"] is not None:
            vals = np.where(missing, st["fill"], vals)
        ok = np.isfinite(vals)
        if st["kind"] != "none" or st["fill"] is not None:
            scaled = (vals - st["shift"]) / st["scale"]
            col = cells[:, j].copy()
            col[ok] = _cells(scaled[ok]).astype(object)
            if st["fill"] is None:
                col[missing] = cells[missing, j]
            cells[:, j] = col
    new = Table(path=table.path, format=table.format, columns=table.columns, cells=cells.astype(str), lines=table.lines,
                delimiter=table.delimiter, header_line=table.header_line)
    return new, state


def prepare_table(table: Table, source, state: dict | None, *, outputs=None, fit_rows: int | None = None,
                  where: str = "") -> tuple[Table, object, dict | None]:
    """Apply (fitting first when ``state`` is None) the source's text and numeric preprocessing.

    Returns (table, source, state): the source may be rewritten (the features become the token columns).
    ``state`` None and no ``text:``/``preprocess:`` in the source: everything is returned unchanged."""
    state = dict(state or {})
    P = Problems(table.path, where)
    n = table.n_rows
    rows = n if fit_rows is None else max(1, min(n, int(fit_rows)))
    text_state = state.get("text")
    if text_state is not None or source.text is not None:
        table, source, text_state = _text_step(table, source, text_state, rows, outputs, P)
        state["text"] = text_state
    num_state = state.get("numeric")
    if num_state is not None or source.preprocess is not None:
        table, num_state = _numeric_step(table, source, num_state, rows, outputs, P)
        state["numeric"] = num_state
    return table, source, (state or None)
