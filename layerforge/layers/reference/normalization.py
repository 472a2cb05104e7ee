"""References of BatchNormalization, LayerNormalization and GroupNormalization (the fast path: fused Numba kernels
in ``kernels/normalization.py`` and ``kernels/layer_norm.py``).

BatchNormalization keeps the ``axis`` axes and normalises over all the others:
``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``; in training mean and (biased) variance are the batch's
(weighted by a (batch, time) mask on a 3D input, so masked steps do not count) and the moving statistics move as
``moving = momentum * moving + (1 - momentum) * batch``; in inference (or with trainable false) the moving
statistics are used and are constants for the gradient. LayerNormalization normalises each sample over ``axis``
(one axis or several jointly); ``rms_scaling``: ``y = x * gamma / sqrt(var + epsilon)`` as Keras computes it
(the variance about the mean, but x not centred, and no beta). GroupNormalization splits the channels (``axis``)
into ``groups`` groups of consecutive channels and normalises each sample's group over its channels and every
other axis, then scales and shifts per channel.
"""

from __future__ import annotations

import numpy as np


def _kept_axes(axis, ndim):
    axes = axis if isinstance(axis, list) else [axis]
    return sorted(a + ndim if a < 0 else a for a in axes)


def _broadcast(p, kept, ndim, shape):
    """A weight of the kept axes' shape, broadcastable against x."""
    return p.reshape([shape[a] if a in kept else 1 for a in range(ndim)])


def _affine(params, config, kept, x):
    one = np.ones([x.shape[a] if a in kept else 1 for a in range(x.ndim)])
    gamma = _broadcast(params["gamma"], kept, x.ndim, x.shape) if config.scale else one
    beta = _broadcast(params["beta"], kept, x.ndim, x.shape) if config.center else 0 * one
    return gamma, beta


def _batch_weights(x, mask, training):
    if training and mask is not None and mask.shape == x.shape[:-1]:
        return np.broadcast_to(mask[..., None], x.shape).astype(x.dtype)
    return np.ones_like(x)


def batch_norm_forward(params, x, config, *, moving_mean, moving_variance, training, mask=None):
    """(y, new moving_mean, new moving_variance); ``training`` means batch statistics (training and trainable)."""
    kept = _kept_axes(config.axis, x.ndim)
    red = tuple(a for a in range(x.ndim) if a not in kept)
    gamma, beta = _affine(params, config, kept, x)
    if not training:
        mean = _broadcast(moving_mean, kept, x.ndim, x.shape)
        var = _broadcast(moving_variance, kept, x.ndim, x.shape)
        return gamma * (x - mean) / np.sqrt(var + config.epsilon) + beta, moving_mean, moving_variance
    w = _batch_weights(x, mask, training)
    count = w.sum(axis=red, keepdims=True)
    mean = (w * x).sum(axis=red, keepdims=True) / count
    var = (w * (x - mean) ** 2).sum(axis=red, keepdims=True) / count
    y = gamma * (x - mean) / np.sqrt(var + config.epsilon) + beta
    m = config.momentum
    new_mean = m * moving_mean + (1 - m) * mean.reshape(moving_mean.shape)
    new_var = m * moving_variance + (1 - m) * var.reshape(moving_variance.shape)
    return y, new_mean, new_var


def batch_norm_backward(params, x, dy, config, *, moving_mean, moving_variance, training, mask=None):
    kept = _kept_axes(config.axis, x.ndim)
    red = tuple(a for a in range(x.ndim) if a not in kept)
    gamma, _ = _affine(params, config, kept, x)
    if training:
        w = _batch_weights(x, mask, training)
        count = w.sum(axis=red, keepdims=True)
        mean = (w * x).sum(axis=red, keepdims=True) / count
        var = (w * (x - mean) ** 2).sum(axis=red, keepdims=True) / count
    else:
        mean = _broadcast(moving_mean, kept, x.ndim, x.shape)
        var = _broadcast(moving_variance, kept, x.ndim, x.shape)
    inv = 1 / np.sqrt(var + config.epsilon)
    xhat = (x - mean) * inv
    grads = {}
    if config.scale:
        grads["gamma"] = (dy * xhat).sum(axis=red).reshape(params["gamma"].shape)
    if config.center:
        grads["beta"] = dy.sum(axis=red).reshape(params["beta"].shape)
    dxhat = dy * gamma
    if not training:
        return dxhat * inv, grads
    # mean and var depend on x through the weighted sums: the usual three-term formula, weighted
    dvar = (dxhat * (x - mean)).sum(axis=red, keepdims=True) * -0.5 * inv ** 3
    dmean = -(dxhat * inv).sum(axis=red, keepdims=True)
    dx = dxhat * inv + w * (dvar * 2 * (x - mean) + dmean) / count
    return dx, grads


