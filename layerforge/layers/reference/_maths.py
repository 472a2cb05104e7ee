"""Shared pieces of the references: activations with their derivatives, and channels_first handling."""

from __future__ import annotations

import numpy as np


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# name -> (f(z), df/dz(z)) straight from the definitions (softmax, whose Jacobian is not diagonal, is handled in
# activation_backward)
ACTIVATIONS = {
    "linear": (lambda z: z, lambda z: np.ones_like(z)),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    "relu6": (lambda z: np.clip(z, 0, 6), lambda z: ((z > 0) & (z < 6)).astype(z.dtype)),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    "hard_sigmoid": (lambda z: np.clip(z / 6 + 0.5, 0, 1), lambda z: ((z > -3) & (z < 3)) / 6),
    "hard_sigmoid_keras1": (lambda z: np.clip(0.2 * z + 0.5, 0, 1), lambda z: ((z > -2.5) & (z < 2.5)) * 0.2),
    "softsign": (lambda z: z / (1 + np.abs(z)), lambda z: 1 / (1 + np.abs(z)) ** 2),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))), lambda z: np.where(z > 0, 1.0, np.exp(z))),
    "softplus": (lambda z: np.logaddexp(0, z), _sigmoid),
    "swish": (lambda z: z * _sigmoid(z), lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z)))),
    "softmax": (_softmax, None),
}


def activation(name: str, z):
    return ACTIVATIONS[name][0](z)


def activation_backward(name: str, z, dy):
    """dL/dz from dL/dy for y = activation(z)."""
    if name == "softmax":
        y = _softmax(z)
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return dy * ACTIVATIONS[name][1](z)


def to_last(x, data_format: str):
    """channels_first (B, C, ...) as channels_last (B, ..., C): every reference computes channels_last."""
    return np.moveaxis(x, 1, -1) if data_format == "channels_first" else x


def from_last(y, data_format: str):
    return np.moveaxis(y, -1, 1) if data_format == "channels_first" else y
