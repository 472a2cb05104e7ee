"""Bringing models from other tools into layerforge (and, later, out of it).

`keras_import`: Keras 1, 2 and 3 model files (JSON, legacy HDF5, `.keras`) -> a layerforge config and run directory.
"""
