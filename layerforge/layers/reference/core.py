"""Reference of Dense: ``y = activation(x @ kernel + bias)`` on the last axis (the fast path fuses the bias and the
activation into one Numba pass over the GEMM output, and their derivatives into one pass in backward)."""

from __future__ import annotations

from ._maths import activation, activation_backward


def dense_forward(params, x, config):
    z = x @ params["kernel"]
    if config.use_bias:
        z = z + params["bias"]
    return activation(config.activation, z)


def dense_backward(params, x, dy, config):
    z = x @ params["kernel"] + (params["bias"] if config.use_bias else 0)
    dz = activation_backward(config.activation, z, dy)
    x2, dz2 = x.reshape(-1, x.shape[-1]), dz.reshape(-1, dz.shape[-1])
    grads = {"kernel": x2.T @ dz2}
    if config.use_bias:
        grads["bias"] = dz2.sum(axis=0)
    return dz @ params["kernel"].T, grads
