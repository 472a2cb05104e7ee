"""numpy, imported on first use, for the layer modules (``from ._numpy import np``): see layerforge/_numpy.py."""

from .._numpy import np

__all__ = ["np"]
