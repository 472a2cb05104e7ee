"""Parquet, Feather and JSON Lines readers, numeric preprocessing and the text vectorizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from layerforge.config.training import DataSource
from layerforge.data import InputInfo, OutputInfo, load_source
from layerforge.data.preprocess import TextVectorizer, fit_vocabulary, standardize_text, tokenize, vectorize
from layerforge.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
IRIS_CSV = ROOT / "examples" / "data" / "iris.csv"
INP = [InputInfo("x", (4,))]
OUT = [OutputInfo("species", (3,), sparse=True)]


def iris_rows():
    import csv

    rows = list(csv.DictReader(open(IRIS_CSV)))
    return rows[:30]


def load(path, **kw):
    src = DataSource(path=str(path), **{k: v for k, v in kw.items() if k in DataSource.model_fields})
    extra = {k: v for k, v in kw.items() if k not in DataSource.model_fields}
    return load_source(src, path.parent, inputs=extra.pop("inputs", INP), outputs=extra.pop("outputs", OUT),
                       where="data.train", **extra)


def messages(exc) -> str:
    return "\n".join(p.render_plain() for p in exc.value.problems)


@pytest.fixture
def csv_reference(tmp_path):
    rows = iris_rows()
    path = tmp_path / "iris.csv"
    path.write_text("sepal_length,sepal_width,petal_length,petal_width,species\n"
                    + "".join(",".join(r.values()) + "\n" for r in rows))
    return load(path, target="species")


def arrow_table(rows):
    pa = pytest.importorskip("pyarrow", reason="Parquet/Feather need pyarrow (layerforge[data])")
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return pa.table({k: pa.array([float(v) for v in vals]) if k != "species" else pa.array(vals)
                     for k, vals in cols.items()})


@pytest.mark.parametrize("fmt", ["parquet", "feather"])
def test_arrow_formats_read_like_the_csv(tmp_path, fmt, csv_reference):
    pytest.importorskip("pyarrow", reason="Parquet/Feather need pyarrow (layerforge[data])")
    import pyarrow.feather as pf
    import pyarrow.parquet as pq

    path = tmp_path / f"iris.{fmt}"
    table = arrow_table(iris_rows())
    pq.write_table(table, path) if fmt == "parquet" else pf.write_feather(table, str(path))
    ds = load(path, target="species")
    np.testing.assert_array_equal(ds.xs[0], csv_reference.xs[0])
    np.testing.assert_array_equal(ds.ys[0], csv_reference.ys[0])
    assert ds.encoders == csv_reference.encoders
    assert ds.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    # columns by name, in any order
    ds2 = load(path, target="species", features=["petal_width", "petal_length", "sepal_width", "sepal_length"])
    np.testing.assert_array_equal(ds2.xs[0], csv_reference.xs[0][:, ::-1])


def test_parquet_errors_name_row_and_column(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (layerforge[data])")
    import pyarrow.parquet as pq

    t = pa.table({"a": [1.0, None, 3.0], "b": [1.0, 2.0, 3.0], "c": [1.0, 2.0, 3.0], "d": [1.0, 2.0, 3.0],
                  "species": ["x", "y", "x"]})
    path = tmp_path / "gap.parquet"
    pq.write_table(t, path)
    with pytest.raises(DataError) as exc:
        load(path, target="species")
    assert "row 2, column 'a'" in messages(exc)
    with pytest.raises(DataError) as exc:
        load(path, target="specie")
    assert "did you mean 'species'" in messages(exc)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError) as exc:
        load(bad, target="species")
    assert "not a readable Parquet file" in messages(exc)


def test_list_columns_become_positions(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (layerforge[data])")
    import pyarrow.parquet as pq

    t = pa.table({"x": [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], "species": ["a", "b"]})
    pq.write_table(t, tmp_path / "seq.parquet")
    ds = load(tmp_path / "seq.parquet", target="species")
    np.testing.assert_array_equal(ds.xs[0], [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert ds.feature_names == ["x[0]", "x[1]", "x[2]", "x[3]"]


def write_jsonl(path, rows, broken_line=None):
    lines = [json.dumps({k: (float(v) if k != "species" else v) for k, v in r.items()}) for r in rows]
    if broken_line is not None:
        lines[broken_line - 1] = lines[broken_line - 1][:-3]
    path.write_text("\n".join(lines) + "\n")


def test_jsonl_reads_like_the_csv_and_names_lines(tmp_path, csv_reference):
    path = tmp_path / "iris.jsonl"
    write_jsonl(path, iris_rows())
    ds = load(path, target="species")
    np.testing.assert_allclose(ds.xs[0], csv_reference.xs[0])
    np.testing.assert_array_equal(ds.ys[0], csv_reference.ys[0])
    write_jsonl(path, iris_rows(), broken_line=7)
    with pytest.raises(DataError) as exc:
        load(path, target="species")
    assert exc.value.problems[0].line == 7 and "not valid JSON" in messages(exc)
    path.write_text('{"a": 1, "species": "x"}\n[1, 2]\n')
    with pytest.raises(DataError) as exc:
        load(path, target="species", inputs=[InputInfo("x", (1,))])
    assert "line 2: a JSON list, not an object" in messages(exc)
    path.write_text('{"a": 1, "b": 2, "c": 3, "d": 4, "species": "x"}\n{"a": 1, "b": 2, "c": 3, "species": "y"}\n')
    with pytest.raises(DataError) as exc:
        load(path, target="species")
    assert "row 2, column 'd'" in messages(exc) and exc.value.problems[0].line == 2


def test_unknown_extension_suggests_jsonl(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[]")
    with pytest.raises(DataError) as exc:
        load(path)
    assert "JSON Lines" in messages(exc) or ".jsonl" in messages(exc)


def test_missing_pyarrow_is_a_clear_message(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pyarrow(name, *a, **k):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError) as exc:
        load(tmp_path / "x.parquet")
    assert "layerforge[data]" in messages(exc)


# ------------------------------------------------------------------------------------ numeric preprocessing

def test_preprocessing_is_fitted_on_the_training_rows_only(tmp_path):
    path = tmp_path / "t.csv"
    # the last 2 rows (validation at 0.5) are outliers that must not move the statistics
    path.write_text("a,b,y\n1,10,0\n3,,1\n2,30,0\n,20,1\n1000,1000,0\n1000,1000,1\n")
    src = dict(target="y", preprocess={"scale": "standardize", "columns": {"b": "minmax"}, "fill_missing": "mean"})
    ds = load(path, inputs=[InputInfo("x", (2,))], outputs=[OutputInfo("y", (1,))], holdout_fraction=1 / 3, **src)
    st = ds.preprocessing["numeric"]["columns"]
    assert st["a"]["kind"] == "standardize" and st["b"]["kind"] == "minmax"
    assert st["a"]["fill"] == pytest.approx(2.0) and st["b"]["fill"] == pytest.approx(20.0)
    a = np.array([1, 3, 2, 2.0])
    assert st["a"]["shift"] == pytest.approx(a.mean()) and st["a"]["scale"] == pytest.approx(a.std())
    assert st["b"]["shift"] == 10 and st["b"]["scale"] == 20
    x = ds.xs[0]
    np.testing.assert_allclose(x[:4, 0], (a - a.mean()) / a.std(), rtol=1e-6)
    np.testing.assert_allclose(x[:4, 1], [0, 0.5, 1, 0.5], rtol=1e-6)
    # saved state applied as is to new data (no refit)
    new = tmp_path / "new.csv"
    new.write_text("a,b\n2,20\n,40\n")
    p = load(new, inputs=[InputInfo("x", (2,))], outputs=[OutputInfo("y", (1,))], require_target=False,
             preprocessing=ds.preprocessing, feature_names=ds.feature_names, **src)
    np.testing.assert_allclose(p.xs[0], [[0, 0.5], [0, 1.5]], atol=1e-6)


def test_preprocess_options_are_validated_with_location(tmp_path):
    from layerforge.config import load_config
    from layerforge.errors import ConfigError

    cfg = tmp_path / "m.yaml"
    cfg.write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 1}\ndata:\n  train:\n    path: x.csv\n"
                   "    preprocess: {scale: zscore}\n    text: {column: t, max_tokens: 1}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    text = "\n".join(p.render_plain() for p in exc.value.problems)
    assert "m.yaml:7" in text and "scale" in text
    assert "m.yaml:8" in text and "max_tokens" in text


# ------------------------------------------------------------------------------------ text

def test_text_vectorizer_matches_keras_conventions():
    assert standardize_text("Hello, World! It's GREAT.", "lower_and_strip_punctuation") == "hello world its great"
    toks = tokenize(["b a b", "c b a", "d"], "lower")
    vocab = fit_vocabulary(toks, max_tokens=4)
    assert vocab == ["", "[UNK]", "b", "a"]
    ids = vectorize(toks, vocab, 4)
    np.testing.assert_array_equal(ids, [[2, 3, 2, 0], [1, 2, 3, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(vectorize(toks, vocab, 2, padding="pre", truncating="pre"), [[3, 2], [2, 3], [0, 1]])
    v = TextVectorizer.fit(["x y", "y"], column="t", max_tokens=10, sequence_length=3)
    assert v.token_names() == ["t[0]", "t[1]", "t[2]"]
    np.testing.assert_array_equal(v(["Y, x! z"]), [[2, 3, 1]])


def test_text_column_feeds_an_embedding_and_keeps_its_vocabulary(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,review,label\n1,\"Great, great product!\",pos\n2,awful thing,neg\n3,great,pos\n"
                    "4,\"awful, awful\",neg\n5,new words here,pos\n")
    kw = dict(target="label", text={"column": "review", "max_tokens": 5, "sequence_length": 3})
    inp = [InputInfo("x", (3,), "int32")]
    out = [OutputInfo("label", (1,))]
    ds = load(path, inputs=inp, outputs=out, holdout_fraction=0.2, **kw)
    vocab = ds.preprocessing["text"]["vocabulary"]
    assert vocab[:2] == ["", "[UNK]"] and set(vocab[2:]) == {"great", "awful", "product"}
    assert "new" not in vocab  # the held-out last row is not part of the fit
    assert ds.xs[0].dtype == np.int32 and ds.xs[0].shape == (5, 3)
    g, a = vocab.index("great"), vocab.index("awful")
    np.testing.assert_array_equal(ds.xs[0][0], [g, g, vocab.index("product")])
    np.testing.assert_array_equal(ds.xs[0][4], [1, 1, 1])
    np.testing.assert_array_equal(ds.ys[0].ravel(), [1, 0, 1, 0, 1])
    # prediction on a file without the label, the saved vocabulary applied
    new = tmp_path / "new.csv"
    new.write_text("review\nawful great\n")
    p = load(new, inputs=inp, outputs=out, require_target=False, preprocessing=ds.preprocessing,
             encoders=ds.encoders, feature_names=ds.feature_names, **kw)
    np.testing.assert_array_equal(p.xs[0], [[a, g, 0]])
    with pytest.raises(DataError) as exc:
        load(path, inputs=inp, outputs=out, **dict(kw, text={"column": "reviews"}))
    assert "did you mean 'review'" in messages(exc)


def test_shipped_text_config_trains(tmp_path):
    from layerforge.api import Model

    m = Model.from_yaml(ROOT / "configs" / "reviews_text.yaml", ["training.epochs=8"])
    hist = m.fit()
    assert hist.history["val_accuracy"][-1] >= 0.85
    m.save(tmp_path / "run")
    import layerforge

    again = layerforge.load(tmp_path / "run")
    assert again.preprocessing["text"]["vocabulary"] == m.preprocessing["text"]["vocabulary"]
    probs = again.predict(ROOT / "examples" / "data" / "reviews.csv")
    assert probs.shape == (1200, 1)
