"""predict / evaluate on a file over the data memory budget: read a piece at a time, same results."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from layerforge.cli import app

ROOT = Path(__file__).resolve().parent.parent
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}
runner = CliRunner()


def run(*args, budget=None):
    env = dict(ENV)
    if budget:
        env["LAYERFORGE_DATA_BUDGET"] = budget
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "run"
    res = run("train", ROOT / "configs" / "iris.yaml", "-q", "-o", out, "training.epochs=5")
    assert res.exit_code == 0, res.output
    return out


def big_iris(path: Path, copies: int) -> int:
    lines = (ROOT / "examples/data/iris.csv").read_text().splitlines()
    path.write_text(lines[0] + "\n" + "\n".join(lines[1:] * copies) + "\n")
    return 150 * copies


def test_budget_parsing(monkeypatch):
    from layerforge.data.stream import DEFAULT_BUDGET, data_budget

    monkeypatch.setenv("LAYERFORGE_DATA_BUDGET", "64MB")
    assert data_budget() == 64 << 20
    monkeypatch.setenv("LAYERFORGE_DATA_BUDGET", "1.5GB")
    assert data_budget() == int(1.5 * (1 << 30))
    monkeypatch.setenv("LAYERFORGE_DATA_BUDGET", "junk")
    assert data_budget() == DEFAULT_BUDGET


def test_streamed_predict_and_evaluate_equal_the_whole_file(iris_run, tmp_path):
    n = big_iris(tmp_path / "big.csv", 20)
    whole = run("predict", iris_run, "--data", tmp_path / "big.csv", "-o", tmp_path / "whole.csv")
    piece = run("predict", iris_run, "--data", tmp_path / "big.csv", "-o", tmp_path / "piece.csv", budget="64KB")
    assert whole.exit_code == 0 and piece.exit_code == 0, piece.output
    assert (tmp_path / "whole.csv").read_text() == (tmp_path / "piece.csv").read_text()
    assert len((tmp_path / "piece.csv").read_text().splitlines()) == n + 1
    a = run("evaluate", iris_run, "--data", tmp_path / "big.csv", "--json")
    b = run("evaluate", iris_run, "--data", tmp_path / "big.csv", "--json", budget="64KB")
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    import json

    ra, rb = json.loads(a.output), json.loads(b.output)
    assert ra.keys() == rb.keys()
    for k in ra:
        assert rb[k] == pytest.approx(ra[k], rel=1e-9)


def test_pieces_are_bounded_and_errors_keep_their_line(iris_run, tmp_path, monkeypatch):
    from layerforge.config.training import DataSource
    from layerforge.data.stream import iter_tables

    monkeypatch.setenv("LAYERFORGE_DATA_BUDGET", "64KB")
    big_iris(tmp_path / "big.csv", 20)
    pieces = list(iter_tables(DataSource(path="big.csv"), tmp_path))
    assert len(pieces) > 5 and all(p.n_rows <= 1024 for p in pieces)
    assert all(p.columns == pieces[0].columns for p in pieces) and pieces[0].columns[-1] == "species"
    assert pieces[1].lines[0] == pieces[0].lines[-1] + 1
    text = (tmp_path / "big.csv").read_text().splitlines()
    text[2500] = text[2500].replace("setosa", "dragon").replace("versicolor", "dragon").replace("virginica", "dragon")
    (tmp_path / "big.csv").write_text("\n".join(text) + "\n")
    res = run("evaluate", iris_run, "--data", tmp_path / "big.csv", budget="64KB")
    assert res.exit_code == 2 and "big.csv:2501" in res.output and "dragon" in res.output


def test_streaming_keeps_memory_bounded(iris_run, tmp_path, monkeypatch):
    import layerforge
    from layerforge.cli.commands import decode_outputs
    from layerforge.cli.streaming import stream_predict, wants_streaming

    big_iris(tmp_path / "big.csv", 200)  # 30,000 rows, about 0.9 MB of CSV
    size = (tmp_path / "big.csv").stat().st_size
    monkeypatch.setenv("LAYERFORGE_DATA_BUDGET", str(size // 10))
    model = layerforge.load(iris_run)
    assert wants_streaming(model, tmp_path / "big.csv", tmp_path / "p.csv")
    model.predict_arrays([np.zeros((2, 4), np.float32)], 2)  # warm up (compiled kernels, buffers)
    tracemalloc.start()
    rows = stream_predict(model, tmp_path / "big.csv", tmp_path / "p.csv", probabilities=False, batch_size=256,
                          decode=decode_outputs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rows == 30000
    # read whole, the cell table alone is several times the file; in pieces the peak stays near the budget
    assert peak < size, f"peak {peak} bytes for a {size}-byte file"


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_other_formats_stream_too(iris_run, tmp_path, fmt):
    import json

    lines = (ROOT / "examples/data/iris.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, ln.split(","))) for ln in lines[1:]] * 10
    path = tmp_path / f"big.{fmt}"
    if fmt == "parquet":
        pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (layerforge[data])")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({k: [float(r[k]) if k != "species" else r[k] for r in rows] for k in header}), path,
                       row_group_size=200)
    else:
        path.write_text("".join(json.dumps({k: float(r[k]) if k != "species" else r[k] for k in header}) + "\n"
                                for r in rows))
    from layerforge.config.training import DataSource
    from layerforge.data.stream import iter_tables

    budget = str(path.stat().st_size // 2)
    pieces = list(iter_tables(DataSource(path=path.name), tmp_path, rows=256))
    assert len(pieces) > 3 and sum(p.n_rows for p in pieces) == 1500
    a = run("evaluate", iris_run, "--data", path, "--json")
    b = run("evaluate", iris_run, "--data", path, "--json", budget=budget)
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    assert json.loads(a.output) == pytest.approx(json.loads(b.output), rel=1e-9)
    p = run("predict", iris_run, "--data", path, "-o", tmp_path / "p.csv", budget=budget)
    assert p.exit_code == 0 and len((tmp_path / "p.csv").read_text().splitlines()) == 1501
