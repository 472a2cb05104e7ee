"""Every shipped config, trained one short epoch on tiny data, exports to ONNX and to Keras 3 and predicts the
same there as in layerforge; the CLI command, its options and its errors."""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from export_cases import assert_close, predict_all

os.environ.setdefault("KERAS_BACKEND", "numpy")  # see test_export_keras.py

import layerforge  # noqa: E402
from layerforge.interop import ExportError  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
# shipped configs a format cannot express, and why (README "Use a trained model elsewhere" lists them)
KERAS_EXCEPTIONS: dict = {"digits_convlstm.yaml": "ConvLSTM2D has no Keras converter yet",
                          "sunspots_transformer.yaml": "MultiHeadAttention has no Keras converter yet"}
ONNX_EXCEPTIONS: dict = {"digits_convlstm.yaml": "ConvLSTM2D has no ONNX converter yet",
                         "sunspots_transformer.yaml": "MultiHeadAttention has no ONNX converter yet"}


def _synthetic(model, n, rng):
    xs = []
    for inp in model.graph.inputs:
        shape = (n,) + tuple(6 if d is None else d for d in inp.shape)
        if inp.dtype.startswith("int"):
            xs.append(rng.integers(0, 20, size=shape).astype(inp.dtype))
        else:
            xs.append(rng.standard_normal(shape).astype(np.float32))
    ys = []
    for info in model._output_infos():
        shape = (n,) + tuple(6 if d is None else d for d in info.shape)
        if info.sparse:
            ys.append(rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int64))
        elif info.categorical:
            ys.append(np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], size=shape[:-1])])
        else:
            ys.append(rng.random(shape).astype(np.float32))
    return xs, ys


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name -> (model, test inputs): each config trained one epoch on 16 samples (its own data for iris)."""
    cache = {}

    def get(name):
        if name not in cache:
            model = layerforge.Model.from_yaml(CONFIG_DIR / name, seed=0)
            rng = np.random.default_rng(0)
            n = 2 * (model.graph.batch_size or 8)
            xs, ys = _synthetic(model, n, rng)
            if name == "iris.yaml":
                model.fit(epochs=1)
                xs = model.load_data(CONFIG_DIR.parent / "examples" / "data" / "iris.csv",
                                     require_target=False).xs
                xs = [x[:10] for x in xs]
            else:
                model.fit(xs if len(xs) > 1 else xs[0], ys if len(ys) > 1 else ys[0], epochs=1,
                          batch_size=model.graph.batch_size or 8)
                xs = [x[:model.graph.batch_size or 5] for x in xs]
            cache[name] = (model, xs)
        return cache[name]

    return get


def _rtol(model) -> float:
    recurrent = any(n.layer.type in ("LSTM", "GRU", "SimpleRNN", "Bidirectional") for n in model.graph.nodes)
    return 1e-4 if recurrent else 1e-5


@pytest.mark.parametrize("name", CONFIGS)
def test_config_onnx(name, trained):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (test extra)")
    ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (test extra)")
    from layerforge.interop.onnx_export import export_onnx

    model, xs = trained(name)
    if name in ONNX_EXCEPTIONS:
        with pytest.raises(ExportError):
            export_onnx(model)
        return
    proto = export_onnx(model)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == model.input_names
    assert [o.name for o in sess.get_outputs()] == model.output_names
    got = sess.run(None, dict(zip(model.input_names, xs)))
    for k, (g, w) in enumerate(zip(got, predict_all(model, xs))):
        assert_close(g, w, _rtol(model), f"{name} output {k}")


@pytest.mark.parametrize("name", CONFIGS)
def test_config_keras(name, trained, tmp_path):
    pytest.importorskip("h5py", reason="Keras export needs h5py")
    keras = pytest.importorskip("keras", reason="the Keras tests need Keras 3 (test extra)")
    from layerforge.interop.keras_export import export_keras

    model, xs = trained(name)
    path = tmp_path / "m.keras"
    if name in KERAS_EXCEPTIONS:
        with pytest.raises(ExportError, match="cannot be exported to Keras 3"):
            export_keras(model, path)
        return
    export_keras(model, path)
    km = keras.saving.load_model(str(path))
    outs = km(xs if len(xs) > 1 else xs[0], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    for k, (g, w) in enumerate(zip(outs, predict_all(model, xs))):
        assert_close(np.asarray(g), w, _rtol(model), f"{name} output {k}")


def test_classifier_labels_in_onnx_metadata(trained):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (test extra)")
    from layerforge.interop.onnx_export import export_onnx

    model, _ = trained("iris.yaml")
    meta = {p.key: p.value for p in export_onnx(model).metadata_props}
    assert json.loads(meta["class_labels"]) == {"species": ["setosa", "versicolor", "virginica"]}
    assert meta["classes"] == "setosa,versicolor,virginica"


def test_onnx_opsets_and_fixed_batch(trained):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (test extra)")
    ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (test extra)")
    from layerforge.interop.onnx_export import export_onnx

    model, xs = trained("seq_tagger.yaml")
    want = predict_all(model, xs)
    for opset in (13, 18, 21):
        proto = export_onnx(model, opset=opset)
        assert proto.opset_import[0].version == opset
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        assert_close(sess.run(None, dict(zip(model.input_names, xs)))[0], want[0], 1e-4, f"opset {opset}")
    proto = export_onnx(model, batch_size=len(xs[0]))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == len(xs[0])
    dynamic = export_onnx(model).graph.input[0].type.tensor_type.shape.dim
    assert dynamic[0].dim_param == "batch"


def test_unknown_layer_type_is_named(trained, monkeypatch):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (test extra)")
    from layerforge.interop import keras_export, onnx_export

    model, _ = trained("iris.yaml")
    monkeypatch.delitem(onnx_export.CONVERTERS, "Dense")
    with pytest.raises(ExportError, match=r"layer 'dense' \(Dense\) cannot be exported to ONNX"):
        onnx_export.export_onnx(model)
    monkeypatch.delitem(keras_export.SINGLE, "Dense")
    with pytest.raises(ExportError, match=r"\(Dense\) cannot be exported to Keras 3"):
        keras_export.export_keras(model)


# ---------------------------------------------------------------------- the command

@pytest.fixture(scope="module")
def run_dir(trained, tmp_path_factory):
    model, _ = trained("iris.yaml")
    return model.save(tmp_path_factory.mktemp("runs") / "iris")


def _cli(args):
    from typer.testing import CliRunner

    from layerforge.cli import app

    return CliRunner().invoke(app, args)


def test_cli_export_onnx_and_keras(run_dir, tmp_path):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (test extra)")
    pytest.importorskip("h5py", reason="Keras export needs h5py")
    out = tmp_path / "iris.onnx"
    res = _cli(["export", str(run_dir), "--format", "onnx", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0
    res = _cli(["export", str(run_dir), "--format", "onnx", "-o", str(out)])
    assert res.exit_code == 2 and "already exists" in res.output and "--force" in res.output
    res = _cli(["export", str(run_dir), "--format", "onnx", "-o", str(out), "--force", "--opset", "18"])
    assert res.exit_code == 0, res.output
    kpath = tmp_path / "iris.keras"
    res = _cli(["export", str(run_dir), "--format", "keras", "-o", str(kpath)])
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(kpath) as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]


def test_cli_export_errors(run_dir, tmp_path):
    res = _cli(["export", str(run_dir), "--format", "tflite", "-o", str(tmp_path / "m.tflite")])
    assert res.exit_code == 2 and "unknown export format" in res.output
    res = _cli(["export", str(run_dir), "--format", "keras", "-o", str(tmp_path / "m.h5")])
    assert res.exit_code == 2 and ".keras" in res.output
    res = _cli(["export", str(run_dir), "--format", "onnx", "-o", str(tmp_path / "m.onnx"), "--opset", "3"])
    assert res.exit_code == 2 and "opset" in res.output
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_names_the_layer_it_cannot_write(tmp_path):
    model = layerforge.Model.from_yaml({
        "name": "lam", "input_shape": [4], "layers": [{"type": "Dense", "units": 3},
                                                      {"type": "Lambda", "expression": "x[:, ::-1]",
                                                       "name": "total"}],
        "training": {"loss": "mse", "optimizer": "sgd"}}, seed=0)
    run = model.save(tmp_path / "run")
    res = _cli(["export", str(run), "--format", "keras", "-o", str(tmp_path / "m.keras")])
    assert res.exit_code == 2
    assert "layer 'total' (Lambda) cannot be exported to Keras 3" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "m.keras").exists()


def test_keras1_hard_sigmoid_outside_recurrent_layers(tmp_path):
    """Keras 1's hard sigmoid has no Keras 3 name: Dense / Activation with it become layer + affine + ReLU(1)."""
    keras = pytest.importorskip("keras", reason="the Keras tests need Keras 3 (test extra)")
    pytest.importorskip("h5py", reason="Keras export needs h5py")
    model = layerforge.Model.from_yaml({
        "name": "hs", "input_shape": [5, 3],
        "layers": [{"type": "Dense", "units": 4, "activation": "hard_sigmoid_keras1"},
                   {"type": "Activation", "activation": "hard_sigmoid_keras1"}],
        "training": {"loss": "mse", "optimizer": "sgd"}}, seed=0)
    x = np.random.default_rng(0).normal(0, 4, (3, 5, 3)).astype(np.float32)
    path = tmp_path / "hs.keras"
    model.export(path, "keras")
    got = np.asarray(keras.saving.load_model(str(path))(x, training=False))
    assert_close(got, predict_all(model, [x])[0], 1e-5, "hard_sigmoid_keras1")


def test_keras_fixed_batch_and_onnx_only_options(trained, tmp_path):
    pytest.importorskip("h5py", reason="Keras export needs h5py")
    model, _ = trained("iris.yaml")
    path = tmp_path / "b.keras"
    model.export(path, "keras", batch_size=4)
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    first = config["config"]["layers"][0]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_shape"] == [4, 4]
    with pytest.raises(ExportError, match="--opset applies to --format onnx only"):
        model.export(tmp_path / "c.keras", "keras", opset=17)
