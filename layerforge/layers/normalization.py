"""BatchNormalization (Keras 3 semantics; Keras 1 mode 0)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator

from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, elements, register
from .fields import ConstraintSpec, InitializerSpec, RegularizerSpec

_MODE_REMOVED = {
    1: "mode 1 (sample-wise: each sample normalised over its last axis) was removed in Keras 2",
    2: "mode 2 (feature-wise, but always with the statistics of the current batch, also at test time) was "
       "removed in Keras 2",
}


@register
class BatchNormalization(Layer):
    """Batch normalisation over every axis except ``axis``: ``gamma * (x - mean) / sqrt(var + epsilon) + beta``.
    Training uses the mean and biased variance of the batch and updates ``moving_mean``/``moving_variance``
    (``moving = momentum * moving + (1 - momentum) * batch``, no bias correction); inference uses the moving
    statistics. Weights, in Keras 3 order: gamma, beta (trainable, if scale/center), moving_mean, moving_variance
    (non-trainable; Keras 1 called them running_mean/running_std, the latter holding the variance). As in
    Keras 3, a layer with ``trainable: false`` always runs in inference mode, and a (batch, time) mask on a 3D
    input restricts the training statistics to the unmasked steps (the mask itself passes through). Only Keras 1
    ``mode: 0`` exists (Keras 2 removed modes 1 and 2); for channels_first convolutions use ``axis: 1``."""

    type = "BatchNormalization"
    family = "normalization"
    frozen_runs_inference = True
    supports_masking = True

    class Config(LayerConfig):
        axis: int | list[int] = Field(-1, description="the feature axis (or axes) kept; counts the batch axis: -1 "
                                                      "= last (channels_last), 1 = channels_first")
        momentum: float = Field(0.99, ge=0, le=1, description="momentum of the moving mean and variance")
        epsilon: float = Field(1e-3, gt=0, description="added to the variance before the square root")
        center: bool = Field(True, description="learn an offset beta")
        scale: bool = Field(True, description="learn a scale gamma")
        beta_initializer: InitializerSpec = Field("zeros", description="initializer of beta (Keras 1: beta_init)")
        gamma_initializer: InitializerSpec = Field("ones", description="initializer of gamma (Keras 1: gamma_init)")
        moving_mean_initializer: InitializerSpec = Field("zeros", description="initializer of the moving mean")
        moving_variance_initializer: InitializerSpec = Field("ones",
                                                             description="initializer of the moving variance")
        beta_regularizer: RegularizerSpec = Field(None, description="penalty on beta")
        gamma_regularizer: RegularizerSpec = Field(None, description="penalty on gamma")
        beta_constraint: ConstraintSpec = Field(None, description="constraint on beta")
        gamma_constraint: ConstraintSpec = Field(None, description="constraint on gamma")
        mode: int = Field(0, description="Keras 1 only: 0 (feature-wise) is the only mode; 1 and 2 were removed "
                                         "in Keras 2")
        keras1_renames = {"beta_init": "beta_initializer", "gamma_init": "gamma_initializer"}

        @field_validator("axis", mode="before")
        @classmethod
        def check_axis(cls, v: Any):
            axes = v if isinstance(v, (list, tuple)) else [v]
            if not axes or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
                raise ValueError(f"axis is an integer or a non-empty list of integers, not {v!r}")
            if 0 in axes:
                raise ValueError("axis 0 is the batch axis; the feature axis is -1 (channels_last) or 1 "
                                 "(channels_first)")
            if len(set(axes)) != len(axes):
                raise ValueError(f"axis lists an axis twice: {list(axes)}")
            return list(v) if isinstance(v, (list, tuple)) else v

        @field_validator("mode", mode="before")
        @classmethod
        def check_mode(cls, v: Any):
            if isinstance(v, int) and v in _MODE_REMOVED:
                raise ValueError(f"BatchNormalization {_MODE_REMOVED[v]}; only mode 0 (feature-wise statistics, "
                                 "the default) is supported — remove `mode`")
            if v != 0 or isinstance(v, bool):
                raise ValueError(f"BatchNormalization mode must be 0, not {v!r}")
            return 0

        def public_dict(self):
            out = super().public_dict()
            out.pop("mode", None)  # always 0: not part of the modern config
            return out

    examples = [
        # Dense(64) + BatchNormalization() = 1,344 + 4*64 (reference 11.4)
        Example({"type": "BatchNormalization"}, (64,), output_shape=(64,), params=256, trainable_params=128,
                gradcheck=False, note="reference figure"),
        Example({"type": "BatchNormalization", "axis": -1}, (26, 26, 32), output_shape=(26, 26, 32), params=128,
                trainable_params=64, gradcheck=False, note="reference figure"),
        Example({"type": "BatchNormalization", "gamma_initializer": {"type": "random_uniform", "minval": 0.5,
                                                                     "maxval": 1.5},
                 "beta_initializer": {"type": "random_normal", "stddev": 0.5}},
                (5,), params=20, trainable_params=10, batch_size=4, note="2D, training"),
        Example({"type": "BatchNormalization", "gamma_init": {"type": "random_uniform", "minval": 0.5,
                                                              "maxval": 1.5}},
                (3, 3, 2), params=8, trainable_params=4, note="4D channels_last, training"),
        Example({"type": "BatchNormalization", "axis": 1, "momentum": 0.9,
                 "gamma_initializer": {"type": "random_uniform", "minval": 0.5, "maxval": 1.5}},
                (3, 2, 3), params=12, trainable_params=6, note="4D channels_first, training"),
        Example({"type": "BatchNormalization", "center": False, "scale": False}, (3, 4), params=8,
                trainable_params=0, note="no gamma/beta, training"),
        Example({"type": "BatchNormalization", "axis": -2, "center": False}, (3, 4), params=9, trainable_params=3,
                note="3D, axis -2, training"),
        Example({"type": "BatchNormalization", "moving_mean_initializer": {"type": "random_normal", "stddev": 1.0},
                 "moving_variance_initializer": {"type": "random_uniform", "minval": 0.5, "maxval": 2.0},
                 "gamma_initializer": {"type": "random_uniform", "minval": 0.5, "maxval": 1.5}},
                (3, 4), params=16, trainable_params=8, training=False, note="inference: moving statistics"),
        Example({"type": "BatchNormalization", "gamma_initializer": {"type": "random_uniform", "minval": 0.5,
                                                                     "maxval": 1.5}},
                (5, 3), params=12, trainable_params=6, mask=True, note="masked statistics"),
        Example({"type": "BatchNormalization", "axis": [1, 3]}, (2, 3, 2), params=16, trainable_params=8,
                note="Keras 2 list axis, non-adjacent axes"),
    ]

    # ------------------------------------------------------------------ shapes
    def _axes(self, rank: int, input_shape=None) -> list[int]:
        """The kept axes as sorted positive indices of the batched array (rank counts the batch axis)."""
        axes = self.config.axis if isinstance(self.config.axis, list) else [self.config.axis]
        out = []
        for a in axes:
            p = a + rank if a < 0 else a
            if not 1 <= p < rank:
                shape = input_shape if input_shape is not None else (None,) * (rank - 1)
                raise self.shape_error(shape, f"axis {a} does not exist for a {rank}D input (batch axis included)",
                                       hint=f"axis counts the batch axis: 1 .. {rank - 1}, or -1 .. -{rank - 1} "
                                            "from the end; -1 is the channels_last feature axis")
            out.append(p)
        if len(set(out)) != len(out):
            shape = input_shape if input_shape is not None else (None,) * (rank - 1)
            raise self.shape_error(shape, f"axis {axes} names the same axis twice", hint="list each axis once")
        return sorted(out)

    def _param_shape(self, input_shape) -> tuple[int, ...]:
        axes = self._axes(len(input_shape) + 1, input_shape)
        dims = [input_shape[a - 1] for a in axes]
        if any(d is None for d in dims):
            raise self.shape_error(input_shape, "the normalised axis must have a known size",
                                   hint="give that axis a fixed length, or normalise another axis with `axis:`")
        return tuple(int(d) for d in dims)

    def output_shape(self, input_shape):
        self._param_shape(input_shape)
        return input_shape

    def param_specs(self, input_shape):
        c = self.config
        shape = self._param_shape(input_shape)
        specs = []
        if c.scale:
            specs.append(ParamSpec("gamma", shape, c.gamma_initializer, regularizer=c.gamma_regularizer,
                                   constraint=c.gamma_constraint))
        if c.center:
            specs.append(ParamSpec("beta", shape, c.beta_initializer, regularizer=c.beta_regularizer,
                                   constraint=c.beta_constraint))
        specs.append(ParamSpec("moving_mean", shape, c.moving_mean_initializer, trainable=False))
        specs.append(ParamSpec("moving_variance", shape, c.moving_variance_initializer, trainable=False))
        return specs

    def flops(self, input_shape, output_shape):
        # inference folds into one multiply-add per element
        return elements(input_shape)

    # ------------------------------------------------------------------ maths
    def _layout(self, shape: tuple[int, ...]):
        """(perm or None, (outer, C, inner)) to view an array of ``shape`` with the kept axes in the middle."""
        axes = self._axes(len(shape))
        if axes == list(range(axes[0], axes[-1] + 1)):
            lo, hi = axes[0], axes[-1] + 1
            return None, (math.prod(shape[:lo]), math.prod(shape[lo:hi]), math.prod(shape[hi:]))
        rest = [i for i in range(len(shape)) if i not in axes]  # non-adjacent axes: move them last
        return rest + axes, (math.prod(shape[i] for i in rest), math.prod(shape[i] for i in axes), 1)

    @staticmethod
    def _to3(a, perm, dims):
        if perm is not None:
            a = a.transpose(perm)
        return np.ascontiguousarray(a).reshape(dims)

    @staticmethod
    def _from3(a3, shape, perm):
        if perm is None:
            return a3.reshape(shape)
        moved = a3.reshape(tuple(shape[i] for i in perm))
        return np.ascontiguousarray(moved.transpose(np.argsort(perm)))

    def _affine(self, params, c_size, dtype):
        gamma = params["gamma"].reshape(-1) if self.config.scale else np.ones(c_size)
        beta = params["beta"].reshape(-1) if self.config.center else np.zeros(c_size)
        return np.ascontiguousarray(gamma, dtype=dtype), np.ascontiguousarray(beta, dtype=dtype)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ..kernels import normalization as K

        c = self.config
        perm, dims = self._layout(x.shape)
        x3 = self._to3(x, perm, dims)
        gamma, beta = self._affine(params, dims[1], x.dtype)
        batch_stats = bool(training) and c.trainable  # Keras 3: a frozen BN runs in inference mode
        w3 = None
        if batch_stats:
            if mask is not None and mask.ndim == x.ndim - 1 and mask.shape == x.shape[:-1]:
                w = np.broadcast_to(mask.reshape(mask.shape + (1,)), x.shape).astype(x.dtype)
                w3 = self._to3(w, perm, dims)
            out3, mean, var, inv, count = K.forward_train(x3, w3, gamma, beta, float(c.epsilon))
            mm, mv = self.state["moving_mean"], self.state["moving_variance"]
            m = c.momentum
            self.state["moving_mean"] = (mm * m + mean.reshape(mm.shape) * (1.0 - m)).astype(mm.dtype)
            self.state["moving_variance"] = (mv * m + var.reshape(mv.shape) * (1.0 - m)).astype(mv.dtype)
        else:
            out3, mean, inv = K.forward_inference(x3, self.state["moving_mean"], self.state["moving_variance"],
                                                  gamma, beta, float(c.epsilon))
            count = None
        y = self._from3(out3, x.shape, perm)
        return y, (x3, w3, mean, inv, gamma, count, batch_stats, perm, x.shape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import normalization as K

        x3, w3, mean, inv, gamma, count, batch_stats, perm, shape = cache
        dy3 = self._to3(dy, perm, x3.shape).astype(x3.dtype, copy=False)
        dx3, d_gamma, d_beta = K.backward(dy3, x3, mean, inv, gamma, w3, count, batch_stats)
        grads = {}
        if self.config.scale:
            grads["gamma"] = d_gamma.reshape(params["gamma"].shape).astype(params["gamma"].dtype)
        if self.config.center:
            grads["beta"] = d_beta.reshape(params["beta"].shape).astype(params["beta"].dtype)
        return self._from3(dx3, shape, perm), grads
