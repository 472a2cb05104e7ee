"""GaussianNoise / GaussianDropout: statistics in training, identity in inference, rng replay, Keras 1 names."""

import math

import numpy as np
import pytest

from layerforge.config.model import parse_layer
from layerforge.config.source import SourceMap
from layerforge.testing import build_layer


def _parse(cfg):
    problems = []
    out = parse_layer(dict(cfg), (), SourceMap(), problems)
    return out, problems


def _x(shape=(200, 100), dtype=np.float64):
    return (np.random.default_rng(0).uniform(0.5, 2.0, shape)).astype(dtype)


def test_gaussian_noise_statistics_and_replay():
    layer = build_layer({"type": "GaussianNoise", "stddev": 0.3}, (100,)).layer
    x = _x()
    y, cache = layer.forward({}, x, training=True, rng=np.random.default_rng(5))
    noise = y - x
    assert abs(noise.mean()) < 0.01
    assert abs(noise.std() - 0.3) < 0.01
    again, _ = layer.forward({}, x, training=True, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(y, again)  # all randomness comes from the rng argument
    other, _ = layer.forward({}, x, training=True, rng=np.random.default_rng(6))
    assert not np.array_equal(y, other)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    dx, grads = layer.backward({}, dy, cache)
    np.testing.assert_array_equal(dx, dy)
    assert grads == {}


def test_gaussian_dropout_statistics_and_gradient():
    rate = 0.2
    layer = build_layer({"type": "GaussianDropout", "rate": rate}, (100,)).layer
    x = _x()
    y, cache = layer.forward({}, x, training=True, rng=np.random.default_rng(5))
    factor = y / x
    sd = math.sqrt(rate / (1 - rate))
    assert abs(factor.mean() - 1) < 0.01
    assert abs(factor.std() - sd) < 0.01
    dy = np.random.default_rng(1).standard_normal(x.shape)
    dx, _ = layer.backward({}, dy, cache)
    np.testing.assert_allclose(dx, dy * factor, rtol=1e-12)


@pytest.mark.parametrize("cfg", [{"type": "GaussianNoise", "stddev": 0.5}, {"type": "GaussianDropout", "rate": 0.5}])
def test_identity_in_inference(cfg):
    layer = build_layer(cfg, (100,)).layer
    x = _x((3, 100))
    y, cache = layer.forward({}, x, training=False, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(y, x)
    dy = np.ones_like(x)
    dx, _ = layer.backward({}, dy, cache)
    np.testing.assert_array_equal(dx, dy)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_gaussian_dropout_noop_outside_open_interval(rate):
    layer = build_layer({"type": "GaussianDropout", "rate": rate}, (10,)).layer
    x = _x((3, 10))
    y, _ = layer.forward({}, x, training=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("cfg", [{"type": "GaussianNoise", "stddev": 0.5}, {"type": "GaussianDropout", "rate": 0.5}])
def test_float32_and_mask(cfg):
    layer = build_layer(cfg, (4, 3), dtype=np.float32).layer
    x = _x((2, 4, 3), np.float32)
    y, cache = layer.forward({}, x, training=True, rng=np.random.default_rng(0))
    assert y.dtype == np.float32
    dx, _ = layer.backward({}, np.ones_like(y), cache)
    assert dx.dtype == np.float32
    mask = np.ones((2, 4), dtype=bool)
    assert layer.compute_mask(x, mask) is mask
    assert layer.stochastic


def test_keras1_names_equal_modern_config():
    a, p1 = _parse({"type": "GaussianNoise", "sigma": 0.1})
    b, p2 = _parse({"type": "GaussianNoise", "stddev": 0.1})
    assert not p1 and not p2 and a == b
    a, p1 = _parse({"type": "GaussianDropout", "p": 0.3})
    b, p2 = _parse({"type": "GaussianDropout", "rate": 0.3})
    assert not p1 and not p2 and a == b


def test_bad_values_are_rejected():
    for cfg in ({"type": "GaussianNoise", "stddev": -0.1}, {"type": "GaussianDropout", "rate": 1.5},
                {"type": "GaussianNoise"}, {"type": "GaussianNoise", "sigma": 0.1, "stddev": 0.1}):
        _, problems = _parse(cfg)
        assert problems, cfg
