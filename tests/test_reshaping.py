"""Cropping / UpSampling / ZeroPadding against numpy references (tiny shapes)."""

import numpy as np
import pytest

from layerforge.errors import ConfigError, ShapeError
from layerforge.testing import build_layer


def _run(cfg, x):
    built = build_layer(cfg, x.shape[1:])
    y, cache = built.layer.forward({}, x)
    assert y.shape[1:] == tuple(built.output_shape)
    # every layer here is linear: backward must be the adjoint of forward
    dy = np.random.default_rng(9).standard_normal(y.shape)
    dx, grads = built.layer.backward({}, dy, cache)
    assert grads == {} and dx.shape == x.shape
    np.testing.assert_allclose(np.sum(y * dy), np.sum(x * dx))
    return built, y


X3 = np.random.default_rng(0).standard_normal((2, 7, 3))
X4 = np.random.default_rng(1).standard_normal((2, 5, 6, 3))
X5 = np.random.default_rng(2).standard_normal((2, 4, 5, 3, 2))


def test_cropping():
    _, y = _run({"type": "Cropping1D", "cropping": [2, 1]}, X3)
    np.testing.assert_array_equal(y, X3[:, 2:-1])
    _, y = _run({"type": "Cropping1D"}, X3)
    np.testing.assert_array_equal(y, X3[:, 1:-1])
    _, y = _run({"type": "Cropping2D", "cropping": [[1, 2], [0, 3]]}, X4)
    np.testing.assert_array_equal(y, X4[:, 1:-2, 0:3])
    _, y = _run({"type": "Cropping2D", "cropping": [1, 2]}, X4)  # symmetric per axis
    np.testing.assert_array_equal(y, X4[:, 1:-1, 2:-2])
    _, y = _run({"type": "Cropping2D", "cropping": 1, "dim_ordering": "th"}, X4)
    np.testing.assert_array_equal(y, X4[:, :, 1:-1, 1:-1])
    _, y = _run({"type": "Cropping3D"}, X5)
    np.testing.assert_array_equal(y, X5[:, 1:-1, 1:-1, 1:-1])
    _, y = _run({"type": "Cropping3D", "cropping": [[0, 1], 0, [1, 0]], "data_format": "channels_first"}, X5)
    np.testing.assert_array_equal(y, X5[:, :, 0:4, :, 1:])


def test_zero_padding():
    _, y = _run({"type": "ZeroPadding1D", "padding": [2, 1]}, X3)
    np.testing.assert_array_equal(y, np.pad(X3, ((0, 0), (2, 1), (0, 0))))
    _, y = _run({"type": "ZeroPadding1D", "padding": 1, "data_format": "channels_first"}, X3)
    np.testing.assert_array_equal(y, np.pad(X3, ((0, 0), (0, 0), (1, 1))))
    _, y = _run({"type": "ZeroPadding2D", "padding": [[1, 0], [2, 3]]}, X4)
    np.testing.assert_array_equal(y, np.pad(X4, ((0, 0), (1, 0), (2, 3), (0, 0))))
    _, y = _run({"type": "ZeroPadding2D", "dim_ordering": "th"}, X4)
    np.testing.assert_array_equal(y, np.pad(X4, ((0, 0), (0, 0), (1, 1), (1, 1))))
    _, y = _run({"type": "ZeroPadding3D", "padding": [1, 0, 2]}, X5)
    np.testing.assert_array_equal(y, np.pad(X5, ((0, 0), (1, 1), (0, 0), (2, 2), (0, 0))))


def test_zero_padding_2d_keras1_forms():
    four = build_layer({"type": "ZeroPadding2D", "padding": [1, 0, 2, 0]}, (28, 28, 3))
    assert four.layer.config.padding == ((1, 0), (2, 0))
    assert four.output_shape == (29, 30, 3)
    d = build_layer({"type": "ZeroPadding2D", "padding": {"top_pad": 1, "left_pad": 2}}, (28, 28, 3))
    assert d.layer.config == four.layer.config
    sym = build_layer({"type": "ZeroPadding2D", "padding": [1, 2]}, (28, 28, 3))
    assert sym.output_shape == (30, 32, 3)
    one = build_layer({"type": "ZeroPadding1D", "padding": {"left_pad": 2, "right_pad": 1}}, (4, 1))
    assert one.layer.config.padding == (2, 1)
    with pytest.raises(ConfigError, match="unknown key 'top'"):
        build_layer({"type": "ZeroPadding2D", "padding": {"top": 1}}, (4, 4, 1))
    with pytest.raises(ConfigError, match="pairs"):
        build_layer({"type": "ZeroPadding2D", "padding": [1, 2, 3]}, (4, 4, 1))
    with pytest.raises(ConfigError, match=">= 0"):
        build_layer({"type": "ZeroPadding3D", "padding": -1}, (4, 4, 4, 1))


