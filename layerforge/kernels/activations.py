"""Activation functions with their derivatives, shared by every layer with `activation:`.

``activate(name, z)`` returns ``y``; ``activate_backward(name, z, y, dy)`` returns
``dL/dz``. Both keep the dtype of ``z``. Derivatives that only need ``y`` say so in
``NEEDS_ONLY_OUTPUT`` so layers can drop ``z`` from their cache.
"""

from __future__ import annotations

import numpy as np

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
LEAKY_SLOPE = 0.2  # Keras 3 `leaky_relu` function default

# Derivative computable from the output alone: the pre-activation need not be kept.
NEEDS_ONLY_OUTPUT = {"linear", "relu", "sigmoid", "tanh", "softmax", "exponential", "elu", "relu6", "log_softmax"}


def sigmoid(z):
    """Overflow-free logistic (separate branches for z >= 0 and z < 0); keeps the dtype."""
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def softplus(z):
    """log(1 + exp(z)) without overflow."""
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)


def _softmax(z):
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    return e / e.sum(axis=-1, keepdims=True)


def activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "relu6":
        return np.clip(z, 0, 6)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "selu":
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))
    if name == "gelu":
        from .elementwise import gelu

        return gelu(z)
    if name == "sigmoid":
        return sigmoid(z)
    if name == "hard_sigmoid":
        return np.clip(z / 6 + 0.5, 0, 1).astype(z.dtype, copy=False)
    if name == "hard_sigmoid_keras1":
        return np.clip(0.2 * z + 0.5, 0, 1).astype(z.dtype, copy=False)
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        return _softmax(z)
    if name == "log_softmax":
        m = z.max(axis=-1, keepdims=True)
        return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    if name == "softplus":
        return softplus(z)
    if name == "softsign":
        return z / (1 + np.abs(z))
    if name in ("swish", "silu"):
        return z * sigmoid(z)
    if name == "exponential":
        return np.exp(z)
    if name == "leaky_relu":
        return np.where(z >= 0, z, LEAKY_SLOPE * z)
    if name == "mish":
        return z * np.tanh(softplus(z))
    if name == "hard_silu":
        return z * np.clip(z / 6 + 0.5, 0, 1)
    raise ValueError(f"unknown activation {name!r}")


def activate_backward(name: str, z: np.ndarray | None, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dL/dz given dL/dy; ``z`` may be None for names in NEEDS_ONLY_OUTPUT."""
    if name == "linear":
        return dy
    if name == "relu":
        return dy * (y > 0)
    if name == "relu6":
        return dy * ((y > 0) & (y < 6))
    if name == "elu":
        return np.where(y > 0, dy, dy * (y + 1))
    if name == "selu":
        return dy * np.where(z > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(z, 0)))
    if name == "gelu":
        from .elementwise import gelu_grad

        return dy * gelu_grad(z)
    if name == "sigmoid":
        return dy * y * (1 - y)
    if name == "hard_sigmoid":
        return dy * ((z > -3) & (z < 3)) / 6
    if name == "hard_sigmoid_keras1":
        return dy * ((z > -2.5) & (z < 2.5)) * 0.2
    if name == "tanh":
        return dy * (1 - y * y)
    if name == "softmax":
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    if name == "log_softmax":
        return dy - np.exp(y) * dy.sum(axis=-1, keepdims=True)
    if name == "softplus":
        return dy * sigmoid(z)
    if name == "softsign":
        d = 1 + np.abs(z)
        return dy / (d * d)
    if name in ("swish", "silu"):
        s = sigmoid(z)
        return dy * (s + z * s * (1 - s))
    if name == "exponential":
        return dy * y
    if name == "leaky_relu":
        return np.where(z >= 0, dy, LEAKY_SLOPE * dy)
    if name == "mish":
        sp = softplus(z)
        t = np.tanh(sp)
        return dy * (t + z * (1 - t * t) * sigmoid(z))
    if name == "hard_silu":
        return dy * (np.clip(z / 6 + 0.5, 0, 1) + z * ((z > -3) & (z < 3)) / 6)
    raise ValueError(f"unknown activation {name!r}")
