"""The layers beyond the Keras 1 list against Keras 3: forward outputs with copied weights (float32, 1e-5
relative), from the fixtures made once by tests/fixtures/keras_layers/make_keras_layers.py; plus the properties a
fixture cannot show (whole feature maps dropped, InputLayer declarations, the masked softmax)."""

import json
from pathlib import Path

import numpy as np
import pytest

from layerforge.testing import build_layer

FIXTURES = Path(__file__).parent / "fixtures" / "keras_layers" / "keras_layers.npz"
DATA = np.load(FIXTURES)
CASES = json.loads(DATA["manifest"].tobytes())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_forward_matches_keras3(case):
    name = case["name"]
    xs = [DATA[f"{name}/x{i}"] for i in range(case["inputs"])]
    masks = [DATA[f"{name}/mask{i}"] for i in range(case["masks"])]
    weights = [DATA[f"{name}/w{i}"] for i in range(case["weights"])]
    expected = [DATA[f"{name}/y{i}"] for i in range(case["outputs"])]
    multi = case["config"]["type"] in ("MultiHeadAttention", "Attention", "AdditiveAttention")
    shapes = [tuple(x.shape[1:]) for x in xs]
    built = build_layer(case["config"], shapes if multi else shapes[0], dtype=np.float32)
    specs = built.layer.param_specs(shapes if multi else shapes[0])
    assert [s.shape for s in specs] == [w.shape for w in weights], "Keras weight layout"
    params = {s.name: w for s, w in zip(specs, weights)}
    mask = None
    if masks:
        mask = masks if multi else masks[0]
        if multi and len(masks) < len(xs):
            mask = masks + [masks[-1]]
    y, _ = built.layer.forward(params, xs if multi else xs[0], training=False, mask=mask)
    ys = y if isinstance(y, list) else [y]
    assert len(ys) == len(expected)
    for got, want in zip(ys, expected):
        assert got.dtype == np.float32
        assert got.shape == want.shape
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("config,shape,axes", [
    ({"type": "SpatialDropout1D", "rate": 0.5}, (6, 8), (1,)),
    ({"type": "SpatialDropout1D", "rate": 0.5, "data_format": "channels_first"}, (8, 6), (2,)),
    ({"type": "SpatialDropout2D", "rate": 0.5}, (4, 4, 8), (1, 2)),
    ({"type": "SpatialDropout2D", "rate": 0.5, "data_format": "channels_first"}, (8, 4, 4), (2, 3)),
    ({"type": "SpatialDropout3D", "rate": 0.5}, (2, 3, 3, 8), (1, 2, 3)),
])
def test_spatial_dropout_drops_whole_feature_maps(config, shape, axes):
    built = build_layer(config, shape, dtype=np.float32)
    x = np.ones((4,) + shape, np.float32)
    y, _ = built.layer.forward({}, x, training=True, rng=np.random.default_rng(0))
    # constant along the spatial axes: each (sample, channel) map is all 0 or all 2
    assert np.all(y.max(axis=axes) == y.min(axis=axes))
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.0 in y and 2.0 in y
    y_inf, _ = built.layer.forward({}, x, training=False)
    assert np.array_equal(y_inf, x)


def test_input_layer_declares_the_model_input():
    from layerforge.config.model import load_config
    from layerforge.graph import build_graph

    spec = load_config({"layers": [{"type": "InputLayer", "batch_shape": [None, 6], "dtype": "float64",
                                    "name": "features"},
                                   {"type": "Dense", "units": 2}]})
    graph = build_graph(spec)
    assert graph.inputs[0].shape == (6,) and graph.inputs[0].dtype == "float64"
    assert graph.output_shapes == [(2,)]
    keras2 = load_config({"layers": [{"type": "InputLayer", "batch_input_shape": [8, 3, 2]},
                                     {"type": "LSTM", "units": 2, "stateful": True}]})
    assert build_graph(keras2).batch_size == 8


def test_input_layer_refuses_sparse_and_a_missing_shape():
    from layerforge.errors import ConfigError

    with pytest.raises(ConfigError, match="sparse"):
        build_layer({"type": "InputLayer", "shape": [3], "sparse": True}, (3,))
    with pytest.raises(ConfigError, match="declares a shape"):
        build_layer({"type": "Input"}, (3,))


def test_mha_fully_masked_query_rows_give_zero_attention():
    built = build_layer({"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2,
                         "return_attention_scores": True}, [(3, 4), (3, 4)])
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))]
    qmask = np.array([[True, False, True], [True, True, True]])
    (_, scores), _ = built.layer.forward(built.params, x, mask=[qmask, None])
    assert np.all(scores[0, :, 1] == 0)
    np.testing.assert_allclose(scores[0, :, 0].sum(axis=-1), 1.0)


def test_convlstm_masked_steps_keep_the_state():
    """Keras' RNN masking rule (checked by hand: Keras 3.15's jax backend mis-broadcasts ConvLSTM2D masks): at a
    masked step the state and the output stay those of the previous step; other samples are unaffected."""
    config = {"type": "ConvLSTM2D", "filters": 2, "kernel_size": 2, "padding": "same", "return_sequences": True}
    built = build_layer(config, (4, 3, 3, 1), dtype=np.float64, seed=3)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 3, 3, 1))
    mask = np.array([[True, False, True, True], [True, True, True, True], [True, True, False, False]])
    y, _ = built.layer.forward(built.params, x, mask=mask)
    full, _ = built.layer.forward(built.params, x)
    np.testing.assert_array_equal(y[1], full[1])
    np.testing.assert_array_equal(y[0, 1], y[0, 0])
    np.testing.assert_array_equal(y[2, 3], y[2, 1])
    # sample 0 without its masked step: same result as the sequence with that step removed
    short, _ = built.layer.forward(built.params, x[:1, [0, 2, 3]])
    np.testing.assert_allclose(y[0, 3], short[0, 2], rtol=1e-12)


def test_input_layers_declare_a_functional_models_inputs():
    """As in a Keras functional model file: each InputLayer is a model input under its own name."""
    from layerforge.config.model import load_config
    from layerforge.graph import build_graph

    spec = load_config({"layers": [
        {"type": "InputLayer", "batch_shape": [None, 5, 4], "name": "query_tokens"},
        {"type": "InputLayer", "shape": [7, 4], "name": "context"},
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 3, "inputs": ["query_tokens", "context"],
         "name": "attend"},
        {"type": "GlobalAveragePooling1D"},
        {"type": "Dense", "units": 3}]})
    graph = build_graph(spec)
    assert [(i.name, i.shape) for i in graph.inputs] == [("query_tokens", (5, 4)), ("context", (7, 4))]
    assert [n.name for n in graph.nodes] == ["attend", "global_average_pooling1d", "dense"]
    assert graph.output_shapes == [(3,)]
    unnamed = build_graph(load_config({"layers": [{"type": "Input", "shape": [3]}, {"type": "Dense", "units": 1}]}))
    assert [i.name for i in unnamed.inputs] == ["input"] and len(unnamed.nodes) == 1


def test_model_with_input_layers_trains_and_predicts():
    import layerforge

    model = layerforge.Model.from_yaml({"seed": 0, "layers": [
        {"type": "InputLayer", "batch_shape": [None, 6, 4], "name": "seq"},
        {"type": "LayerNormalization"},
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 1}], "training": {"loss": "mse", "optimizer": "adam"}})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6, 4)).astype(np.float32)
    y = x.sum(axis=(1, 2))[:, None]
    model.fit(x, y, epochs=2, batch_size=8)
    assert model.predict(x).shape == (16, 1)
