"""Pooling layers: max and average pooling over windows, and their global forms, in 1, 2 and 3 dimensions.
"""

# isort: skip_file
# (the layers register in this order, the order `layerforge layers` lists them in)

from .base_pooling import (
    PoolPadding, out_length, same_pad_before, split_channels, join_channels, to_channels_last,
    from_channels_last, check_rank,
)
from .max_pooling import MaxPooling1D, MaxPooling2D, MaxPooling3D
from .average_pooling import AveragePooling1D, AveragePooling2D, AveragePooling3D
from .global_pooling import (
    GlobalMaxPooling1D, GlobalAveragePooling1D, GlobalMaxPooling2D, GlobalAveragePooling2D, GlobalMaxPooling3D,
    GlobalAveragePooling3D,
)

__all__ = [
    "PoolPadding", "out_length", "same_pad_before", "split_channels", "join_channels", "to_channels_last",
    "from_channels_last", "check_rank", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "GlobalMaxPooling1D", "GlobalAveragePooling1D",
    "GlobalMaxPooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling3D",
]
