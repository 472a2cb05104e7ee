"""The config fields every layer with a kernel and a bias shares.

Dense, MaxoutDense, Highway and the locally-connected layers derive their ``Config`` from
:class:`KernelBiasConfig`; a layer overrides a field only to describe it differently (e.g. what its
bias is per). Pure pydantic: no numpy, no Numba.
"""

from __future__ import annotations

from pydantic import Field

from .base import LayerConfig
from .fields import ConstraintSpec, InitializerSpec, RegularizerSpec


class KernelBiasConfig(LayerConfig):
    """use_bias, the kernel/bias initializers, regularizers and constraints, and the activity regularizer."""

    use_bias: bool = Field(True, description="add a bias vector (Keras 1: bias)")
    kernel_initializer: InitializerSpec = Field("glorot_uniform", description="kernel initializer (Keras 1: init)")
    bias_initializer: InitializerSpec = Field("zeros", description="bias initializer")
    kernel_regularizer: RegularizerSpec = Field(None, description="penalty on the kernel (Keras 1: W_regularizer)")
    bias_regularizer: RegularizerSpec = Field(None, description="penalty on the bias (Keras 1: b_regularizer)")
    activity_regularizer: RegularizerSpec = Field(None, description="penalty on the output")
    kernel_constraint: ConstraintSpec = Field(None, description="constraint on the kernel (Keras 1: W_constraint)")
    bias_constraint: ConstraintSpec = Field(None, description="constraint on the bias (Keras 1: b_constraint)")
