"""Advanced activations: LeakyReLU, PReLU, ELU, ThresholdedReLU, ParametricSoftplus, SReLU.

All are elementwise (numpy vectorised, no Numba needed) and pass masks through. Learned parameters
(PReLU, ParametricSoftplus, SReLU) are shaped like the input without the batch axis, with the 1-based
``shared_axes`` set to 1 and broadcast.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator

from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, elements, register
from .fields import ConstraintSpec, InitializerSpec, RegularizerSpec

SHARED_AXES_DESCRIPTION = ("axes (1-based, batch axis excluded) along which the parameters are shared, e.g. [1, 2] "
                           "after a channels_last Conv2D gives one parameter set per channel")


def _shared_axes(value: Any):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"shared_axes is an axis number or a list of them, not {value!r}")
    if any(v < 1 for v in value):
        raise ValueError(f"shared_axes count the axes after the batch axis from 1; got {list(value)}")
    if len(set(value)) != len(value):
        raise ValueError(f"shared_axes lists an axis twice: {list(value)}")
    return list(value)



def _param_shape(layer: Layer, input_shape, shared_axes) -> tuple[int, ...]:
    """PReLU-style parameter shape: the input shape with the shared axes set to 1."""
    shape = list(input_shape)
    for a in shared_axes or []:
        if a > len(shape):
            raise layer.shape_error(input_shape, f"shared_axes {a} does not exist (the input has {len(shape)} "
                                    "axes after the batch axis)",
                                    hint=f"shared_axes counts from 1 to {len(shape)}")
    for a in shared_axes or []:
        shape[a - 1] = 1
    unknown = [i + 1 for i, d in enumerate(shape) if d is None]
    if unknown:
        share = sorted(set(shared_axes or []) | set(unknown))
        raise layer.shape_error(input_shape, f"axis {unknown[0]} has a variable length, so it cannot have its own "
                                "parameters", hint=f"share it: shared_axes: {share}")
    return tuple(int(d) for d in shape)


def _reduce_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a (batch,) + input-shaped gradient down to a parameter of ``shape`` (batch and shared axes)."""
    g = g.sum(axis=0)
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _keras1_fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """Keras 1 ``get_fans`` with its default dim_ordering 'th' (used by SReLU's initializers)."""
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    if len(shape) in (4, 5):
        rf = math.prod(shape[2:])
        return float(shape[1] * rf), float(shape[0] * rf)
    n = math.sqrt(math.prod(shape))
    return n, n


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-free logistic, keeps the dtype."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class _ElementwiseMixin:
    supports_masking = True
    family = "advanced_activations"

    def flops(self, input_shape, output_shape):
        return elements(input_shape)


# ---------------------------------------------------------------------------------------------- LeakyReLU

@register
class LeakyReLU(_ElementwiseMixin, Layer):
    """Leaky ReLU: ``x`` for ``x >= 0``, ``negative_slope * x`` otherwise. No weights. Keras 1/2 called the slope
    ``alpha`` (accepted); default 0.3 in every version (the Keras 3 *function* leaky_relu defaults to 0.2)."""

    type = "LeakyReLU"

    class Config(LayerConfig):
        negative_slope: float = Field(0.3, ge=0, description="slope for x < 0 (Keras 1/2: alpha)")
        keras1_renames = {"alpha": "negative_slope"}

    examples = [
        Example({"type": "LeakyReLU"}, (64,), output_shape=(64,), params=0),
        Example({"type": "LeakyReLU", "alpha": 0.1}, (4, 3), output_shape=(4, 3), params=0, mask=True),
    ]

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        s = self.config.negative_slope
        return np.where(x >= 0, x, x * x.dtype.type(s)), x

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        x = cache
        return np.where(x >= 0, dy, dy * dy.dtype.type(self.config.negative_slope)), {}


# ---------------------------------------------------------------------------------------------- PReLU

