"""Reference of LocallyConnected1D/2D (the fast path: one batched BLAS matmul over all output positions and a
strided add per kernel tap in backward).

A valid convolution whose every output position ``o`` has its own weight matrix (Keras 2 layout):

    y[b, o, f] = activation(sum_j patch(x, o)[b, j] * kernel[o, j, f] + bias[o, f])

with the patch flattened step-major then feature (1D), (row, col, channel) for channels_last and (channel, row,
col) for channels_first (2D). For channels_first, as in Keras 1/2, the (H', W', filters) bias buffer is read as
(filters, H', W'). Loops run over output positions.
"""

from __future__ import annotations

import numpy as np

from ._maths import activation, activation_backward


def _first(config):
    return len(config.kernel_size) == 2 and config.data_format == "channels_first"


def _positions(x, config):
    """[(output index, index of its window in x)] in the kernel's position order (row-major)."""
    k, s = config.kernel_size, config.strides
    spatial = x.shape[2:] if _first(config) else x.shape[1:-1]
    out = tuple((n - kk) // ss + 1 for n, kk, ss in zip(spatial, k, s, strict=True))
    result = []
    for o in np.ndindex(*out):
        cells = tuple(slice(oo * ss, oo * ss + kk) for oo, ss, kk in zip(o, s, k, strict=True))
        result.append((o, (slice(None), slice(None), *cells) if _first(config) else (slice(None), *cells)))
    return out, result


def _z(params, x, config):
    out, positions = _positions(x, config)
    f = params["kernel"].shape[-1]
    z = np.zeros((x.shape[0], *out, f))
    for p, (o, window) in enumerate(positions):
        patch = x[window].reshape(x.shape[0], -1)  # (channel, row, col) or (row, col, channel) order
        z[(slice(None), *o)] = patch @ params["kernel"][p]
    if _first(config):
        z = np.moveaxis(z, -1, 1)
        return z + params["bias"].reshape(f, *out) if config.use_bias else z
    return z + params["bias"] if config.use_bias else z


def locally_connected_forward(params, x, config):
    return activation(config.activation, _z(params, x, config))


def locally_connected_backward(params, x, dy, config):
    dz = activation_backward(config.activation, _z(params, x, config), dy)
    out, positions = _positions(x, config)
    f = params["kernel"].shape[-1]
    grads = {}
    if config.use_bias:
        grads["bias"] = dz.sum(axis=0).reshape(params["bias"].shape)
    if _first(config):
        dz = np.moveaxis(dz, 1, -1)
    grads["kernel"] = np.zeros_like(params["kernel"])
    dx = np.zeros_like(x)
    for p, (o, window) in enumerate(positions):
        patch = x[window]
        dzo = dz[(slice(None), *o)].reshape(x.shape[0], f)
        grads["kernel"][p] = patch.reshape(x.shape[0], -1).T @ dzo
        dx[window] += (dzo @ params["kernel"][p].T).reshape(patch.shape)
    return dx, grads
