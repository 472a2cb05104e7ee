"""Embedding: lookup, masks, index validation, scatter-add gradient, Keras 1 names and row dropout."""

import numpy as np
import pytest

from layerforge.config.model import parse_layer
from layerforge.config.source import SourceMap
from layerforge.errors import DataError, ShapeError
from layerforge.testing import build_layer, check_layer_gradients


def _parse(cfg):
    problems = []
    out = parse_layer(dict(cfg), (), SourceMap(), problems)
    return out, problems


def test_lookup_shapes_and_mask():
    b = build_layer({"type": "Embedding", "input_dim": 11, "output_dim": 3, "mask_zero": True}, (6,))
    x = np.array([[0, 1, 10, 4, 0, 2], [3, 3, 0, 0, 0, 0]])
    y, _ = b.layer.forward(b.params, x)
    np.testing.assert_array_equal(y, b.params["embeddings"][x])
    np.testing.assert_array_equal(b.layer.compute_mask(x, None), x != 0)
    assert b.layer.compute_mask(x, np.ones((2, 6), bool)) is not None
    plain = build_layer({"type": "Embedding", "input_dim": 11, "output_dim": 3}, (6,))
    assert plain.layer.compute_mask(x, np.ones((2, 6), bool)) is None
    assert build_layer({"type": "Embedding", "input_dim": 5, "output_dim": 2, "input_length": 7},
                       (None,)).output_shape == (7, 2)
    f32 = build_layer({"type": "Embedding", "input_dim": 5, "output_dim": 2}, (3,), dtype=np.float32)
    assert f32.layer.forward(f32.params, np.array([[1, 2, 3]], np.int32))[0].dtype == np.float32


def test_out_of_range_index_is_a_data_error():
    b = build_layer({"type": "Embedding", "input_dim": 10, "output_dim": 2}, (3,))
    with pytest.raises(DataError) as err:
        b.layer.forward(b.params, np.array([[1, 2, 3], [4, 5, 6], [7, 12, 9]]))
    text = str(err.value)
    assert "sample 2" in text and "index 12" in text and "0..9" in text and "input_dim" in text
    with pytest.raises(DataError, match="sample 0 contains index -1"):
        b.layer.forward(b.params, np.array([[-1, 2, 3]]))
    with pytest.raises(DataError, match="integer"):
        b.layer.forward(b.params, np.array([[1.5, 2, 3]]))
    y, _ = b.layer.forward(b.params, np.array([[1.0, 2.0, 3.0]]))  # integral floats are accepted
    assert y.shape == (1, 3, 2)


def test_backward_scatter_adds_repeated_indices():
    b = build_layer({"type": "Embedding", "input_dim": 6, "output_dim": 4}, (5,))
    rng = np.random.default_rng(0)
    x = np.array([[1, 1, 5, 0, 1], [5, 2, 2, 3, 1]])
    y, cache = b.layer.forward(b.params, x)
    dy = rng.standard_normal(y.shape)
    dx, grads = b.layer.backward(b.params, dy, cache)
    ref = np.zeros((6, 4))
    np.add.at(ref, x.reshape(-1), dy.reshape(-1, 4))
    assert dx is None
    np.testing.assert_allclose(grads["embeddings"], ref, rtol=1e-14)


def test_keras1_dropout_drops_whole_rows():
    b = build_layer({"type": "Embedding", "input_dim": 8, "output_dim": 3, "dropout": 0.5}, (12,))
    x = np.tile(np.arange(8), 3)[None, :12].repeat(2, axis=0)
    y, _ = b.layer.forward(b.params, x, training=True, rng=np.random.default_rng(0))
    keep = np.random.default_rng(0).random(8) >= 0.5
    for word in range(8):
        rows = y[x == word]
        expected = b.params["embeddings"][word] * (2.0 if keep[word] else 0.0)
        np.testing.assert_allclose(rows, np.broadcast_to(expected, rows.shape))
    y_eval, _ = b.layer.forward(b.params, x, training=False)
    np.testing.assert_array_equal(y_eval, b.params["embeddings"][x])
    check_layer_gradients(b, x, training=True)


def test_keras1_names_equal_modern_config():
    old, problems = _parse({"type": "Embedding", "input_dim": 50, "output_dim": 8, "init": "normal",
                            "W_regularizer": {"l2": 0.01}, "W_constraint": "unit_norm", "input_length": 12})
    assert not problems, [p.render_plain() for p in problems]
    new, problems = _parse({"type": "Embedding", "input_dim": 50, "output_dim": 8,
                            "embeddings_initializer": "random_normal", "embeddings_regularizer": {"l2": 0.01},
                            "embeddings_constraint": "unit_norm", "input_length": 12, "input_shape": [12]})
    assert not problems and old == new
    default, _ = _parse({"type": "Embedding", "input_dim": 5, "output_dim": 2})
    assert default.embeddings_initializer == "random_uniform"


def test_input_length_mismatch_is_a_shape_error():
    with pytest.raises(ShapeError, match="input_length is 4"):
        build_layer({"type": "Embedding", "input_dim": 5, "output_dim": 2, "input_length": 4}, (6,))


def test_backward_writes_into_engine_buffer():
    b = build_layer({"type": "Embedding", "input_dim": 6, "output_dim": 2}, (3,), dtype=np.float32)
    x = np.array([[1, 1, 4], [0, 4, 4]])
    y, cache = b.layer.forward(b.params, x)
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    _, plain = b.layer.backward(b.params, dy, cache)
    out = {"embeddings": np.full((6, 2), 7.0, np.float32)}  # stale values from the previous step
    _, grads = b.layer.backward(b.params, dy, cache, out=out)
    assert grads["embeddings"] is out["embeddings"]
    np.testing.assert_array_equal(out["embeddings"], plain["embeddings"])