@register
class PReLU(_ElementwiseMixin, Layer):
    """Parametric ReLU: ``max(x, 0) + alpha * min(x, 0)`` with a learned ``alpha`` per input element (shape of the
    input without the batch axis, axes in ``shared_axes`` set to 1). ``alpha`` starts at 0 (plain ReLU).
    Keras 1 called the initializer ``init``; the weight is named ``alpha`` as in Keras 2/3."""

    type = "PReLU"

    class Config(LayerConfig):
        alpha_initializer: InitializerSpec = Field("zeros", description="initializer of alpha (Keras 1: init)")
        alpha_regularizer: RegularizerSpec = Field(None, description="penalty on alpha")
        alpha_constraint: ConstraintSpec = Field(None, description="constraint on alpha")
        shared_axes: list[int] | None = Field(None, description=SHARED_AXES_DESCRIPTION)
        keras1_renames = {"init": "alpha_initializer"}

        @field_validator("shared_axes", mode="before")
        @classmethod
        def check_shared_axes(cls, v):
            return _shared_axes(v)

    examples = [
        # Dense(64) + PReLU() = 1,344 + 64 (reference 11.4)
        Example({"type": "PReLU"}, (64,), output_shape=(64,), params=64, gradcheck=False,
                note="reference figure"),
        Example({"type": "PReLU"}, (26, 26, 32), output_shape=(26, 26, 32), params=21632, gradcheck=False,
                note="reference figure"),
        Example({"type": "PReLU", "shared_axes": [1, 2]}, (26, 26, 32), output_shape=(26, 26, 32), params=32,
                gradcheck=False, note="reference figure"),
        Example({"type": "PReLU", "alpha_initializer": {"type": "random_uniform", "minval": 0.1, "maxval": 0.5}},
                (3, 4), params=12, mask=True),
        Example({"type": "PReLU", "shared_axes": [1, 2],
                 "alpha_initializer": {"type": "random_uniform", "minval": 0.1, "maxval": 0.5}},
                (3, 2, 4), params=4),
        Example({"type": "PReLU", "shared_axes": 1,
                 "alpha_initializer": {"type": "random_uniform", "minval": -0.5, "maxval": 0.5}},
                (None, 3), params=3, mask=True),
    ]

    def output_shape(self, input_shape):
        _param_shape(self, input_shape, self.config.shared_axes)
        return input_shape

    def param_specs(self, input_shape):
        c = self.config
        return [ParamSpec("alpha", _param_shape(self, input_shape, c.shared_axes), c.alpha_initializer,
                          regularizer=c.alpha_regularizer, constraint=c.alpha_constraint)]

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        alpha = params["alpha"].astype(x.dtype, copy=False)
        neg = np.minimum(x, 0)
        y = np.maximum(x, 0)
        y += alpha * neg
        return y, (x, neg)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        x, neg = cache
        alpha = params["alpha"]
        dx = np.where(x > 0, dy, dy * alpha.astype(dy.dtype, copy=False))
        return dx, {"alpha": _reduce_to(dy * neg, alpha.shape).astype(alpha.dtype, copy=False)}


# ---------------------------------------------------------------------------------------------- ELU

@register
class ELU(_ElementwiseMixin, Layer):
    """Exponential linear unit: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise. No weights; same in
    Keras 1, 2 and 3."""

    type = "ELU"

    class Config(LayerConfig):
        alpha: float = Field(1.0, description="scale of the negative part")

    examples = [
        Example({"type": "ELU"}, (64,), output_shape=(64,), params=0),
        Example({"type": "ELU", "alpha": 0.5}, (4, 3), output_shape=(4, 3), params=0, mask=True),
    ]

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        a = x.dtype.type(self.config.alpha)
        y = np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
        return y, (x, y)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        x, y = cache
        a = dy.dtype.type(self.config.alpha)
        return np.where(x > 0, dy, dy * (y + a)), {}


# ---------------------------------------------------------------------------------------------- ThresholdedReLU

