"""The example configs in configs/: each validates, builds and summarises; the Keras reference models
have the reference parameter counts and shapes (keras-layers.md §11).

A config is skipped only while one of its layer types is not in the registry yet; the skip is computed
from the registry, so it disappears by itself when the layer family lands.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from layerforge.config import load_config
from layerforge.graph import build_graph
from layerforge.layers import TYPE_NAMES, load_all
from layerforge.layers.documented import ALL_DOCUMENTED
from layerforge.summary import summary_data

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
SCHEMA_LINE = "# yaml-language-server: $schema=layerforge.schema.json"


def raw_config(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def layer_types(layers) -> set[str]:
    """Every `type:` in a raw layer list, including layers nested in wrappers (`layer:`)."""
    found: set[str] = set()
    for layer in layers or []:
        while isinstance(layer, dict):
            if isinstance(layer.get("type"), str):
                found.add(layer["type"])
            layer = layer.get("layer")
    return found


def unregistered_types(path: Path) -> list[str]:
    load_all()
    return sorted(t for t in layer_types(raw_config(path).get("layers")) if t not in TYPE_NAMES)


def skip_if_unregistered(path: Path) -> None:
    missing = unregistered_types(path)
    if missing:
        pytest.skip(f"{path.name}: layer type(s) not registered yet: {', '.join(missing)}")


def build(name: str):
    path = CONFIG_DIR / name
    skip_if_unregistered(path)
    spec = load_config(path)
    graph = build_graph(spec)
    return spec, graph, summary_data(graph)


def test_there_are_at_least_eight_example_models():
    assert len(CONFIGS) >= 9, [p.name for p in CONFIGS]  # iris.yaml plus at least eight more


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_header_and_sections(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == SCHEMA_LINE
    assert lines[1].startswith("# ") and len(lines[1]) > 10, "second line: a comment saying what the model is"
    raw = raw_config(path)
    assert isinstance(raw.get("name"), str) and raw["name"]
    assert isinstance(raw.get("seed"), int)
    assert isinstance(raw.get("training"), dict) and raw["training"], "an explicit training: section"
    for part, source in (raw.get("data") or {}).items():
        target = (path.parent / (source if isinstance(source, str) else source["path"])).resolve()
        image_folder = isinstance(source, dict) and source.get("format") == "image_folder"
        assert target.is_file() or (image_folder and target.is_dir()), \
            f"data.{part} names a file that the repository does not ship: {target}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_summarises(path):
    skip_if_unregistered(path)
    spec = load_config(path)
    graph = build_graph(spec)
    data = summary_data(graph)
    raw = raw_config(path)
    assert data["name"] == raw["name"]
    assert len(data["layers"]) == len(raw["layers"])
    assert data["total_params"] == graph.total_params > 0
    assert data["trainable_params"] + data["non_trainable_params"] == data["total_params"]
    assert sum(layer["params"] for layer in data["layers"]) == data["total_params"]
    assert data["total_flops"] > 0
    assert all(isinstance(layer["flops"], int) and layer["flops"] >= 0 for layer in data["layers"])
    # the resolved config (what a run directory saves) uses canonical types and validates again
    canonical = spec.canonical_dict()
    assert all(layer["type"] in TYPE_NAMES and TYPE_NAMES[layer["type"]][0] == layer["type"]
               for layer in canonical["layers"])
    again = build_graph(load_config(canonical))
    assert again.total_params == graph.total_params
    assert again.output_shapes == graph.output_shapes


# keras-layers.md §11.1 (M3, M5, M6) and the Keras examples' model.summary() figures
REFERENCE = {
    "mnist_cnn.yaml": {
        "total": 1_199_882, "output": (None, 10),
        "params": {"conv_1": 320, "conv_2": 18_496, "dense_1": 1_179_776, "digit": 1_290},
        "shapes": {"conv_1": (None, 26, 26, 32), "conv_2": (None, 24, 24, 64), "max_pooling2d": (None, 12, 12, 64),
                   "flatten": (None, 9216)},
    },
    "imdb_lstm.yaml": {
        "total": 2_691_713, "output": (None, 1),
        "params": {"embedding": 2_560_000, "lstm": 131_584, "sentiment": 129},
        "shapes": {"embedding": (None, 80, 128), "lstm": (None, 128)},
    },
    "imdb_cnn.yaml": {
        "total": 350_751, "output": (None, 1),
        "params": {"embedding": 250_000, "conv": 37_750, "hidden": 62_750, "logit": 251},
        "shapes": {"embedding": (None, 400, 50), "conv": (None, 398, 250), "global_max_pooling1d": (None, 250)},
    },
    "mlp.yaml": {  # Keras mnist_mlp.py
        "total": 669_706, "output": (None, 10),
        "params": {"hidden_1": 401_920, "hidden_2": 262_656, "digit": 5_130},
        "shapes": {"hidden_1": (None, 512)},
    },
    "two_input_merge.yaml": {  # §11.5: two Dense(32) branches on (16,) inputs = 2 x 544; concat -> 64
        "total": 3_201, "output": (None, 1),
        "params": {"query_dense": 544, "document_dense": 544, "joined": 0, "hidden": 2_080, "residual": 0},
        "shapes": {"joined": (None, 64), "residual": (None, 32)},
    },
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_parameter_counts(name):
    ref = REFERENCE[name]
    _, graph, data = build(name)
    assert data["total_params"] == ref["total"]
    assert data["trainable_params"] == ref["total"] and data["non_trainable_params"] == 0
    assert [(None, *s) for s in graph.output_shapes] == [ref["output"]]
    by_name = {layer["name"]: layer for layer in data["layers"]}
    for layer, params in ref["params"].items():
        assert by_name[layer]["params"] == params, layer
    for layer, shape in ref["shapes"].items():
        assert (None, *by_name[layer]["output_shape"]) == shape, layer


@pytest.mark.parametrize("name", ["imdb_lstm.yaml", "imdb_gru.yaml", "imdb_cnn.yaml", "seq_tagger.yaml"])
def test_text_models_take_integer_word_indices(name):
    _, _, data = build(name)
    assert [i["dtype"] for i in data["inputs"]] == ["int32"]


def test_imdb_gru_uses_keras3_reset_after():
    _, _, data = build("imdb_gru.yaml")
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert by_name["gru"]["params"] == 3 * (128 * 128 + 128 * 128) + 2 * 3 * 128  # bias (2, 384)
    assert data["total_params"] == 2_659_201


def test_seq_tagger_shapes():
    _, _, data = build("seq_tagger.yaml")
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert data["inputs"][0]["shape"] == [None]
    assert by_name["context"]["output_shape"] == [None, 128]  # variable length, 2 x 64 (concat)
    assert by_name["context"]["params"] == 2 * 4 * (64 * 64 + 64 * 64 + 64)
    assert by_name["tags"]["output_shape"] == [None, 17]
    assert by_name["tags"]["params"] == 128 * 17 + 17


def test_conv_autoencoder_reconstructs_its_input_shape():
    spec, graph, data = build("conv_autoencoder.yaml")
    assert graph.output_shapes == [graph.inputs[0].shape] == [(8, 8, 1)]
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert by_name["code"]["output_shape"] == [2, 2, 8]
    assert by_name["decode_1"]["type"] == "Conv2DTranspose"  # written as Deconvolution2D
    assert by_name["decode_1"]["output_shape"] == [4, 4, 8]
    src = spec.config.data.train
    assert src.features == ["x"] and src.target == "x"  # the target is the input itself
    assert spec.config.training.loss == {"type": "mean_squared_error"}


# Modern parameter names that Keras 1 spelled differently (Keras 1 pooling layers already said pool_size
# and strides, so those two are not listed).
MODERN_ONLY = {"units", "filters", "kernel_size", "padding", "data_format", "dilation_rate", "use_bias", "rate",
               "kernel_initializer", "kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint",
               "recurrent_initializer", "recurrent_regularizer", "recurrent_dropout", "stddev"}


def test_keras1_names_config_uses_only_keras1_spelling():
    raw = raw_config(CONFIG_DIR / "keras1_names.yaml")
    assert layer_types(raw["layers"]) <= set(ALL_DOCUMENTED)
    assert "Convolution2D" in layer_types(raw["layers"])
    for i, layer in enumerate(raw["layers"]):
        assert not (set(layer) & MODERN_ONLY), f"layers[{i}] uses modern names {set(layer) & MODERN_ONLY}"
    assert "input_shape" in raw["layers"][0] and "input_shape" not in raw and "inputs" not in raw
    assert "lr" in raw["training"]["optimizer"] and "learning_rate" not in raw["training"]["optimizer"]


def test_keras1_names_config_resolves_to_modern_names():
    spec, graph, data = build("keras1_names.yaml")
    layers = spec.canonical_dict()["layers"]
    conv = layers[0]
    assert conv["type"] == "Conv2D" and conv["filters"] == 16 and conv["padding"] == "same"
    assert conv["kernel_size"] in (3, [3, 3])
    assert conv["strides"] in (1, [1, 1]) and conv["data_format"] == "channels_last"
    assert conv["kernel_initializer"] == "he_normal"
    assert layers[2]["type"] == "MaxPooling2D"
    assert layers[3]["type"] == "Dropout" and layers[3]["rate"] == 0.25
    dense = layers[5]
    assert dense["units"] == 64 and dense["kernel_regularizer"] == {"l1": 0.0, "l2": 0.0001}
    assert spec.config.training.optimizer["learning_rate"] == 0.05
    assert spec.config.training.metrics == ["accuracy"]  # Keras 1 "acc"
    for layer in layers:
        assert not {"nb_filter", "nb_row", "nb_col", "border_mode", "subsample", "dim_ordering", "init",
                    "output_dim", "W_regularizer", "p"} & set(layer)
    assert graph.output_shapes == [(10,)]
    assert data["layers"][1]["output_shape"] == [6, 6, 32]


@pytest.mark.parametrize("path", [p for p in CONFIGS if (raw_config(p).get("data") or {}).get("train")],
                         ids=lambda p: p.name)
def test_shipped_data_fits_the_model(path):
    """The `data.train` file of each config loads and fits the model's inputs and outputs."""
    from layerforge.api import Model

    skip_if_unregistered(path)
    spec = load_config(path)
    model = Model(spec, build_graph(spec))
    ds = model.load_data(spec.config.data.train)
    assert ds.n > 100
    assert len(ds.xs) == len(spec.config.inputs or [1]) and len(ds.ys) == len(model.graph.outputs)
    if path.name == "conv_autoencoder.yaml":
        assert ds.ys[0].shape == ds.xs[0].shape == (ds.n, 8, 8, 1)
        assert (ds.ys[0] == ds.xs[0]).all()


@pytest.fixture(scope="module")
def json_schema():
    from layerforge.schema import config_schema

    return config_schema()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_matches_json_schema(path, json_schema):
    """What the `# yaml-language-server: $schema=...` header promises: the editor finds no error."""
    jsonschema = pytest.importorskip("jsonschema")
    skip_if_unregistered(path)
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in jsonschema.Draft202012Validator(json_schema).iter_errors(raw_config(path))]
    assert not errors, errors


def test_shipped_schema_is_current():
    """configs/layerforge.schema.json (what the configs' header points editors at) equals `layerforge schema`."""
    import json

    from layerforge.schema import config_schema

    shipped = json.loads((CONFIG_DIR / "layerforge.schema.json").read_text())
    assert shipped == json.loads(json.dumps(config_schema())), \
        "regenerate it: layerforge schema -o configs/layerforge.schema.json"
