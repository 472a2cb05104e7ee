"""References of the convolution layers (the fast path: im2col/col2im + BLAS GEMMs, direct and depthwise Numba
kernels in ``kernels/conv.py``).

A convolution is a cross-correlation (no kernel flip), channels_last, on any number of spatial axes:

    y[b, o, f] = activation(bias[f] + sum_{k, c} xpad[b, o*s + k*d, c] * kernel[k, c, f])

with ``xpad`` the input with ``before`` zeros in front of each spatial axis (TF placement, keras-layers.md §0.1:
``same`` pads ``floor(total/2)`` before, the odd cell at the end; ``causal`` pads ``k_eff - 1`` before only). With
``groups`` the channels split into independent groups. A transposed convolution is the adjoint of a convolution
(its forward is that convolution's input gradient, its backward the convolution's forward), with the output lengths
of §0.2. Depthwise: every channel ``c`` convolved with its own ``depth_multiplier`` filters (output ``c*M + m``);
separable: depthwise, then a 1x1 (pointwise) matmul, bias, activation. channels_first is the same maths on moved
axes. Loops run over kernel offsets (and groups) only.
"""

from __future__ import annotations

import numpy as np

from ._maths import activation, activation_backward, from_last, to_last


def conv_axis(n: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """(output length, zeros before the input) of one spatial axis (keras-layers.md §0.1)."""
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        return (n - k_eff) // s + 1, 0
    if padding == "causal":
        return -(-n // s), k_eff - 1
    out = -(-n // s)
    return out, max((out - 1) * s + k_eff - n, 0) // 2


def transpose_axis(n: int, k: int, s: int, d: int, padding: str, output_padding: int | None,
                   target: int | None = None) -> tuple[int, int]:
    """(output length, zeros before) of a transposed convolution's axis: the length rule of keras-layers.md §0.2
    (or the Keras 1 ``output_shape`` target), and the TF padding of the convolution mapping that length back to
    ``n``."""
    k_eff = (k - 1) * d + 1
    if target is not None:
        out = target
    elif output_padding is None:
        out = n * s + max(k_eff - s, 0) if padding == "valid" else n * s
    else:
        out = (n - 1) * s + (k_eff if padding == "valid" else k_eff % 2) + output_padding
    before = 0 if padding == "valid" else max((n - 1) * s + k_eff - out, 0) // 2
    return out, before


def _padded(x, before, out, ks, s, d):
    """x (B, *S, C) with zeros around each spatial axis so that every window of the output fits."""
    widths = [(0, 0)]
    for n, b, o, k, ss, dd in zip(x.shape[1:-1], before, out, ks, s, d, strict=True):
        need = (o - 1) * ss + (k - 1) * dd + 1
        widths.append((b, max(need - n - b, 0)))
    return np.pad(x, widths + [(0, 0)])


def _window(offset, out, s, d):
    """The index of the input cells that kernel offset ``offset`` meets at every output position."""
    return (slice(None),) + tuple(slice(k * dd, k * dd + (o - 1) * ss + 1, ss)
                                  for k, o, ss, dd in zip(offset, out, s, d, strict=True)) + (slice(None),)


def _crop(xp, shape, before):
    return xp[(slice(None),) + tuple(slice(b, b + n) for b, n in zip(before, shape[1:-1], strict=True))]


def correlate(x, w, s, d, before, out, groups=1):
    """y[b, o, f] = sum_{k, c} xpad[b, o*s + k*d, c] * w[k, c, f] (per group); x (B, *S, C), w (*K, C/groups, F)."""
    xp = _padded(x, before, out, w.shape[:-2], s, d)
    cg, fg = w.shape[-2], w.shape[-1] // groups
    y = np.zeros((x.shape[0], *out, w.shape[-1]))
    for offset in np.ndindex(*w.shape[:-2]):
        cells = xp[_window(offset, out, s, d)]
        for g in range(groups):
            y[..., g * fg:(g + 1) * fg] += cells[..., g * cg:(g + 1) * cg] @ w[offset][:, g * fg:(g + 1) * fg]
    return y


def correlate_backward(x, w, dy, s, d, before, groups=1):
    """(dx, dw) of ``correlate`` for the output gradient dy."""
    out = dy.shape[1:-1]
    xp = _padded(x, before, out, w.shape[:-2], s, d)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    cg, fg = w.shape[-2], w.shape[-1] // groups
    for offset in np.ndindex(*w.shape[:-2]):
        win = _window(offset, out, s, d)
        cells = xp[win]
        for g in range(groups):
            ci, fi = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
            dw[offset][:, fi] += cells[..., ci].reshape(-1, cg).T @ dy[..., fi].reshape(-1, fg)
            dxp[win][..., ci] += dy[..., fi] @ w[offset][:, fi].T
    return _crop(dxp, x.shape, before), dw


def _geometry(config, spatial):
    r = len(config.kernel_size)
    plans = [conv_axis(spatial[a], config.kernel_size[a], config.strides[a], config.dilation_rate[a],
                       config.padding) for a in range(r)]
    return tuple(p[0] for p in plans), tuple(p[1] for p in plans)


def _bias_act_backward(params, z, dy, config):
    dz = activation_backward(config.activation, z, dy)
    grads = {"bias": dz.reshape(-1, dz.shape[-1]).sum(axis=0)} if config.use_bias else {}
    return dz, grads


# ---------------------------------------------------------------------------------- Conv1D/2D/3D

def _conv_z(params, xl, config):
    out, before = _geometry(config, xl.shape[1:-1])
    z = correlate(xl, params["kernel"], config.strides, config.dilation_rate, before, out, config.groups)
    return z + params["bias"] if config.use_bias else z


def conv_forward(params, x, config):
    xl = to_last(x, config.data_format)
    return from_last(activation(config.activation, _conv_z(params, xl, config)), config.data_format)


def conv_backward(params, x, dy, config):
    xl, dyl = to_last(x, config.data_format), to_last(dy, config.data_format)
    dz, grads = _bias_act_backward(params, _conv_z(params, xl, config), dyl, config)
    _, before = _geometry(config, xl.shape[1:-1])
    dx, grads["kernel"] = correlate_backward(xl, params["kernel"], dz, config.strides, config.dilation_rate,
                                             before, config.groups)
    return from_last(dx, config.data_format), grads


# ---------------------------------------------------------------------------------- Conv1D/2D/3DTranspose

def _transpose_geometry(config, spatial):
    r = len(config.kernel_size)
    target = getattr(config, "output_shape", None)  # Keras 1 Deconvolution2D: full shape, batch axis included
    if target is not None:
        target = target[2:] if config.data_format == "channels_first" else target[1:-1]
    plans = [transpose_axis(spatial[a], config.kernel_size[a], config.strides[a], config.dilation_rate[a],
                            config.padding, None if config.output_padding is None else config.output_padding[a],
                            None if target is None else target[a]) for a in range(r)]
    return tuple(p[0] for p in plans), tuple(p[1] for p in plans)


def _transpose_z(params, xl, config):
    """The input gradient of the convolution (kernel (*K, filters, channels)) that maps the output back to x."""
    out, before = _transpose_geometry(config, xl.shape[1:-1])
    w = params["kernel"]
    shaped = np.zeros((xl.shape[0], *out, w.shape[-2]))
    z, _ = correlate_backward(shaped, w, xl, config.strides, config.dilation_rate, before)
    return z + params["bias"] if config.use_bias else z


def conv_transpose_forward(params, x, config):
    xl = to_last(x, config.data_format)
    return from_last(activation(config.activation, _transpose_z(params, xl, config)), config.data_format)


def conv_transpose_backward(params, x, dy, config):
    xl, dyl = to_last(x, config.data_format), to_last(dy, config.data_format)
    dz, grads = _bias_act_backward(params, _transpose_z(params, xl, config), dyl, config)
    _, before = _transpose_geometry(config, xl.shape[1:-1])
    s, d = config.strides, config.dilation_rate
    dx = correlate(dz, params["kernel"], s, d, before, xl.shape[1:-1])  # the adjoint's adjoint: the convolution
    _, grads["kernel"] = correlate_backward(dz, params["kernel"], xl, s, d, before)  # d<dz, conv(x_out)> / dw
    return from_last(dx, config.data_format), grads


# ---------------------------------------------------------------------------------- Depthwise / Separable

def _depthwise(xl, w, s, d, before, out):
    """mid[b, o, c*M + m] = sum_k xpad[b, o*s + k*d, c] * w[k, c, m]."""
    xp = _padded(xl, before, out, w.shape[:-2], s, d)
    mid = np.zeros((xl.shape[0], *out, *w.shape[-2:]))
    for offset in np.ndindex(*w.shape[:-2]):
        mid += xp[_window(offset, out, s, d)][..., None] * w[offset]
    return mid.reshape(*mid.shape[:-2], -1)


def _depthwise_backward(xl, w, dmid, s, d, before):
    out = dmid.shape[1:-1]
    xp = _padded(xl, before, out, w.shape[:-2], s, d)
    dmid = dmid.reshape(*dmid.shape[:-1], *w.shape[-2:])
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for offset in np.ndindex(*w.shape[:-2]):
        win = _window(offset, out, s, d)
        dw[offset] = (xp[win][..., None] * dmid).reshape(-1, *w.shape[-2:]).sum(axis=0)
        dxp[win] += (dmid * w[offset]).sum(axis=-1)
    return _crop(dxp, xl.shape, before), dw


def _depthwise_name(params):
    return "depthwise_kernel" if "pointwise_kernel" in params else "kernel"


def _depthwise_z(params, xl, config):
    out, before = _geometry(config, xl.shape[1:-1])
    mid = _depthwise(xl, params[_depthwise_name(params)], config.strides, config.dilation_rate, before, out)
    z = mid
    if "pointwise_kernel" in params:
        pw = params["pointwise_kernel"]
        z = mid @ pw.reshape(-1, pw.shape[-1])
    return (z + params["bias"] if config.use_bias else z), mid


def depthwise_forward(params, x, config):
    """DepthwiseConv1D/2D, and SeparableConv1D/2D (params with a pointwise_kernel)."""
    xl = to_last(x, config.data_format)
    z, _ = _depthwise_z(params, xl, config)
    return from_last(activation(config.activation, z), config.data_format)


def depthwise_backward(params, x, dy, config):
    xl, dyl = to_last(x, config.data_format), to_last(dy, config.data_format)
    z, mid = _depthwise_z(params, xl, config)
    dz, grads = _bias_act_backward(params, z, dyl, config)
    dmid = dz
    if "pointwise_kernel" in params:
        pw = params["pointwise_kernel"]
        pw2 = pw.reshape(-1, pw.shape[-1])
        grads["pointwise_kernel"] = (mid.reshape(-1, pw2.shape[0]).T @ dz.reshape(-1, pw2.shape[1])).reshape(pw.shape)
        dmid = dz @ pw2.T
    _, before = _geometry(config, xl.shape[1:-1])
    name = _depthwise_name(params)
    dx, grads[name] = _depthwise_backward(xl, params[name], dmid, config.strides, config.dilation_rate, before)
    return from_last(dx, config.data_format), grads
