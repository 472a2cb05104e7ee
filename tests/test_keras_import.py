"""`layerforge import`: Keras 1, 2 and 3 files -> config and run directory, outputs equal to Keras'.

Fixtures (tests/fixtures/keras_import/): Keras 3 files made by make_keras3.py (keras + jax), Keras 2 files by
make_keras2.py (tf-keras), Keras 1 files by make_keras1.py (Keras 1.2.2's file layout, outputs from a numpy
reference of the Keras 1 semantics). Each `<name>.npz` holds the inputs x0, x1, ... and Keras' outputs y0, y1, ...
"""

from __future__ import annotations

import json
import marshal
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from layerforge.cli import app

FIX = Path(__file__).parent / "fixtures" / "keras_import"
runner = CliRunner()

# (source, weights, expected-output file, relative tolerance, parameters Keras reports)
CASES = [
    ("k3_functional_multi.keras", None, "k3_functional_multi", 1e-4, 315),
    ("k3_functional_multi.json", "k3_functional_multi.weights.h5", "k3_functional_multi", 1e-4, 315),
    ("k3_sequential_nested.keras", None, "k3_sequential_nested", 1e-5, 386),
    ("k3_sequential_nested.h5", None, "k3_sequential_nested", 1e-5, 386),
    ("k3_recurrent.keras", None, "k3_recurrent", 1e-4, 482),
    ("k3_preprocessing.keras", None, "k3_preprocessing", 1e-5, None),  # Rescaling, Normalization -> Lambda
    ("k3_squeeze_excite.keras", None, "k3_squeeze_excite", 1e-5, None),  # broadcasting Multiply -> Lambda
    ("k3_ops.keras", None, "k3_ops", 1e-5, 38),  # keras.ops calls -> Lambda expressions
    ("k2_sequential_rnn.h5", None, "k2_sequential_rnn", 1e-4, 420),
    ("k2_sequential_rnn.json", "k2_sequential_rnn_weights.h5", "k2_sequential_rnn", 1e-4, 420),
    ("k2_functional.h5", None, "k2_functional", 1e-4, None),  # a shared layer: layerforge holds two copies
    ("k2_cnn.h5", None, "k2_cnn", 1e-5, 301),
    ("k2_cudnn.h5", None, "k2_cudnn", 1e-4, None),  # CuDNNLSTM counts two bias sets; LSTM one
    ("k2_shared_nested.h5", None, "k2_shared_nested", 1e-5, None),  # shared: one copy per call
    ("k2_td_sequential.h5", None, "k2_td_sequential", 1e-4, 82),
    ("k2_tf_ops.h5", None, "k2_tf_ops", 1e-5, 38),  # TFOpLambda -> Lambda expressions
    ("k1_cnn_th.h5", None, "k1_cnn_th", 1e-5, 103),
    ("k2_theano_th.h5", None, "k2_theano_th", 1e-5, 91),
    ("k1_merge.h5", None, "k1_merge", 1e-5, 38),
    ("k1_nested.h5", None, "k1_nested", 1e-5, 47),
    ("k1_functional_deconv.h5", None, "k1_functional_deconv", 1e-5, 353),
    ("k1_recurrent.json", "k1_recurrent_weights.h5", "k1_recurrent", 1e-4, 204),
    ("k1_keras10.json", "k1_keras10_weights.h5", "k1_keras10", 1e-5, 126),
]


def _expected(name):
    d = np.load(FIX / f"{name}.npz")
    xs = [d[f"x{i}"] for i in range(sum(k.startswith("x") for k in d.files))]
    ys = [d[f"y{i}"] for i in range(sum(k.startswith("y") for k in d.files))]
    return xs, ys


def _assert_close(out, ys, rtol):
    out = out if isinstance(out, list) else [out]
    assert len(out) == len(ys)
    for a, b in zip(out, ys):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.abs(b).max()))


@pytest.mark.parametrize("source,weights,npz,rtol,params", CASES, ids=[c[0] for c in CASES])
def test_import_gives_the_outputs_keras_gave(tmp_path, source, weights, npz, rtol, params):
    import layerforge
    from layerforge.interop.keras_import import import_keras

    out = tmp_path / "run"
    result = import_keras(FIX / source, out, weights=FIX / weights if weights else None)
    assert result.with_weights
    if params is not None:
        assert result.total_params == params
    xs, ys = _expected(npz)
    model = layerforge.load(out)
    _assert_close(model.predict(xs if len(xs) > 1 else xs[0]), ys, rtol)


def test_lambda_needs_an_expression_and_never_runs_bytecode(tmp_path, monkeypatch):
    import layerforge

    out = tmp_path / "run"
    res = runner.invoke(app, ["import", str(FIX / "k3_lambda.keras"), "-o", str(out), "--lambda", "affine=x * 2 + 1"])
    assert res.exit_code == 0, res.output
    xs, ys = _expected("k3_lambda")
    _assert_close(layerforge.load(out).predict(xs[0]), ys, 1e-5)

    def refuse(*_a, **_k):
        raise AssertionError("bytecode must never be unmarshalled")

    monkeypatch.setattr(marshal, "loads", refuse)  # every module the import needs is loaded by now
    out2 = tmp_path / "run2"
    res = runner.invoke(app, ["import", str(FIX / "k3_lambda.keras"), "-o", str(out2)])
    assert res.exit_code == 2, res.output
    assert "'affine' (Lambda) at config.layers[2]" in res.output and "--lambda affine=" in res.output
    assert not out2.exists()
    res = runner.invoke(app, ["import", str(FIX / "k3_lambda.keras"), "-o", str(out2), "--lambda", "nope=x"])
    assert res.exit_code == 2 and "no Lambda layer named 'nope'" in res.output and "affine" in res.output