def test_upsampling_nearest():
    _, y = _run({"type": "UpSampling1D", "size": 3}, X3)
    np.testing.assert_array_equal(y, np.repeat(X3, 3, axis=1))
    _, y = _run({"type": "UpSampling2D", "size": [2, 3]}, X4)
    np.testing.assert_array_equal(y, np.repeat(np.repeat(X4, 2, axis=1), 3, axis=2))
    _, y = _run({"type": "UpSampling2D", "dim_ordering": "th"}, X4)
    np.testing.assert_array_equal(y, np.repeat(np.repeat(X4, 2, axis=2), 2, axis=3))
    _, y = _run({"type": "UpSampling3D", "size": [1, 3, 2], "data_format": "channels_first"}, X5)
    np.testing.assert_array_equal(y, np.repeat(np.repeat(X5, 3, axis=3), 2, axis=4))


def test_upsampling_1d_keras1_length():
    old = build_layer({"type": "UpSampling1D", "length": 2}, (10, 4))
    assert old.output_shape == (20, 4)
    assert old.layer.config == build_layer({"type": "UpSampling1D", "size": 2}, (10, 4)).layer.config
    with pytest.raises(ConfigError, match="mean the same parameter"):
        build_layer({"type": "UpSampling1D", "length": 2, "size": 2}, (10, 4))


def _bilinear_ref(v, s):
    """Half-pixel linear resize of a 1-D signal, edges clamped (TF2 / Keras 3)."""
    n = len(v)
    out = []
    for i in range(n * s):
        src = max((i + 0.5) / s - 0.5, 0.0)
        lo = min(int(np.floor(src)), n - 1)
        hi = min(lo + 1, n - 1)
        out.append(v[lo] * (1 - (src - lo)) + v[hi] * (src - lo))
    return np.array(out)


def test_upsampling_bilinear():
    built = build_layer({"type": "UpSampling2D", "size": [1, 2], "interpolation": "bilinear"}, (1, 2, 1))
    y, _ = built.layer.forward({}, np.array([0.0, 1.0]).reshape(1, 1, 2, 1))
    np.testing.assert_allclose(y.ravel(), [0.0, 0.25, 0.75, 1.0])
    _, y = _run({"type": "UpSampling2D", "size": [3, 2], "interpolation": "bilinear"}, X4)
    want = np.apply_along_axis(_bilinear_ref, 1, X4, 3)
    want = np.apply_along_axis(_bilinear_ref, 2, want, 2)
    np.testing.assert_allclose(y, want)
    _, y = _run({"type": "UpSampling2D", "interpolation": "bilinear", "data_format": "channels_first"}, X4)
    want = np.apply_along_axis(_bilinear_ref, 2, X4, 2)
    np.testing.assert_allclose(y, np.apply_along_axis(_bilinear_ref, 3, want, 2))
    with pytest.raises(ConfigError, match="'bicubic' is not supported"):
        build_layer({"type": "UpSampling2D", "interpolation": "bicubic"}, (2, 2, 1))


def test_reference_shapes():
    cases = [
        ({"type": "ZeroPadding2D", "padding": [1, 2]}, (28, 28, 3), (30, 32, 3)),
        ({"type": "Cropping2D", "cropping": [[2, 2], [4, 4]]}, (28, 28, 3), (24, 20, 3)),
        ({"type": "UpSampling2D", "size": [2, 2]}, (28, 28, 3), (56, 56, 3)),
        ({"type": "Cropping1D", "cropping": [1, 1]}, (10, 4), (8, 4)),
        ({"type": "ZeroPadding1D", "padding": 1}, (10, 4), (12, 4)),
        ({"type": "Cropping3D"}, (10, 10, 10, 2), (8, 8, 8, 2)),
        ({"type": "ZeroPadding3D"}, (10, 10, 10, 2), (12, 12, 12, 2)),
        ({"type": "UpSampling3D"}, (10, 10, 10, 2), (20, 20, 20, 2)),
        ({"type": "UpSampling1D"}, (None, 4), (None, 4)),
    ]
    for cfg, shape, want in cases:
        assert build_layer(cfg, shape).output_shape == want, cfg


def test_shape_errors_and_float32():
    with pytest.raises(ShapeError, match="leaves nothing"):
        build_layer({"type": "Cropping2D", "cropping": [[2, 3], 0]}, (5, 5, 1))
    with pytest.raises(ShapeError, match="expected 4 axes"):
        build_layer({"type": "ZeroPadding3D"}, (5, 5, 1))
    for cfg in ({"type": "UpSampling2D", "interpolation": "bilinear"}, {"type": "ZeroPadding2D"},
                {"type": "Cropping2D", "cropping": 1}, {"type": "UpSampling2D"}):
        b = build_layer(cfg, (3, 4, 2), dtype=np.float32)
        x = np.ones((1, 3, 4, 2), np.float32)
        y, cache = b.layer.forward({}, x)
        dx, _ = b.layer.backward({}, np.ones_like(y), cache)
        assert y.dtype == dx.dtype == np.float32, cfg


def test_config_round_trip_of_pairs():
    b = build_layer({"type": "ZeroPadding2D", "padding": [1, 0, 2, 3]}, (4, 4, 1))
    assert b.layer.config.public_dict()["padding"] == [[1, 0], [2, 3]]
    c = build_layer({"type": "Cropping1D", "cropping": 2}, (6, 1))
    assert c.layer.config.public_dict()["cropping"] == [2, 2]
