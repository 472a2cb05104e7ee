"""Data readers: shipped datasets, CSV/NPY/NPZ fitting, label encoding, error messages, predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from layerforge.config.training import DataSource
from layerforge.data import (
    Dataset,
    InputInfo,
    LazyCast,
    OutputInfo,
    atomic_write,
    load_source,
    read_table,
    write_predictions,
)
from layerforge.errors import DataError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IRIS_IN = [InputInfo("features", (4,))]
IRIS_SPARSE = [OutputInfo("species", (3,), sparse=True)]


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def load(tmp_path, source, inputs=None, outputs=None, **kw) -> Dataset:
    if isinstance(source, str):
        source = DataSource(path=source)
    return load_source(source, tmp_path, inputs=inputs or [InputInfo("x", (2,))],
                       outputs=outputs or [OutputInfo("y", (1,))], **kw)


def data_error(tmp_path, source, inputs=None, outputs=None, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load(tmp_path, source, inputs, outputs, **kw)
    return info.value


def rendered(err: DataError) -> str:
    return err.render_plain()


# ------------------------------------------------------------------------------------------ shipped datasets


def test_iris_string_labels_are_encoded():
    ds = load_source(DataSource(path="data/iris.csv", target="species"), EXAMPLES, inputs=IRIS_IN,
                     outputs=IRIS_SPARSE)
    assert ds.n == 150
    assert ds.xs[0].shape == (150, 4) and ds.xs[0].dtype == np.float32
    assert ds.ys[0].shape == (150,) and ds.ys[0].dtype == np.int64
    assert ds.encoders == {"species": {"classes": ["setosa", "versicolor", "virginica"], "kind": "string"}}
    assert np.bincount(ds.ys[0]).tolist() == [50, 50, 50]
    assert ds.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    np.testing.assert_allclose(ds.xs[0][0], [5.9, 3.2, 4.8, 1.8], rtol=1e-6)  # rows are shuffled once
    assert ds.ys[0][0] == 1  # versicolor
    assert len(set(ds.ys[0][-30:].tolist())) == 3  # a validation_split of 0.2 sees every species
    assert ds.decode(0, [2, 0]).tolist() == ["virginica", "setosa"]
    json.dumps(ds.encoders)  # saved with a run


def test_iris_categorical_one_hot():
    ds = load_source("data/iris.csv", EXAMPLES, inputs=IRIS_IN,
                     outputs=[OutputInfo("species", (3,), categorical=True)])
    assert ds.ys[0].shape == (150, 3) and ds.ys[0].dtype == np.float32
    np.testing.assert_array_equal(ds.ys[0].sum(axis=1), 1)
    assert ds.ys[0][0].tolist() == [0, 1, 0]


def test_digits_npz_shape():
    ds = load_source("data/digits.npz", EXAMPLES, inputs=[InputInfo("image", (8, 8, 1))],
                     outputs=[OutputInfo("digit", (10,), sparse=True)])
    assert ds.n == 1797
    assert ds.xs[0].shape == (1797, 8, 8, 1) and ds.xs[0].dtype == np.float32
    assert 0.0 <= ds.xs[0].min() and ds.xs[0].max() <= 1.0
    assert ds.ys[0].dtype == np.int64 and set(np.unique(ds.ys[0])) == set(range(10))
    assert ds.encoders["digit"] == {"classes": list(range(10)), "kind": "int"}


def test_sunspots_regression():
    ds = load_source(DataSource(path="data/sunspots.csv", target="sunspots"), EXAMPLES,
                     inputs=[InputInfo("year", (1,))], outputs=[OutputInfo("count", (1,))])
    assert ds.n == 309 and ds.ys[0].shape == (309, 1) and ds.ys[0].dtype == np.float32
    assert ds.xs[0][0, 0] == 1700 and ds.encoders == {}


# ------------------------------------------------------------------------------------------ CSV reading


def test_headerless_csv_and_header_override(tmp_path):
    write(tmp_path, "a.csv", "1,2,0\n3,4,1\n5,6,0\n")
    ds = load(tmp_path, DataSource(path="a.csv", target=-1), outputs=[OutputInfo("y", (2,), sparse=True)])
    assert ds.feature_names is None and ds.n == 3
    assert ds.ys[0].tolist() == [0, 1, 0]
    # header detection: text above numeric columns
    write(tmp_path, "b.csv", "u,v,label\n1,2,0\n3,4,1\n")
    ds = load(tmp_path, DataSource(path="b.csv", target="label"))
    assert ds.feature_names == ["u", "v"] and ds.n == 2
    # header: false keeps the first row as data (here it is numbers anyway)
    ds = load(tmp_path, DataSource(path="a.csv", header=False))
    assert ds.n == 3
    # header: true on a numeric first row uses it as names
    ds = load(tmp_path, DataSource(path="a.csv", header=True))
    assert ds.n == 2 and ds.feature_names == ["1", "2"]


def test_delimiters_tsv_semicolon_and_quotes(tmp_path):
    write(tmp_path, "d.tsv", "a\tb\ty\n1\t2\t3\n4\t5\t6\n")
    ds = load(tmp_path, DataSource(path="d.tsv", target="y"))
    np.testing.assert_array_equal(ds.xs[0], [[1, 2], [4, 5]])
    write(tmp_path, "e.csv", "a;b;y\n1;2;3\n")
    assert load(tmp_path, DataSource(path="e.csv", target="y")).ys[0].tolist() == [[3.0]]
    write(tmp_path, "f.csv", 'a,b,kind\n1,2,"big, red"\n3,4,small\n')
    ds = load(tmp_path, DataSource(path="f.csv", target="kind"), outputs=[OutputInfo("y", (2,), sparse=True)])
    assert ds.encoders["y"]["classes"] == ["big, red", "small"]


def test_flat_columns_reshaped_to_input_shape(tmp_path):
    write(tmp_path, "img.csv", "p0,p1,p2,p3,label\n0,1,2,3,a\n4,5,6,7,b\n")
    ds = load(tmp_path, DataSource(path="img.csv", target="label"), inputs=[InputInfo("img", (2, 2, 1))],
              outputs=[OutputInfo("y", (2,), sparse=True)])
    assert ds.xs[0].shape == (2, 2, 2, 1)
    assert ds.xs[0][1, :, :, 0].tolist() == [[4, 5], [6, 7]]


def test_features_by_name_and_index_sample_weight(tmp_path):
    write(tmp_path, "w.csv", "id,a,b,w,y\n1,0.5,1.5,2,10\n2,1.5,2.5,0.5,20\n")
    ds = load(tmp_path, DataSource(path="w.csv", target="y", features=["b", 1], sample_weight="w"))
    np.testing.assert_allclose(ds.xs[0], [[1.5, 0.5], [2.5, 1.5]])
    np.testing.assert_allclose(ds.sample_weight, [2, 0.5])
    assert ds.feature_names == ["b", "a"]


def test_int_labels_mapping_and_binary_text_labels(tmp_path):
    write(tmp_path, "i.csv", "a,b,y\n1,2,3\n3,4,1\n5,6,2\n")
    ds = load(tmp_path, DataSource(path="i.csv", target="y"), outputs=[OutputInfo("y", (3,), sparse=True)])
    assert ds.encoders["y"] == {"classes": [1, 2, 3], "kind": "int"}  # 3 is not a valid index: sorted mapping
    assert ds.ys[0].tolist() == [2, 0, 1] and ds.decode(0, [2]).tolist() == [3]
    write(tmp_path, "bin.csv", "a,b,answer\n1,2,yes\n3,4,no\n")
    ds = load(tmp_path, DataSource(path="bin.csv", target="answer"), outputs=[OutputInfo("y", (1,))])
    assert ds.ys[0].tolist() == [[1.0], [0.0]] and ds.encoders["y"]["classes"] == ["no", "yes"]


def test_several_outputs_and_regression_columns(tmp_path):
    write(tmp_path, "m.csv", "a,b,c1,c2,kind\n1,2,0.5,0.25,x\n3,4,1.5,1.25,z\n")
    ds = load(tmp_path, DataSource(path="m.csv", target=["c1", "kind"]),
              outputs=[OutputInfo("reg", (1,)), OutputInfo("cls", (2,), sparse=True)],
              inputs=[InputInfo("x", (3,))], )
    # one target column per output; the remaining columns are features
    assert ds.xs[0].shape == (2, 3) and ds.ys[0].tolist() == [[0.5], [1.5]] and ds.ys[1].tolist() == [0, 1]
    ds = load(tmp_path, DataSource(path="m.csv", target=["c1", "c2"], features=["a", "b"]),
              outputs=[OutputInfo("v", (2,))])
    assert ds.ys[0].tolist() == [[0.5, 0.25], [1.5, 1.25]]


# ------------------------------------------------------------------------------------------ CSV errors


def test_wrong_column_count_names_file_and_row(tmp_path):
    write(tmp_path, "bad.csv", "a,b,y\n1,2,3\n4,5\n6,7,8,9\n")
    err = data_error(tmp_path, "bad.csv")
    assert [p.line for p in err.problems] == [3, 4]
    assert all("bad.csv" in p.file for p in err.problems)
    assert "row 3 has 2 fields but the header has 3" in rendered(err)


def test_string_in_numeric_column_shows_value(tmp_path):
    write(tmp_path, "s.csv", "a,b,y\n1,2,3\n4,abc,6\n7,8,9\n10,11,12\n")
    err = data_error(tmp_path, "s.csv")
    p = err.problems[0]
    assert p.line == 3 and "s.csv" in p.file
    assert "'abc' is not a number" in p.message and "column 'b'" in p.message


def test_text_feature_column(tmp_path):
    write(tmp_path, "t.csv", "color,b,y\nred,2,3\nblue,5,6\n")
    err = data_error(tmp_path, "t.csv")
    assert "column 'color' holds text" in rendered(err) and "row 2" in rendered(err)


@pytest.mark.parametrize("cell", ["", "NA", "NaN", "nan", "?"])
def test_missing_values(tmp_path, cell):
    write(tmp_path, "m.csv", f"a,b,y\n1,2,3\n4,{cell},6\n")
    err = data_error(tmp_path, "m.csv")
    assert err.problems[0].line == 3
    assert "missing value in row 3, column 'b'" in err.problems[0].message
    assert "m.csv" in rendered(err)


def test_missing_target_value(tmp_path):
    write(tmp_path, "m.csv", "a,b,y\n1,2,cat\n4,5,\n")
    err = data_error(tmp_path, DataSource(path="m.csv", target="y"), outputs=[OutputInfo("y", (2,), sparse=True)])
    assert "missing value in row 3, column 'y'" in rendered(err)


def test_infinite_value(tmp_path):
    write(tmp_path, "inf.csv", "a,b,y\n1,inf,3\n4,5,6\n")
    err = data_error(tmp_path, "inf.csv")
    assert err.problems[0].line == 2 and "infinite value 'inf' in row 2, column 'b'" in rendered(err)


def test_empty_and_header_only_files(tmp_path):
    write(tmp_path, "empty.csv", "")
    assert "empty.csv is empty" in rendered(data_error(tmp_path, "empty.csv"))
    write(tmp_path, "blank.csv", "\n\n  \n")
    assert "is empty" in rendered(data_error(tmp_path, "blank.csv"))
    write(tmp_path, "head.csv", "a,b,y\n")
    err = data_error(tmp_path, "head.csv")
    assert "head.csv has a header row but no data rows" in rendered(err) and err.problems[0].line == 1


def test_target_column_missing_lists_columns_and_did_you_mean(tmp_path):
    write(tmp_path, "iris.csv", "sepal,petal,species\n1,2,a\n")
    err = data_error(tmp_path, DataSource(path="iris.csv", target="specis"), where="data.train")
    msg = rendered(err)
    assert "target column 'specis' is not in the file; did you mean 'species'?" in msg
    assert "sepal, petal, species" in msg and err.problems[0].path == "data.train.target"
    assert "iris.csv" in err.problems[0].file


def test_named_column_in_headerless_file(tmp_path):
    write(tmp_path, "n.csv", "1,2,3\n4,5,6\n")
    err = data_error(tmp_path, DataSource(path="n.csv", target="y", header=False))
    assert "no header row" in rendered(err) and "header: true" in rendered(err)


def test_feature_count_mismatch(tmp_path):
    write(tmp_path, "c.csv", "a,b,c,y\n1,2,3,4\n")
    err = data_error(tmp_path, "c.csv")
    assert "model input 'x' has shape (2,)" in rendered(err) and "3 feature columns" in rendered(err)


def test_csv_with_several_inputs_refused(tmp_path):
    write(tmp_path, "c.csv", "a,b,y\n1,2,3\n")
    err = data_error(tmp_path, "c.csv", inputs=[InputInfo("left", (1,)), InputInfo("right", (1,))])
    assert "CSV/TSV files feed models with one input" in rendered(err) and ".npz" in rendered(err)


def test_text_target_for_regression_output(tmp_path):
    write(tmp_path, "r.csv", "a,b,y\n1,2,low\n3,4,mid\n5,6,high\n")
    err = data_error(tmp_path, DataSource(path="r.csv", target="y"))
    assert "not a classifier" in rendered(err)


def test_typo_in_numeric_target(tmp_path):
    write(tmp_path, "r.csv", "a,b,y\n1,2,1.5\n3,4,2.5\n5,6,x3\n7,8,4\n")
    err = data_error(tmp_path, DataSource(path="r.csv", target="y"))
    assert err.problems[0].line == 4 and "'x3' is not a number" in rendered(err)


def test_int_input_needs_whole_numbers(tmp_path):
    write(tmp_path, "tok.csv", "t1,t2,y\n1,2,0\n3,4.5,1\n")
    err = data_error(tmp_path, DataSource(path="tok.csv", target="y"), inputs=[InputInfo("tokens", (2,), "int32")])
    assert "row 3, column 't2'" in rendered(err) and "int32" in rendered(err)
    write(tmp_path, "ok.csv", "t1,t2,y\n1,2,0\n3,400,1\n")
    ds = load(tmp_path, DataSource(path="ok.csv", target="y"), inputs=[InputInfo("tokens", (2,), "int32")])
    assert ds.xs[0].dtype == np.int32 and ds.xs[0][1, 1] == 400  # range is the Embedding layer's business


def test_not_utf8_and_binary(tmp_path):
    (tmp_path / "latin.csv").write_bytes("a,b,y\n1,2,caf\xe9\n".encode("latin-1"))
    err = data_error(tmp_path, "latin.csv")
    assert "not UTF-8" in rendered(err) and err.problems[0].line == 2
    np.save(tmp_path / "arr.npy", np.zeros((2, 2)))
    (tmp_path / "arr.csv").write_bytes((tmp_path / "arr.npy").read_bytes())
    assert "NumPy .npy file, not CSV" in rendered(data_error(tmp_path, "arr.csv"))


# ------------------------------------------------------------------------------------------ files


def test_missing_file_says_resolved_path_and_base(tmp_path):
    err = data_error(tmp_path, DataSource(path="data/nope.csv"), where="data.train")
    msg = rendered(err)
    assert str(tmp_path / "data" / "nope.csv") in msg
    assert "relative paths start from the config file's folder" in msg
    assert err.problems[0].path == "data.train.path"


def test_missing_file_did_you_mean(tmp_path):
    write(tmp_path, "train.csv", "a,b,y\n1,2,3\n")
    assert "did you mean 'train.csv'" in rendered(data_error(tmp_path, "trian.csv"))


def test_unknown_extension_lists_formats(tmp_path):
    write(tmp_path, "d.xlsx", "x")
    msg = rendered(data_error(tmp_path, "d.xlsx"))
    assert "'.xlsx'" in msg and ".csv" in msg and ".npy" in msg and ".npz" in msg and "CSV" in msg


def test_format_override_and_gzip(tmp_path):
    import gzip

    write(tmp_path, "data.dat", "a,b,y\n1,2,3\n")
    assert load(tmp_path, DataSource(path="data.dat", format="csv")).n == 1
    with gzip.open(tmp_path / "z.csv.gz", "wt") as fh:
        fh.write("a,b,y\n1,2,3\n4,5,6\n")
    assert load(tmp_path, "z.csv.gz").n == 2


def test_read_table_raw(tmp_path):
    write(tmp_path, "r.csv", "a,b\n1,x\n\n3,y\n")
    t = read_table(DataSource(path="r.csv"), tmp_path)
    assert t.columns == ["a", "b"] and t.cells.tolist() == [["1", "x"], ["3", "y"]]
    assert t.lines.tolist() == [2, 4]  # the blank line 3 is skipped but counted


# ------------------------------------------------------------------------------------------ NPY / NPZ


def test_npy_with_target_path(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(12, dtype=np.float64).reshape(3, 4))
    np.save(tmp_path / "y.npy", np.array(["b", "a", "b"]))
    ds = load(tmp_path, DataSource(path="x.npy", target_path="y.npy"), inputs=[InputInfo("x", (2, 2))],
              outputs=[OutputInfo("y", (2,), sparse=True)])
    assert ds.xs[0].shape == (3, 2, 2) and ds.xs[0].dtype == np.float32
    assert ds.ys[0].tolist() == [1, 0, 1] and ds.encoders["y"]["classes"] == ["a", "b"]
    err = data_error(tmp_path, DataSource(path="x.npy"), inputs=[InputInfo("x", (4,))])
    assert "target_path" in rendered(err)


def test_npy_shape_mismatch_names_both_shapes(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 3, 3), dtype=np.float32))
    err = data_error(tmp_path, DataSource(path="x.npy"), inputs=[InputInfo("img", (8, 8, 1))],
                     require_target=False)
    msg = rendered(err)
    assert "samples of shape (3, 3)" in msg and "expects (8, 8, 1)" in msg and "x.npy" in msg


def test_npy_nan_reported_with_sample_index(tmp_path):
    x = np.zeros((4, 2), dtype=np.float32)
    x[2, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    err = data_error(tmp_path, DataSource(path="x.npy"), require_target=False)
    assert "missing value (NaN)" in rendered(err) and "sample index 2" in rendered(err)


def test_npz_sample_count_mismatch(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 2)), y=np.zeros((4, 1)))
    err = data_error(tmp_path, "d.npz")
    assert "different numbers of samples" in rendered(err) and "'x' has 5" in rendered(err)
    assert "'y' has 4" in rendered(err) and "d.npz" in rendered(err)


def test_npz_named_arrays_and_missing_array(tmp_path):
    np.savez(tmp_path / "d.npz", left=np.zeros((3, 2)), right=np.ones((3, 4)), out=np.arange(3))
    ds = load(tmp_path, "d.npz", inputs=[InputInfo("left", (2,)), InputInfo("right", (4,))],
              outputs=[OutputInfo("out", (1,))])
    assert [x.shape for x in ds.xs] == [(3, 2), (3, 4)] and ds.ys[0].shape == (3, 1)
    err = data_error(tmp_path, DataSource(path="d.npz", features=["lefft", "right"]),
                     inputs=[InputInfo("left", (2,)), InputInfo("right", (4,))], outputs=[OutputInfo("out", (1,))])
    assert "no array 'lefft'" in rendered(err) and "did you mean 'left'" in rendered(err)


def test_npz_one_hot_targets_for_sparse_loss(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.eye(3))
    err = data_error(tmp_path, "d.npz", outputs=[OutputInfo("y", (3,), sparse=True)])
    assert "one-hot" in rendered(err) and "categorical_crossentropy" in rendered(err)
    ds = load(tmp_path, "d.npz", outputs=[OutputInfo("y", (3,), categorical=True)])
    assert ds.ys[0].shape == (3, 3)


def test_npz_object_array_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.array(["a", None], dtype=object))
    err = data_error(tmp_path, "d.npz", outputs=[OutputInfo("y", (2,), sparse=True)])
    assert "pickle" in rendered(err)


def test_mmap_npy(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    ds = load(tmp_path, DataSource(path="x.npy", mmap=True), require_target=False)
    assert isinstance(ds.xs[0], np.memmap)
    assert ds.xs[0][1:3].tolist() == [[2, 3], [4, 5]]
    ds = load(tmp_path, DataSource(path="x.npy"), require_target=False)
    assert not isinstance(ds.xs[0], np.memmap)
    import layerforge.data.table as table_mod

    monkeypatch.setattr(table_mod, "MMAP_THRESHOLD", 10)  # "big" file: mapped by default
    assert isinstance(load(tmp_path, DataSource(path="x.npy"), require_target=False).xs[0], np.memmap)
    assert not isinstance(load(tmp_path, DataSource(path="x.npy", mmap=False), require_target=False).xs[0],
                          np.memmap)
    # a float64 file for a float32 input stays mapped; batches come out as float32
    np.save(tmp_path / "x64.npy", np.arange(8, dtype=np.float64).reshape(4, 2))
    ds = load(tmp_path, DataSource(path="x64.npy", mmap=True), require_target=False)
    assert isinstance(ds.xs[0], LazyCast) and ds.xs[0].shape == (4, 2)
    batch = ds.xs[0][np.array([3, 1])]
    assert batch.dtype == np.float32 and batch.tolist() == [[6, 7], [2, 3]]
    assert ds.take([0]).xs[0].dtype == np.float32


# ------------------------------------------------------------------------------------------ predict / evaluate


def test_predict_without_target_column(tmp_path):
    write(tmp_path, "new.csv", "a,b\n1,2\n3,4\n")
    ds = load(tmp_path, DataSource(path="new.csv", target="y"), require_target=False)
    assert ds.ys is None and ds.xs[0].tolist() == [[1, 2], [3, 4]]
    # target present: ignored
    write(tmp_path, "lab.csv", "a,b,y\n1,2,cat\n3,4,dog\n")
    ds = load(tmp_path, DataSource(path="lab.csv", target="y"), require_target=False)
    assert ds.ys is None and ds.xs[0].tolist() == [[1, 2], [3, 4]]
    # no target given (default: last column) and headerless
    write(tmp_path, "nolab.csv", "1,2\n3,4\n")
    write(tmp_path, "withlab.csv", "1,2,0\n3,4,1\n")
    assert load(tmp_path, "nolab.csv", require_target=False).xs[0].tolist() == [[1, 2], [3, 4]]
    assert load(tmp_path, "withlab.csv", require_target=False).xs[0].tolist() == [[1, 2], [3, 4]]


def test_predict_selects_training_columns_by_name(tmp_path):
    write(tmp_path, "p.csv", "id,b,extra,a\n7,2,x,1\n8,4,y,3\n")
    ds = load(tmp_path, "p.csv", require_target=False, feature_names=["a", "b"])
    assert ds.xs[0].tolist() == [[1, 2], [3, 4]] and ds.feature_names == ["a", "b"]
    write(tmp_path, "q.csv", "id,b\n7,2\n")
    err = data_error(tmp_path, "q.csv", require_target=False, feature_names=["a", "b"])
    assert "lacks 'a'" in rendered(err)


def test_unseen_class_refused(tmp_path):
    write(tmp_path, "train.csv", "a,b,animal\n1,2,cat\n3,4,dog\n")
    out = [OutputInfo("animal", (2,), sparse=True)]
    train = load(tmp_path, DataSource(path="train.csv", target="animal"), outputs=out)
    saved = json.loads(json.dumps(train.encoders))
    write(tmp_path, "test.csv", "a,b,animal\n1,2,dog\n5,6,cta\n7,8,cta\n")
    err = data_error(tmp_path, DataSource(path="test.csv", target="animal"), outputs=out, encoders=saved)
    p = err.problems[0]
    assert p.line == 3 and "test.csv" in p.file
    assert "class 'cta'" in p.message and "not in the training data" in p.message and "did you mean 'cat'" in p.message
    assert "cat, dog" in p.expected
    # known classes map the same way even when the order of appearance differs
    write(tmp_path, "ok.csv", "a,b,animal\n1,2,dog\n5,6,cat\n")
    ds = load(tmp_path, DataSource(path="ok.csv", target="animal"), outputs=out, encoders=saved)
    assert ds.ys[0].tolist() == [1, 0]


def test_unseen_int_class_refused(tmp_path):
    np.savez(tmp_path / "tr.npz", x=np.zeros((3, 2)), y=np.array([0, 1, 2]))
    out = [OutputInfo("y", (3,), sparse=True)]
    enc = load(tmp_path, "tr.npz", outputs=out).encoders
    np.savez(tmp_path / "te.npz", x=np.zeros((2, 2)), y=np.array([1, 5]))
    msg = rendered(data_error(tmp_path, "te.npz", outputs=out, encoders=enc))
    assert "class 5" in msg and "sample index 1" in msg and "0, 1, 2" in msg


# ------------------------------------------------------------------------------------------ dataset helpers


def test_split_and_class_weights(tmp_path):
    import layerforge
    from layerforge.errors import ConfigError

    write(tmp_path, "c.csv", "a,b,y\n" + "".join(f"{i},{i},{'a' if i < 6 else 'b'}\n" for i in range(8)))
    ds = load(tmp_path, DataSource(path="c.csv", target="y"), outputs=[OutputInfo("y", (2,), sparse=True)])
    tr, va = ds.split(0.25)
    assert tr.n == 6 and va.n == 2 and va.xs[0][:, 0].tolist() == [6, 7]

    def class_weights(class_weight):  # the per-sample weights fit and evaluate use (api.Model._class_weights)
        model = layerforge.Model.from_yaml({
            "name": "cw", "input_shape": [2], "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}],
            "training": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "class_weight": class_weight},
            "data": {"train": {"path": str(tmp_path / "c.csv"), "target": "y"}}})
        data = model.load_data(tmp_path / "c.csv")
        model.encoders = data.encoders
        return model._class_weights(data)

    np.testing.assert_allclose(class_weights("balanced")[[0, 7]], [8 / (2 * 6), 8 / (2 * 2)], rtol=1e-6)
    np.testing.assert_allclose(class_weights({"b": 3.0})[[0, 7]], [1, 3])
    with pytest.raises(ConfigError) as info:
        class_weights({"B ": 2.0, "bb": 1})
    problem = info.value.problems[0]
    assert "class_weight names class 'B '" in problem.message and problem.expected == "a, b"


# ------------------------------------------------------------------------------------------ writing


def test_write_predictions_csv_labels_and_probabilities(tmp_path):
    enc = {"species": {"classes": ["setosa", "versicolor", "virginica"], "kind": "string"}}
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7]], dtype=np.float32)
    out = write_predictions(tmp_path / "preds.csv", [probs], ["species"], encoders=enc)
    lines = out.read_text().splitlines()
    assert lines[0] == "species,p_setosa,p_versicolor,p_virginica"
    assert lines[1].startswith("setosa,0.8,") and lines[2].startswith("virginica,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]  # no temp file left
    write_predictions(tmp_path / "labels.csv", probs, ["species"], encoders=enc, mode="labels")
    assert (tmp_path / "labels.csv").read_text().splitlines() == ["species", "setosa", "virginica"]
    # regression output with two values, plus a binary classifier with one sigmoid unit
    write_predictions(tmp_path / "multi.csv", [np.array([[1.5, 2.0]]), np.array([[0.75]])], ["v", "ok"],
                      encoders={"ok": {"classes": ["no", "yes"], "kind": "string"}})
    assert (tmp_path / "multi.csv").read_text().splitlines() == ["v_0,v_1,ok,ok_p_yes", "1.5,2,yes,0.75"]


def test_write_predictions_npy_npz(tmp_path):
    p = np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    write_predictions(tmp_path / "p.npy", [p], ["y"])
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), p)
    enc = {"y": {"classes": [3, 7], "kind": "int"}}
    write_predictions(tmp_path / "l.npy", [p], ["y"], encoders=enc, mode="labels")
    assert np.load(tmp_path / "l.npy").tolist() == [7, 3]
    write_predictions(tmp_path / "p.npz", [p, p[:, :1]], ["y", "z"], encoders=enc)
    with np.load(tmp_path / "p.npz") as z:
        assert sorted(z.files) == ["y", "y_labels", "z"]
    with pytest.raises(DataError, match="one array"):
        write_predictions(tmp_path / "two.npy", [p, p], ["a", "b"])
    with pytest.raises(DataError, match=r"\.csv"):
        write_predictions(tmp_path / "p.xlsx", [p], ["y"])
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "preds.csv"
    target.write_text("old\n")

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["preds.csv"]