@register
class ThresholdedReLU(_ElementwiseMixin, Layer):
    """Thresholded ReLU (Keras 1/2; Keras 3 has ``ReLU(threshold=theta)`` instead): ``x`` where ``x > theta``
    (strictly), 0 elsewhere. No weights. The gradient is 1 where ``x > theta`` and 0 elsewhere (the jump at
    theta is ignored)."""

    type = "ThresholdedReLU"

    class Config(LayerConfig):
        theta: float = Field(1.0, description="threshold; outputs are x where x > theta, else 0")

    # theta values were checked against the generic gradient-check inputs (no sample within 1e-4 of theta);
    # tests/test_advanced_activations.py keeps that true.
    examples = [
        Example({"type": "ThresholdedReLU"}, (64,), output_shape=(64,), params=0),
        Example({"type": "ThresholdedReLU", "theta": 0.05}, (4, 3), output_shape=(4, 3), params=0, mask=True),
    ]

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        keep = x > self.config.theta
        return x * keep, keep

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy * cache, {}


# ---------------------------------------------------------------------------------------------- ParametricSoftplus

@register
class ParametricSoftplus(_ElementwiseMixin, Layer):
    """Parametric softplus (Keras 1 only): ``alpha * log(1 + exp(beta * x))`` with learned ``alphas`` and ``betas``
    shaped like PReLU's alpha (``shared_axes``). Unlike other layers the inits are constants, not initializer
    names: alphas start at ``alpha_init`` = 0.2 and betas at ``beta_init`` = 5.0. Computed overflow-free."""

    type = "ParametricSoftplus"

    class Config(LayerConfig):
        alpha_init: float = Field(0.2, description="initial value of every alpha (a constant)")
        beta_init: float = Field(5.0, description="initial value of every beta (a constant)")
        shared_axes: list[int] | None = Field(None, description=SHARED_AXES_DESCRIPTION)

        @field_validator("shared_axes", mode="before")
        @classmethod
        def check_shared_axes(cls, v):
            return _shared_axes(v)

    examples = [
        # Dense(64) + ParametricSoftplus() = 1,344 + 2*64 (reference 11.4)
        Example({"type": "ParametricSoftplus"}, (64,), output_shape=(64,), params=128, gradcheck=False,
                note="reference figure"),
        Example({"type": "ParametricSoftplus", "alpha_init": 0.5, "beta_init": 2.0}, (3, 4), params=24, mask=True),
        Example({"type": "ParametricSoftplus", "shared_axes": [1]}, (3, 4), params=8),
        Example({"type": "ParametricSoftplus", "shared_axes": [1, 2], "beta_init": 1.5}, (2, 2, 3), params=6),
    ]

    def output_shape(self, input_shape):
        _param_shape(self, input_shape, self.config.shared_axes)
        return input_shape

    def param_specs(self, input_shape):
        c = self.config
        shape = _param_shape(self, input_shape, c.shared_axes)
        return [ParamSpec("alphas", shape, {"type": "constant", "value": float(c.alpha_init)}),
                ParamSpec("betas", shape, {"type": "constant", "value": float(c.beta_init)})]

    def flops(self, input_shape, output_shape):
        return 2 * elements(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        alpha = params["alphas"].astype(x.dtype, copy=False)
        beta = params["betas"].astype(x.dtype, copy=False)
        z = beta * x
        sp = np.logaddexp(x.dtype.type(0), z)  # log(1 + exp(z)) without overflow
        return alpha * sp, (x, z, sp)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        x, z, sp = cache
        alpha = params["alphas"]
        beta = params["betas"]
        sig = _sigmoid(z)
        a = alpha.astype(dy.dtype, copy=False)
        dx = dy * (a * beta.astype(dy.dtype, copy=False)) * sig
        grads = {"alphas": _reduce_to(dy * sp, alpha.shape).astype(alpha.dtype, copy=False),
                 "betas": _reduce_to(dy * a * x * sig, beta.shape).astype(beta.dtype, copy=False)}
        return dx, grads


# ---------------------------------------------------------------------------------------------- SReLU

@register
class SReLU(_ElementwiseMixin, Layer):
    """S-shaped ReLU (Keras 1 only): three linear pieces joined at ``t_left`` and ``t_r = t_left + |t_right|``:
    ``t_left + a_left*(x - t_left)`` for ``x <= t_left``, ``x`` in between, ``t_r + a_right*(x - t_r)`` for
    ``x >= t_r``. Weights ``t_left, a_left, t_right, a_right`` shaped like PReLU's alpha (``shared_axes``); the
    initializers default to Keras 1's (zeros, glorot_uniform, glorot_uniform, ones) with Keras 1's fans
    (sqrt(n) for a 1D shape). Keras 1 called them ``t_left_init`` ... ``a_right_init``."""

    type = "SReLU"

    class Config(LayerConfig):
        t_left_initializer: InitializerSpec = Field("zeros", description="initializer of t_left (Keras 1: t_left_init)")
        a_left_initializer: InitializerSpec = Field("glorot_uniform",
                                                    description="initializer of a_left (Keras 1: a_left_init)")
        t_right_initializer: InitializerSpec = Field(
            "glorot_uniform", description="initializer of t_right, the offset of the right threshold from t_left "
                                          "(Keras 1: t_right_init)")
        a_right_initializer: InitializerSpec = Field("ones",
                                                     description="initializer of a_right (Keras 1: a_right_init)")
        shared_axes: list[int] | None = Field(None, description=SHARED_AXES_DESCRIPTION)
        keras1_renames = {"t_left_init": "t_left_initializer", "a_left_init": "a_left_initializer",
                          "t_right_init": "t_right_initializer", "a_right_init": "a_right_initializer"}

        @field_validator("shared_axes", mode="before")
        @classmethod
        def check_shared_axes(cls, v):
            return _shared_axes(v)

    examples = [
        # Dense(64) + SReLU() = 1,344 + 4*64 (reference 11.4)
        Example({"type": "SReLU"}, (64,), output_shape=(64,), params=256, gradcheck=False, note="reference figure"),
        Example({"type": "SReLU", "t_left_init": {"type": "constant", "value": -0.3},
                 "a_right_init": {"type": "random_uniform", "minval": 0.2, "maxval": 1.5}}, (3, 4), params=48,
                mask=True, note="Keras 1 names"),
        Example({"type": "SReLU", "shared_axes": [1], "a_right_initializer": {"type": "constant", "value": 0.5}},
                (4, 3), params=12),
        Example({"type": "SReLU", "shared_axes": [1, 2],
                 "a_right_initializer": {"type": "random_uniform", "minval": 0.2, "maxval": 1.5}},
                (2, 2, 3), params=12),
    ]

    _NAMES = ("t_left", "a_left", "t_right", "a_right")

    def output_shape(self, input_shape):
        _param_shape(self, input_shape, self.config.shared_axes)
        return input_shape

    def param_specs(self, input_shape):
        c = self.config
        shape = _param_shape(self, input_shape, c.shared_axes)
        fan = _keras1_fans(shape)
        inits = (c.t_left_initializer, c.a_left_initializer, c.t_right_initializer, c.a_right_initializer)
        return [ParamSpec(n, shape, init, fan=fan) for n, init in zip(self._NAMES, inits, strict=True)]

    def flops(self, input_shape, output_shape):
        return 2 * elements(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        tl, al, tr_off, ar = (params[n].astype(x.dtype, copy=False) for n in self._NAMES)
        tr = tl + np.abs(tr_off)
        left = x <= tl
        right = x >= tr
        y = np.where(left, tl + al * (x - tl), np.where(right, tr + ar * (x - tr), x))
        return y, (x, left, right, tr)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        x, left, right, tr = cache
        dt = dy.dtype
        tl, al, tr_off, ar = (params[n] for n in self._NAMES)
        al_c, ar_c = al.astype(dt, copy=False), ar.astype(dt, copy=False)
        dx = np.where(left, dy * al_c, np.where(right, dy * ar_c, dy))
        dy_l = dy * left
        dy_r = dy * right
        d_tr = _reduce_to(dy_r * (1 - ar_c), tr_off.shape)
        grads = {
            "t_left": _reduce_to(dy_l * (1 - al_c), tl.shape) + d_tr,
            "a_left": _reduce_to(dy_l * (x - tl.astype(dt, copy=False)), al.shape),
            "t_right": d_tr * np.sign(tr_off),
            "a_right": _reduce_to(dy_r * (x - tr), ar.shape),
        }
        return dx, {k: v.astype(params[k].dtype, copy=False) for k, v in grads.items()}
