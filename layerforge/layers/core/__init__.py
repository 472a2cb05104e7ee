"""The core layers: Dense, Activation, Dropout, the shape operations (Flatten, Reshape, Permute,
RepeatVector), ActivityRegularization, Masking and Keras 1's Highway and MaxoutDense.
"""

# isort: skip_file
# (the layers register in this order, the order `layerforge layers` lists them in)

from .dense import Dense
from .activation import Activation
from .dropout import Dropout
from .shape_ops import Flatten, Reshape, Permute, RepeatVector
from .masking import ActivityRegularization, Masking
from .legacy_dense import Highway, MaxoutDense

__all__ = [
    "Dense", "Activation", "Dropout", "Flatten", "Reshape", "Permute", "RepeatVector", "ActivityRegularization",
    "Masking", "Highway", "MaxoutDense",
]
