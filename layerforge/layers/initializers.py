"""Weight initializers (Keras 3 semantics: truncated normals for glorot/he/lecun normal,
orthogonal gain 1.0). Specs come normalised from ``layers.fields``: a name or
``{"type": name, **args}``."""

from __future__ import annotations

import math

import numpy as np

from .fields import INITIALIZERS

_TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated at +-2


def compute_fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """Fans as Keras computes them: (in, out) for 2D, receptive field x channels for kernels."""
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def _truncated(rng, mean, std, shape):
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():  # redraw outside two standard deviations, as tf.random.truncated_normal
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return mean + std * out


def _variance_scaling(rng, shape, fans, scale, mode, distribution):
    fan_in, fan_out = fans
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    var = scale / max(1.0, n)
    if distribution == "truncated_normal":
        return _truncated(rng, 0.0, math.sqrt(var) / _TRUNC_STD, shape)
    if distribution in ("untruncated_normal", "normal"):
        return rng.standard_normal(shape) * math.sqrt(var)
    limit = math.sqrt(3.0 * var)
    return rng.uniform(-limit, limit, shape)


def initialize(spec, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32,
               fan: tuple[int, int] | None = None) -> np.ndarray:
    """A new array of ``shape`` drawn from the initializer ``spec``."""
    if callable(spec):  # made by a layer, e.g. LSTM unit_forget_bias: (shape, rng, dtype, fan) -> array
        return np.ascontiguousarray(spec(tuple(int(s) for s in shape), rng, dtype, fan), dtype=dtype)
    if isinstance(spec, str):
        name, args = spec, {}
    else:
        args = dict(spec)
        name = args.pop("type")
    args = {**INITIALIZERS[name], **args}
    seed = args.pop("seed", None)
    if seed is not None:
        rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    fans = tuple(float(f) for f in fan) if fan else compute_fans(shape)
    if name == "zeros":
        out = np.zeros(shape)
    elif name == "ones":
        out = np.ones(shape)
    elif name == "constant":
        out = np.full(shape, float(args["value"]))
    elif name == "random_uniform":
        out = rng.uniform(args["minval"], args["maxval"], shape)
    elif name == "random_normal":
        out = args["mean"] + args["stddev"] * rng.standard_normal(shape)
    elif name == "truncated_normal":
        out = _truncated(rng, args["mean"], args["stddev"], shape)
    elif name == "glorot_uniform":
        out = _variance_scaling(rng, shape, fans, 1.0, "fan_avg", "uniform")
    elif name == "glorot_normal":
        out = _variance_scaling(rng, shape, fans, 1.0, "fan_avg", "truncated_normal")
    elif name == "he_uniform":
        out = _variance_scaling(rng, shape, fans, 2.0, "fan_in", "uniform")
    elif name == "he_normal":
        out = _variance_scaling(rng, shape, fans, 2.0, "fan_in", "truncated_normal")
    elif name == "lecun_uniform":
        out = _variance_scaling(rng, shape, fans, 1.0, "fan_in", "uniform")
    elif name == "lecun_normal":
        out = _variance_scaling(rng, shape, fans, 1.0, "fan_in", "truncated_normal")
    elif name == "variance_scaling":
        out = _variance_scaling(rng, shape, fans, args["scale"], args["mode"], args["distribution"])
    elif name == "orthogonal":
        rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
        cols = shape[-1] if shape else 1
        flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))  # makes the distribution uniform over orthogonal matrices
        if rows < cols:
            q = q.T
        out = args["gain"] * q[:rows, :cols].reshape(shape)
    elif name == "identity":
        if len(shape) != 2:
            raise ValueError(f"the identity initializer needs a 2D weight, got shape {shape}")
        out = args["gain"] * np.eye(shape[0], shape[1])
    else:  # pragma: no cover - names are validated with the config
        raise ValueError(f"unknown initializer {name!r}")
    return np.ascontiguousarray(out, dtype=dtype).reshape(shape)  # ascontiguousarray makes a 0-d array (1,)