def test_every_unsupported_layer_is_listed(tmp_path):
    model = json.loads((FIX / "k2_sequential_rnn.json").read_text())
    layers = model["config"]["layers"]
    layers.insert(2, {"class_name": "MyAttention", "config": {"name": "my_att", "units": 3}})
    layers.insert(4, {"class_name": "Lambda", "config": {"name": "scale", "function": ["4wEAAAA...", None, None],
                                                         "function_type": "lambda", "output_shape": None}})
    src = tmp_path / "model.json"
    src.write_text(json.dumps(model))
    res = runner.invoke(app, ["import", str(src), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "'my_att' (MyAttention) at config.layers[2]" in res.output
    assert "'scale' (Lambda) at config.layers[4]" in res.output
    assert "2 layers cannot be imported" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_cli_import_then_predict_evaluate_summary(tmp_path):
    import layerforge

    out = tmp_path / "cnn"
    res = runner.invoke(app, ["import", str(FIX / "k2_cnn.h5"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert {"config.yaml", "weights.safetensors", "schema.json"} <= {p.name for p in out.iterdir()}
    res = runner.invoke(app, ["summary", str(out / "config.yaml"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["total_params"] == 301
    xs, ys = _expected("k2_cnn")
    np.save(tmp_path / "x.npy", xs[0])
    res = runner.invoke(app, ["predict", str(out), "--data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    pred = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(pred, ys[0], rtol=1e-5, atol=1e-6)
    np.savez(tmp_path / "xy.npz", x=xs[0], y=ys[0])
    res = runner.invoke(app, ["evaluate", str(out), "--data", str(tmp_path / "xy.npz"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["loss"] == pytest.approx(0.0, abs=1e-9)  # mse against Keras' own outputs
    assert layerforge.load(out).predict(xs[0]).shape == ys[0].shape
    # an existing OUT is never replaced silently
    res = runner.invoke(app, ["import", str(FIX / "k2_cnn.h5"), "-o", str(out)])
    assert res.exit_code == 2 and "--force" in res.output
    assert runner.invoke(app, ["import", str(FIX / "k2_cnn.h5"), "-o", str(out), "--force"]).exit_code == 0


def test_import_help_shows_an_example():
    res = runner.invoke(app, ["import", "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output and "layerforge import" in res.output


def _config(path: Path) -> tuple[str, dict]:
    text = path.read_text()
    return text, yaml.safe_load(text)


def test_header_and_semantic_choices(tmp_path):
    from layerforge.interop.keras_import import import_keras

    import_keras(FIX / "k1_cnn_th.h5", tmp_path / "th")
    text, cfg = _config(tmp_path / "th" / "config.yaml")
    assert text.startswith("# Imported by `layerforge import` from k1_cnn_th.h5")
    assert "# Keras 1.2.2, backend theano" in text
    assert "assumed theano" in text and "flipped" in text and "running_std holds the moving variance" in text
    assert cfg["input_shape"] == [2, 6, 5] and "inputs" not in cfg  # a chain: no inputs: lists
    assert cfg["layers"][0]["data_format"] == "channels_first"
    assert cfg["layers"][0]["name"] == "convolution2d_1"
    assert cfg["layers"][0]["kernel_regularizer"] == {"l1": 0.0, "l2": 0.01}
    assert cfg["layers"][0]["kernel_constraint"] == {"type": "max_norm", "max_value": 3}
    assert cfg["training"] == {"loss": "categorical_crossentropy", "metrics": ["accuracy"],
                               "optimizer": {"type": "rmsprop", "learning_rate": 0.001, "epsilon": 1e-08}}

    import_keras(FIX / "k2_sequential_rnn.h5", tmp_path / "rnn")
    text, cfg = _config(tmp_path / "rnn" / "config.yaml")
    assert "hard_sigmoid -> hard_sigmoid_keras1" in text and "GRU reset_after: false" in text
    gru = next(layer for layer in cfg["layers"] if layer["type"] == "GRU")
    assert gru["reset_after"] is False and gru["recurrent_activation"] == "hard_sigmoid_keras1"
    assert cfg["training"]["optimizer"] == {"type": "sgd", "learning_rate": 0.02, "momentum": 0.9}

    import_keras(FIX / "k1_keras10.json", tmp_path / "k10", weights=FIX / "k1_keras10_weights.h5")
    text, cfg = _config(tmp_path / "k10" / "config.yaml")
    assert "Keras 1.0.0-1.0.5 BatchNormalization" in text
    assert cfg["training"]["optimizer"] == {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}
    assert cfg["layers"][0] == {"type": "TimeDistributed", "name": "timedistributeddense_1",
                                "layer": {"type": "Dense", "units": 4, "activation": "tanh"}}

    import_keras(FIX / "k3_functional_multi.keras", tmp_path / "multi")
    _, cfg = _config(tmp_path / "multi" / "config.yaml")
    assert [i["name"] for i in cfg["inputs"]] == ["seq", "vec"]
    assert cfg["outputs"] == ["out_a", "out_b"]
    bi = next(layer for layer in cfg["layers"] if layer["name"] == "bi")
    assert bi["layer"]["type"] == "LSTM" and bi["backward_layer"]["type"] == "GRU"


def test_architecture_only_and_json_in_a_json_string(tmp_path):
    text = (FIX / "k2_sequential_rnn.json").read_text()
    src = tmp_path / "wrapped.json"
    src.write_text(json.dumps(text))  # some tools wrote the JSON as a JSON string
    res = runner.invoke(app, ["import", str(src), "-o", str(tmp_path / "arch")])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "arch").iterdir()] == ["config.yaml"]
    res = runner.invoke(app, ["summary", str(tmp_path / "arch" / "config.yaml"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["total_params"] == 420


def test_fine_tune_from_an_imported_run(tmp_path):
    import layerforge
    from layerforge.interop.keras_import import import_keras

    run = tmp_path / "imported"
    import_keras(FIX / "k1_keras10.json", run, weights=FIX / "k1_keras10_weights.h5")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["layers"][0]["trainable"] = False
    cfg["layers"][-1] = {"type": "Dense", "name": "new_head", "units": 2, "activation": "softmax"}
    cfg["training"].update(epochs=1, batch_size=4, loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((12, 5, 2)).astype("float32"), y=rng.integers(0, 2, 12))
    cfg["data"] = {"train": {"path": "d.npz"}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = runner.invoke(app, ["train", str(tmp_path / "ft.yaml"), "--init-from", str(run), "-o", str(tmp_path / "ft"),
                              "-q"])
    assert res.exit_code == 0, res.output
    before, after = layerforge.load(run).get_weights(), layerforge.load(tmp_path / "ft").get_weights()
    for a, b in zip(before["timedistributeddense_1"], after["timedistributeddense_1"]):
        np.testing.assert_array_equal(a, b)  # frozen
    assert not np.array_equal(before["convolution1d_1"][0], after["convolution1d_1"][0])  # fine-tuned
    # the config field does the same; a changed shape is a clear error
    cfg["training"]["init_from"] = "imported"
    cfg["layers"][1]["filters"] = 5
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = runner.invoke(app, ["train", str(tmp_path / "bad.yaml"), "-o", str(tmp_path / "bad"), "-q"])
    assert res.exit_code == 2
    assert "layer 'convolution1d_1': weight kernel has shape (2, 4, 3) in the run, the model needs (2, 4, 5)" \
        in res.output


def test_keras1_layers_that_saved_no_dim_ordering_follow_the_model(tmp_path):
    from layerforge.interop.keras_import import import_keras

    conv = {"name": "c", "trainable": True, "nb_filter": 4, "nb_row": 3, "nb_col": 3, "init": "glorot_uniform",
            "activation": "relu", "border_mode": "valid", "subsample": [1, 1], "dim_ordering": "th",
            "W_regularizer": None, "b_regularizer": None, "activity_regularizer": None, "W_constraint": None,
            "b_constraint": None, "bias": True}
    model = {"class_name": "Sequential", "keras_version": "1.2.2", "config": [
        {"class_name": "ZeroPadding2D", "config": {"name": "zp", "trainable": True, "padding": [1, 1],
                                                   "batch_input_shape": [None, 3, 8, 8], "input_dtype": "float32"}},
        {"class_name": "Convolution2D", "config": conv},
        {"class_name": "UpSampling2D", "config": {"name": "up", "trainable": True, "size": [2, 2]}}]}
    (tmp_path / "m.json").write_text(json.dumps(model))
    result = import_keras(tmp_path / "m.json", tmp_path / "out")
    assert not result.with_weights and result.total_params == 112
    layers = {entry["name"]: entry for entry in result.config["layers"]}
    assert layers["zp"]["data_format"] == layers["up"]["data_format"] == "channels_first"


def test_relu_layers_import_with_or_without_a_relu_type(tmp_path):
    from layerforge.interop.keras_import import import_keras

    dense = {"name": "d", "units": 3, "activation": "linear", "use_bias": True, "batch_input_shape": [None, 4]}
    model = {"class_name": "Sequential", "keras_version": "2.2.4", "backend": "tensorflow",
             "config": {"name": "m", "layers": [{"class_name": "Dense", "config": dense},
                                                {"class_name": "ReLU", "config": {"name": "r", "max_value": 6.0}}]}}
    (tmp_path / "m.json").write_text(json.dumps(model))
    result = import_keras(tmp_path / "m.json", tmp_path / "out")
    relu = result.config["layers"][1]
    assert relu["type"] == "ReLU" or relu == {"type": "Activation", "name": "r", "activation": "relu6"}