def layer_norm_forward(params, x, config):
    axes = tuple(_kept_axes(config.axis, x.ndim))
    gamma = _broadcast(params["gamma"], axes, x.ndim, x.shape) if "gamma" in params else 1.0
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    if config.rms_scaling:
        return x * gamma / np.sqrt(var + config.epsilon)
    beta = _broadcast(params["beta"], axes, x.ndim, x.shape) if "beta" in params else 0.0
    return gamma * (x - mean) / np.sqrt(var + config.epsilon) + beta


def layer_norm_backward(params, x, dy, config):
    axes = tuple(_kept_axes(config.axis, x.ndim))
    red = tuple(a for a in range(x.ndim) if a not in axes)
    n = np.prod([x.shape[a] for a in axes])
    gamma = _broadcast(params["gamma"], axes, x.ndim, x.shape) if "gamma" in params else 1.0
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    inv = 1 / np.sqrt((xc ** 2).mean(axis=axes, keepdims=True) + config.epsilon)
    grads = {}
    g = dy * gamma
    if config.rms_scaling:  # y = gamma * x * inv, inv a function of the centred variance
        if "gamma" in params:
            grads["gamma"] = (dy * x * inv).sum(axis=red).reshape(params["gamma"].shape)
        dinv = (g * x).sum(axis=axes, keepdims=True)
        dx = g * inv + dinv * (-inv ** 3) * xc / n
        return dx, grads
    xhat = xc * inv
    if "gamma" in params:
        grads["gamma"] = (dy * xhat).sum(axis=red).reshape(params["gamma"].shape)
    if "beta" in params:
        grads["beta"] = dy.sum(axis=red).reshape(params["beta"].shape)
    dx = inv * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return dx, grads


def _groups(x, config):
    """x with the channels last, viewed as (B, cells, groups, channels per group)."""
    a = config.axis + x.ndim if config.axis < 0 else config.axis
    xl = np.moveaxis(x, a, -1)
    return xl.reshape(x.shape[0], -1, config.groups, xl.shape[-1] // config.groups), a, xl.shape


def group_norm_forward(params, x, config):
    xg, a, lshape = _groups(x, config)
    mean = xg.mean(axis=(1, 3), keepdims=True)
    xhat = ((xg - mean) / np.sqrt(((xg - mean) ** 2).mean(axis=(1, 3), keepdims=True) + config.epsilon))
    y = xhat.reshape(lshape)
    if config.scale:
        y = y * params["gamma"]
    if config.center:
        y = y + params["beta"]
    return np.moveaxis(y, -1, a)


def group_norm_backward(params, x, dy, config):
    xg, a, lshape = _groups(x, config)
    xc = xg - xg.mean(axis=(1, 3), keepdims=True)
    inv = 1 / np.sqrt((xc ** 2).mean(axis=(1, 3), keepdims=True) + config.epsilon)
    xhat = xc * inv
    dyl = np.moveaxis(dy, a, -1)
    red = tuple(range(dyl.ndim - 1))
    grads = {}
    if config.scale:
        grads["gamma"] = (dyl * xhat.reshape(lshape)).sum(axis=red)
    if config.center:
        grads["beta"] = dyl.sum(axis=red)
    g = (dyl * params["gamma"] if config.scale else dyl).reshape(xg.shape)
    dx = inv * (g - g.mean(axis=(1, 3), keepdims=True) - xhat * (g * xhat).mean(axis=(1, 3), keepdims=True))
    return np.moveaxis(dx.reshape(lshape), -1, a), grads
