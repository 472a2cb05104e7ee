"""`predict` and `evaluate` on a table file larger than the data memory budget, a piece at a time.

``predict``: each piece is run through the model and its rows appended to the output CSV/TSV (a temporary
file renamed into place at the end), so memory holds one piece, whatever the file's size. ``evaluate``:
the trainer's own evaluation loop reads the pieces front to back through ``data.stream.SequentialData``;
the metrics are streaming (weighted totals), so the results equal those of the whole file read at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

STREAMED_OUTPUTS = (".csv", ".tsv", ".txt")


def data_source(model, data):
    """The DataSource `Model.load_data` would build for ``data`` (a path keeps the training source's options)."""
    from ..config.training import DataSource

    if isinstance(data, DataSource):
        return data
    train_src = model.spec.config.data.train if model.spec.config.data else None
    keep = train_src.model_dump(exclude={"path", "format", "target_path", "mmap"}) if train_src else {}
    return DataSource(path=str(Path(data).resolve()), **{k: v for k, v in keep.items() if v is not None})


def wants_streaming(model, data, output: Path | None = None) -> bool:
    from ..data.stream import should_stream

    if output is not None and Path(output).suffix.lower() not in STREAMED_OUTPUTS:
        return False
    return should_stream(data_source(model, data), model.spec.base_dir)


def _pieces(model, source, require_target: bool):
    from ..data.stream import iter_datasets

    return iter_datasets(source, model.spec.base_dir, inputs=model._input_infos(), outputs=model._output_infos(),
                         require_target=require_target, encoders=model.encoders or None,
                         feature_names=model.feature_names, preprocessing=model.preprocessing)


def _cell(v) -> str:
    return f"{v:.9g}" if isinstance(v, (float, np.floating)) else str(v)


def stream_predict(model, data, output: Path, *, probabilities: bool, batch_size: int, decode) -> int:
    """Write the predictions for ``data`` to ``output`` piece by piece; returns the number of rows.

    ``decode(model, outs, probabilities) -> (names, columns)`` turns model outputs into columns."""
    output = Path(output)
    sep = "\t" if output.suffix.lower() == ".tsv" else ","
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    rows = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            for k, ds in enumerate(_pieces(model, data_source(model, data), require_target=False)):
                outs = model.predict_arrays(ds.xs, batch_size)
                names, columns = decode(model, outs, probabilities)
                if k == 0:
                    fh.write(sep.join(names) + "\n")
                fh.write("".join(sep.join(_cell(v) for v in row) + "\n" for row in zip(*columns)))
                rows += ds.n
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows


def stream_evaluate(model, data, batch_size: int) -> dict:
    """Loss and metrics over the whole file, reading it piece by piece."""
    from ..data.stream import SequentialData, count_rows

    source = data_source(model, data)
    n = count_rows(source, model.spec.base_dir)
    first = _pieces(model, source, require_target=True)
    head = next(first)

    def chain():
        yield head
        yield from first

    seq = SequentialData(chain(), n, len(head.xs), len(head.ys or []), head.ys is not None,
                         head.sample_weight is not None)
    return model.evaluate_data(seq, batch_size)
