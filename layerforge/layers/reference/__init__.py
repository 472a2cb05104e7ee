"""Plain-numpy references of the layers that have a fast path (Numba kernels, fused BLAS code).

Each module here mirrors a layer family and gives, per layer, a short ``forward(params, x, config, ...) -> y``
and ``backward(params, x, dy, config, ...) -> (dx, grads)`` written straight from the formulas in
``/work/shared/reference/keras-layers.md`` (the Keras documentation), in the layers' own weight layouts and
conventions. They exist to be read (the maths of a layer in a few lines, next to its fast path) and to be
tested against (``tests/test_reference_maths.py`` compares every fast path with them in float64). They are never
on a hot path: loops over kernel offsets and time steps are fine here, loops over samples are not needed.

They import numpy only (no kernels, no Numba) and read a layer's pydantic config for its hyper-parameters.
"""
