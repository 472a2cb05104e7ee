"""ActivityRegularization and Masking: pass values through, adding a penalty or a mask."""

from __future__ import annotations

from pydantic import Field

from .._numpy import np
from ..base import Example, Layer, LayerConfig, elements, register


@register
class ActivityRegularization(Layer):
    """Identity layer that adds `l1*sum(|y|) + l2*sum(y^2)` of its output to the training loss (applied by the
    engine through `activity_penalty()`). The incoming mask passes through."""

    type = "ActivityRegularization"
    family = "core"
    supports_masking = True

    class Config(LayerConfig):
        l1: float = Field(0.0, ge=0.0, description="L1 penalty factor on the output")
        l2: float = Field(0.0, ge=0.0, description="L2 penalty factor on the output")

    examples = [
        Example({"type": "ActivityRegularization", "l1": 0.01}, (6,), output_shape=(6,), params=0),
        Example({"type": "ActivityRegularization", "l1": 0.001, "l2": 0.01}, (4, 3), output_shape=(4, 3), params=0,
                mask=True),
    ]

    def activity_penalty(self) -> dict | None:
        """The penalty on this layer's output in the regularizer form ``{"l1": .., "l2": ..}`` (None if zero)."""
        c = self.config
        if c.l1 == 0.0 and c.l2 == 0.0:
            return None
        return {"l1": float(c.l1), "l2": float(c.l2)}

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        return x, None

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy, {}


@register
class Masking(Layer):
    """Marks time steps to skip: for a (B, T, F) input the mask is True at step t when ANY feature differs from
    `mask_value` (a step is masked only when all its features equal it). The output is `x * mask` (masked steps
    become 0, which matters when mask_value is not 0) and carries the new mask (an incoming mask is replaced)."""

    type = "Masking"
    family = "core"
    supports_masking = True

    class Config(LayerConfig):
        mask_value: float = Field(0.0, description="steps whose features all equal this value are masked")

    examples = [
        Example({"type": "Masking"}, (4, 3), output_shape=(4, 3), params=0, mask=True),
        Example({"type": "Masking", "mask_value": -1.0}, (5, 2), output_shape=(5, 2), params=0),
    ]

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise self.shape_error(input_shape, "Masking needs a 3D input (batch, steps, features)",
                                   hint="reshape the input to (steps, features); a 2D input has no steps to mask")
        return input_shape

    def flops(self, input_shape, output_shape):
        return elements(input_shape)

    def _mask(self, x):
        return np.any(x != x.dtype.type(self.config.mask_value), axis=-1)

    def compute_mask(self, x, mask):
        return self._mask(x)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        keep = self._mask(x)[..., None].astype(x.dtype)
        return x * keep, keep

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        return dy * cache, {}
