"""References of the pooling layers (the fast path: Numba window kernels in ``kernels/pooling.py``).

Windowed pooling, channels_last, any number of spatial axes, windows of ``pool_size`` moving by ``strides``
(default pool_size); ``same`` pads as TF does (keras-layers.md §0.1), and the padded cells take no part: max
pooling ignores them, average pooling divides by the number of real cells in each window. The gradient of a max
goes to the first maximal cell of its window (row-major order within the window). Global pooling: the max / mean
over every spatial axis (a (batch, steps) mask restricts the 1D mean to the unmasked steps).
"""

from __future__ import annotations

import numpy as np

from ._maths import from_last, to_last


def _plan(config, spatial):
    pool = tuple(config.pool_size)
    strides = tuple(config.strides or config.pool_size)
    out, before = [], []
    for n, k, s in zip(spatial, pool, strides, strict=True):
        if config.padding == "same":
            o = -(-n // s)
            out.append(o)
            before.append(max((o - 1) * s + k - n, 0) // 2)
        else:
            out.append((n - k) // s + 1)
            before.append(0)
    return pool, strides, tuple(out), tuple(before)


def _windows(xl, config, fill):
    """(padded input, [index of each window offset's cells], out) with ``fill`` in the padded cells."""
    pool, strides, out, before = _plan(config, xl.shape[1:-1])
    widths = [(0, 0)] + [(b, max((o - 1) * s + k - n - b, 0)) for n, k, s, o, b in
                         zip(xl.shape[1:-1], pool, strides, out, before, strict=True)] + [(0, 0)]
    xp = np.pad(xl, widths, constant_values=fill)
    index = [(slice(None),) + tuple(slice(k, k + (o - 1) * s + 1, s) for k, o, s in zip(off, out, strides,
                                                                                        strict=True))
             + (slice(None),) for off in np.ndindex(*pool)]
    return xp, index, widths


def pool_forward(params, x, config, *, average: bool):
    xl = to_last(x, config.data_format)
    if average:  # sum of the real cells / their count
        xp, index, _ = _windows(xl, config, 0.0)
        ones, _, _ = _windows(np.ones_like(xl), config, 0.0)
        y = sum(xp[i] for i in index) / sum(ones[i] for i in index)
    else:
        xp, index, _ = _windows(xl, config, -np.inf)
        y = np.max([xp[i] for i in index], axis=0)
    return from_last(y, config.data_format)


def pool_backward(params, x, dy, config, *, average: bool):
    xl, dyl = to_last(x, config.data_format), to_last(dy, config.data_format)
    if average:
        xp, index, widths = _windows(xl, config, 0.0)
        ones, _, _ = _windows(np.ones_like(xl), config, 0.0)
        share = dyl / sum(ones[i] for i in index)
        dxp = np.zeros_like(xp)
        for i in index:
            dxp[i] += share
    else:
        xp, index, widths = _windows(xl, config, -np.inf)
        cells = np.stack([xp[i] for i in index])
        winner = np.argmax(cells, axis=0)  # the first maximum
        dxp = np.zeros_like(xp)
        for j, i in enumerate(index):
            dxp[i] += np.where(winner == j, dyl, 0.0)
    crop = tuple(slice(b, b + n) for (b, _), n in zip(widths[1:-1], xl.shape[1:-1], strict=True))
    return from_last(dxp[(slice(None),) + crop], config.data_format), {}


def _global_axes(config, ndim):
    return tuple(range(2, ndim)) if config.data_format == "channels_first" else tuple(range(1, ndim - 1))


def global_pool_forward(params, x, config, *, average: bool, mask=None):
    axes = _global_axes(config, x.ndim)
    if average and mask is not None:  # mean over the unmasked steps (1D only)
        w = np.expand_dims(mask.astype(x.dtype), 1 if config.data_format == "channels_first" else -1)
        y = (x * w).sum(axis=axes, keepdims=True) / np.maximum(w.sum(axis=axes, keepdims=True), 1)
    else:
        y = x.mean(axis=axes, keepdims=True) if average else x.max(axis=axes, keepdims=True)
    return y if config.keepdims else y.reshape(y.shape[0], -1)


def global_pool_backward(params, x, dy, config, *, average: bool, mask=None):
    axes = _global_axes(config, x.ndim)
    dyk = dy.reshape(tuple(1 if a in axes else n for a, n in enumerate(x.shape)))
    if average:
        if mask is not None:
            w = np.expand_dims(mask.astype(x.dtype), 1 if config.data_format == "channels_first" else -1)
            return dyk * w / np.maximum(w.sum(axis=axes, keepdims=True), 1), {}
        return np.broadcast_to(dyk / np.prod([x.shape[a] for a in axes]), x.shape).copy(), {}
    # the max's gradient goes to the first maximal cell (row-major over the pooled axes)
    xl = to_last(x, config.data_format)
    flat = xl.reshape(x.shape[0], -1, xl.shape[-1])
    dx = np.zeros_like(flat)
    np.put_along_axis(dx, flat.argmax(axis=1)[:, None], dy.reshape(x.shape[0], 1, -1), axis=1)
    return from_last(dx.reshape(xl.shape), config.data_format), {}
