"""Convolution layers: Conv1D/2D/3D, their transposes, depthwise and separable convolutions.

`base_conv` holds what they share (config, geometry, the channels-last layout, the im2col/GEMM driver);
each other module holds one layer kind.
"""

# isort: skip_file
# (the layers register in this order, the order `layerforge layers` lists them in)

from .base_conv import Padding, PaddingCausal, conv_length, deconv_length, Geometry
from .conv import Conv1D, Conv2D, Conv3D
from .conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from .depthwise_conv import DepthwiseConv1D, DepthwiseConv2D
from .separable_conv import SeparableConv1D, SeparableConv2D

__all__ = [
    "Padding", "PaddingCausal", "conv_length", "deconv_length", "Geometry", "Conv1D", "Conv2D", "Conv3D",
    "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D",
    "SeparableConv1D", "SeparableConv2D",
]
