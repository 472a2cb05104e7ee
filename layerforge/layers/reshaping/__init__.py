"""Spatial reshaping layers: cropping, zero padding and up-sampling in 1, 2 and 3 dimensions.
"""

# isort: skip_file
# (the layers register in this order, the order `layerforge layers` lists them in)

from .base_reshaping import pairs
from .cropping import Cropping1D, Cropping2D, Cropping3D
from .zero_padding import ZeroPadding1D, ZeroPadding2D, ZeroPadding3D
from .up_sampling import Interpolation, UpSampling1D, UpSampling2D, UpSampling3D

__all__ = [
    "pairs", "Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Interpolation", "UpSampling1D", "UpSampling2D", "UpSampling3D",
]
