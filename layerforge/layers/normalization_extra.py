"""Normalisations of Keras 2/3 beyond the Keras 1 list: LayerNormalization, GroupNormalization,
UnitNormalization (Keras 3 semantics and weight layout).

The heavy lifting is one fused Numba kernel pair over a (rows, features) view (kernels/layer_norm.py): the
normalised axes are moved last (a no-op for the usual ``axis: -1``) and every row is normalised on its own.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator

from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, elements, register
from .fields import ConstraintSpec, InitializerSpec, RegularizerSpec


def _check_axes(v: Any):
    axes = v if isinstance(v, (list, tuple)) else [v]
    if not axes or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        raise ValueError(f"axis is an integer or a non-empty list of integers, not {v!r}")
    if 0 in axes:
        raise ValueError("axis 0 is the batch axis; normalise over feature axes such as -1")
    return list(v) if isinstance(v, (list, tuple)) else v


def _positive_axes(layer: Layer, axis, input_shape) -> list[int]:
    """Sorted positive axes of the batched array (rank = len(input_shape) + 1)."""
    rank = len(input_shape) + 1
    out = []
    for a in (axis if isinstance(axis, list) else [axis]):
        p = a + rank if a < 0 else a
        if not 1 <= p < rank:
            raise layer.shape_error(input_shape, f"axis {a} does not exist for a {rank}D input (batch axis included)",
                                    hint=f"axis counts the batch axis: 1 .. {rank - 1}, or -1 .. -{rank - 1}")
        out.append(p)
    if len(set(out)) != len(out):
        raise layer.shape_error(input_shape, f"axis {axis} names the same axis twice")
    return sorted(out)


def _rows_view(x, axes):
    """(x2 (rows, features) C-contiguous, perm or None): the given axes moved last and flattened."""
    rest = [i for i in range(x.ndim) if i not in axes]
    if axes == list(range(x.ndim - len(axes), x.ndim)):
        perm = None
        moved = x
    else:
        perm = rest + axes
        moved = x.transpose(perm)
    feats = math.prod(x.shape[a] for a in axes)
    return np.ascontiguousarray(moved).reshape(-1, feats), perm


def _from_rows(y2, shape, perm):
    if perm is None:
        return y2.reshape(shape)
    moved = y2.reshape(tuple(shape[i] for i in perm))
    return np.ascontiguousarray(moved.transpose(np.argsort(perm)))


class _AffineConfig(LayerConfig):
    epsilon: float = Field(1e-3, gt=0, description="added to the variance before the square root")
    center: bool = Field(True, description="learn an offset beta")
    scale: bool = Field(True, description="learn a scale gamma")
    beta_initializer: InitializerSpec = Field("zeros", description="initializer of beta")
    gamma_initializer: InitializerSpec = Field("ones", description="initializer of gamma")
    beta_regularizer: RegularizerSpec = Field(None, description="penalty on beta")
    gamma_regularizer: RegularizerSpec = Field(None, description="penalty on gamma")
    beta_constraint: ConstraintSpec = Field(None, description="constraint on beta")
    gamma_constraint: ConstraintSpec = Field(None, description="constraint on gamma")


def _affine_specs(c, shape) -> list[ParamSpec]:
    specs = []
    if c.scale:
        specs.append(ParamSpec("gamma", shape, c.gamma_initializer, regularizer=c.gamma_regularizer,
                               constraint=c.gamma_constraint))
    if c.center:
        specs.append(ParamSpec("beta", shape, c.beta_initializer, regularizer=c.beta_regularizer,
                               constraint=c.beta_constraint))
    return specs


_RANDOM_AFFINE = {"gamma_initializer": {"type": "random_uniform", "minval": 0.5, "maxval": 1.5},
                  "beta_initializer": {"type": "random_normal", "stddev": 0.5}}


# ---------------------------------------------------------------------------------------------- LayerNormalization

@register
class LayerNormalization(Layer):
    """Layer normalisation (Keras 3): each sample is normalised over ``axis`` (the last axis by default; a list
    normalises over several axes jointly) with its own mean and biased variance, ``gamma * (x - mean) /
    sqrt(var + epsilon) + beta``; gamma and beta have the shape of the normalised axes. ``rms_scaling`` (Keras
    3): ``x * gamma / sqrt(var + epsilon)`` (no centring, no beta), as Keras computes it. Same in training and
    inference; the mask passes through. Runs as one fused Numba kernel over a (rows, features) view."""

    type = "LayerNormalization"
    family = "normalization"
    supports_masking = True

    class Config(_AffineConfig):
        axis: int | list[int] = Field(-1, description="the axis (or axes) normalised over; counts the batch axis")
        rms_scaling: bool = Field(False, description="Keras 3: scale by 1/sqrt(var + epsilon) without centring "
                                                     "(center and beta are then ignored)")
        @field_validator("axis", mode="before")
        @classmethod
        def check_axis(cls, v):
            return _check_axes(v)

    examples = [
        Example({"type": "LayerNormalization"}, (10, 64), output_shape=(10, 64), params=128, gradcheck=False,
                note="reference figure"),
        Example({"type": "LayerNormalization", **_RANDOM_AFFINE}, (3, 5), params=10, mask=True),
        Example({"type": "LayerNormalization", "axis": [1, 2], **_RANDOM_AFFINE}, (3, 2, 2), params=12,
                note="two axes jointly"),
        Example({"type": "LayerNormalization", "axis": 1, "epsilon": 1e-5, **_RANDOM_AFFINE}, (4, 3), params=8,
                note="non-last axis"),
        Example({"type": "LayerNormalization", "rms_scaling": True, **_RANDOM_AFFINE}, (6,), params=6,
                note="rms_scaling: gamma only"),
        Example({"type": "LayerNormalization", "center": False, "scale": False}, (7,), params=0),
    ]

    def _param_shape(self, input_shape):
        axes = _positive_axes(self, self.config.axis, input_shape)
        dims = [input_shape[a - 1] for a in axes]
        if any(d is None for d in dims):
            raise self.shape_error(input_shape, "the normalised axes must have a known size")
        return tuple(dims)

    def output_shape(self, input_shape):
        self._param_shape(input_shape)
        return tuple(input_shape)

    def param_specs(self, input_shape):
        shape = self._param_shape(input_shape)
        c = self.config
        specs = _affine_specs(c, shape)
        if c.rms_scaling:  # Keras 3 builds no beta with rms_scaling
            specs = [s for s in specs if s.name == "gamma"]
        return specs

    def flops(self, input_shape, output_shape):
        return 5 * elements(input_shape)

    def _gamma_beta(self, params, f, dtype):
        c = self.config
        gamma = np.ascontiguousarray(params["gamma"].reshape(-1), dtype=dtype) if c.scale else np.ones(f, dtype)
        beta = np.ascontiguousarray(params["beta"].reshape(-1), dtype=dtype) if c.center and not c.rms_scaling \
            else np.zeros(f, dtype)
        return gamma, beta

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..kernels import layer_norm as K

        axes = _positive_axes(self, self.config.axis, x.shape[1:])
        x2, perm = _rows_view(x, axes)
        gamma, beta = self._gamma_beta(params, x2.shape[1], x2.dtype)
        y2, mean, inv = K.layer_norm(x2, gamma, beta, float(self.config.epsilon), bool(self.config.rms_scaling))
        return _from_rows(y2, x.shape, perm), (x2, perm, x.shape, mean, inv, gamma, axes)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import layer_norm as K

        x2, perm, shape, mean, inv, gamma, axes = cache
        dy2, _ = _rows_view(dy, axes)
        dx2, dg, db = K.layer_norm_grad(dy2, x2, gamma, mean, inv, bool(self.config.rms_scaling))
        grads = {}
        if "gamma" in params:
            grads["gamma"] = dg.reshape(params["gamma"].shape).astype(params["gamma"].dtype)
        if "beta" in params:
            grads["beta"] = db.reshape(params["beta"].shape).astype(params["beta"].dtype)
        return _from_rows(dx2, shape, perm), grads


# ---------------------------------------------------------------------------------------------- GroupNormalization

@register
class GroupNormalization(Layer):
    """Group normalisation (Keras 3): the channels (``axis``, default -1) are split into ``groups`` groups of
    consecutive channels; each sample is normalised per group over that group's channels and every other axis,
    then scaled and shifted per channel (gamma, beta of shape (channels,)). ``groups`` = channels is instance
    normalisation, ``groups: 1`` normalises over everything but the batch. Same in training and inference."""

    type = "GroupNormalization"
    family = "normalization"
    supports_masking = True

    class Config(_AffineConfig):
        groups: int = Field(32, ge=1, description="number of channel groups; must divide the channel count")
        axis: int = Field(-1, description="the channel axis (counts the batch axis): -1 channels_last, 1 "
                                          "channels_first")

        @field_validator("axis")
        @classmethod
        def _not_batch(cls, v):
            if v == 0:
                raise ValueError("axis 0 is the batch axis; the channel axis is -1 or 1")
            return v

    examples = [
        Example({"type": "GroupNormalization", "groups": 4}, (8, 8, 16), output_shape=(8, 8, 16), params=32,
                gradcheck=False, note="reference figure"),
        Example({"type": "GroupNormalization", "groups": 2, **_RANDOM_AFFINE}, (3, 4), params=8),
        Example({"type": "GroupNormalization", "groups": 3, "axis": 1, **_RANDOM_AFFINE}, (6, 2, 2), params=12,
                note="channels_first"),
        Example({"type": "GroupNormalization", "groups": 1, "center": False, **_RANDOM_AFFINE}, (2, 2, 3),
                params=3),
    ]

    def _channel_axis(self, input_shape) -> int:
        return _positive_axes(self, self.config.axis, input_shape)[0]

    def output_shape(self, input_shape):
        a = self._channel_axis(input_shape)
        ch = input_shape[a - 1]
        if ch is None:
            raise self.shape_error(input_shape, "the channel axis must have a known size")
        if ch % self.config.groups:
            raise self.shape_error(input_shape, f"groups={self.config.groups} does not divide the {ch} channels",
                                   hint="pick a number of groups that divides the channel count")
        return tuple(input_shape)

    def param_specs(self, input_shape):
        self.output_shape(input_shape)
        return _affine_specs(self.config, (input_shape[self._channel_axis(input_shape) - 1],))

    def flops(self, input_shape, output_shape):
        return 5 * elements(input_shape)

    def _grouped(self, x):
        """x with the channels last, as (B*G, S*Cg) rows (each row one sample and group), and what undoes it."""
        a = self._channel_axis(x.shape[1:])
        xl = np.moveaxis(x, a, -1)
        B, C, G = xl.shape[0], xl.shape[-1], self.config.groups
        S = math.prod(xl.shape[1:-1])
        rows = np.ascontiguousarray(xl.reshape(B, S, G, C // G).transpose(0, 2, 1, 3)).reshape(B * G, -1)
        return rows, (a, xl.shape, B, S, G, C)

    @staticmethod
    def _ungrouped(rows, layout):
        a, lshape, B, S, G, C = layout
        xl = rows.reshape(B, G, S, C // G).transpose(0, 2, 1, 3).reshape(lshape)
        return np.ascontiguousarray(np.moveaxis(xl, -1, a))

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..kernels import layer_norm as K

        c = self.config
        rows, layout = self._grouped(x)
        f = rows.shape[1]
        xhat2, mean, inv = K.layer_norm(rows, np.ones(f, rows.dtype), np.zeros(f, rows.dtype), float(c.epsilon),
                                        False)
        xhat = self._ungrouped(xhat2, layout)
        shape = [1] * x.ndim
        shape[layout[0]] = layout[5]
        y = xhat
        if c.scale:
            y = y * params["gamma"].reshape(shape)
        if c.center:
            y = y + params["beta"].reshape(shape)
        return y.astype(x.dtype, copy=False), (rows, layout, mean, inv, xhat, shape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import layer_norm as K

        rows, layout, mean, inv, xhat, shape = cache
        a = layout[0]
        sum_axes = tuple(i for i in range(dy.ndim) if i != a)
        grads = {}
        dxhat = dy
        if self.config.scale:
            grads["gamma"] = (dy * xhat).sum(axis=sum_axes).astype(params["gamma"].dtype)
            dxhat = dy * params["gamma"].reshape(shape)
        if self.config.center:
            grads["beta"] = dy.sum(axis=sum_axes).astype(params["beta"].dtype)
        d_rows, _ = self._grouped(dxhat.astype(rows.dtype, copy=False))
        f = rows.shape[1]
        dx2, _, _ = K.layer_norm_grad(d_rows, rows, np.ones(f, rows.dtype), mean, inv, False)
        return self._ungrouped(dx2, layout), grads


# ---------------------------------------------------------------------------------------------- UnitNormalization

@register
class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over ``axis`` (Keras 3): ``x / max(||x||, 1e-12)`` (Keras computes
    ``x * min(1/||x||, 1e12)``). No weights; the mask passes through."""

    type = "UnitNormalization"
    family = "normalization"
    supports_masking = True

    class Config(LayerConfig):
        axis: int | list[int] = Field(-1, description="the axis (or axes) whose norm becomes 1; counts the batch "
                                                      "axis")
        @field_validator("axis", mode="before")
        @classmethod
        def check_axis(cls, v):
            return _check_axes(v)

    examples = [
        Example({"type": "UnitNormalization"}, (5,), output_shape=(5,), params=0),
        Example({"type": "UnitNormalization", "axis": [1, 2]}, (3, 2, 2), output_shape=(3, 2, 2), params=0),
        Example({"type": "UnitNormalization", "axis": 1}, (4, 3), output_shape=(4, 3), params=0, mask=True),
    ]

    def output_shape(self, input_shape):
        _positive_axes(self, self.config.axis, input_shape)
        return tuple(input_shape)

    def flops(self, input_shape, output_shape):
        return 3 * elements(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        axes = tuple(_positive_axes(self, self.config.axis, x.shape[1:]))
        ss = np.square(x).sum(axis=axes, keepdims=True)
        with np.errstate(divide="ignore"):
            r = np.minimum(1.0 / np.sqrt(ss), 1e12).astype(x.dtype)
        y = x * r
        return y, (y, r, axes)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        y, r, axes = cache
        clipped = r >= 1e12
        dx = r * (dy - y * (dy * y).sum(axis=axes, keepdims=True))
        if clipped.any():
            dx = np.where(clipped, dy * r, dx)
        return dx, {}
