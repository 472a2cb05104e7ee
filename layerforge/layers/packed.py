"""The packed parameter and gradient buffers: one owner for the flat arrays every trainable weight lives in.

The engine keeps every trainable weight as a view into one flat buffer (``values``) and its gradient as a view
into a second buffer of the same layout (``grads``), so an optimizer step is one kernel call over all weights and
layers can write their weight gradients straight into place (backward's ``out``). ``PackedBuffers`` hands out
those views; ``stacked_rows`` recognises weights that sit back to back (a recurrent layer reads kernel, recurrent
kernel and bias as one matrix). This module is the only place that works out where a view lies in its buffer.
"""

from __future__ import annotations

from ._numpy import np


class PackedBuffers:
    """Flat ``values`` and ``grads`` arrays for ``entries`` [(key, shape), ...] in that order, with a view of each
    per key (``value(key)``, ``grad(key)``). Gradients start at zero."""

    def __init__(self, entries: list[tuple[object, tuple]], dtype):
        self.dtype = np.dtype(dtype)
        self._spans: dict = {}
        off = 0
        for key, shape in entries:
            size = _size(shape)
            self._spans[key] = (off, off + size, tuple(shape))
            off += size
        self.values = np.empty(off, dtype=self.dtype)
        self.grads = np.zeros(off, dtype=self.dtype)

    @property
    def size(self) -> int:
        return self.values.size

    def keys(self):
        return self._spans.keys()

    def value(self, key) -> np.ndarray:
        start, stop, shape = self._spans[key]
        return self.values[start:stop].reshape(shape)

    def grad(self, key) -> np.ndarray:
        start, stop, shape = self._spans[key]
        return self.grads[start:stop].reshape(shape)

    def holds(self, array) -> bool:
        """Whether ``array`` is one of the value views (writing into it updates the packed weights)."""
        return isinstance(array, np.ndarray) and array.base is self.values


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def tile(flat: np.ndarray, shapes) -> list[np.ndarray]:
    """Views of ``flat`` with ``shapes``, back to back from its start (the packed layout: an optimizer's slots
    laid out like the weights, a further thread block's gradient arrays)."""
    views, off = [], 0
    for shape in shapes:
        n = _size(shape)
        views.append(flat[off:off + n].reshape(shape))
        off += n
    return views


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def packed_buffer(arrays: list[np.ndarray]) -> np.ndarray | None:
    """The flat 1-D buffer that ``arrays`` exactly tile as consecutive C-contiguous views, in order, else None
    (the engine's weights are so; the optimizer then steps over the buffer in one kernel call)."""
    if not arrays:
        return None
    base = arrays[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = _address(base)
    pos = start
    for a in arrays:
        if a.base is not base or a.dtype != base.dtype or not a.flags.c_contiguous or _address(a) != pos:
            return None
        pos += a.nbytes
    return base if pos == start + base.nbytes else None


def in_place(g: np.ndarray, target: np.ndarray, offset: int) -> bool:
    """Whether ``g`` is the C-contiguous view of ``target`` starting at element ``offset`` (a gradient a layer
    wrote straight into the packed gradient buffer)."""
    return g.base is target and g.flags.c_contiguous and _address(g) == _address(target) + offset * target.itemsize


def stacked_rows(arrays, dt):
    """One (rows, N) view over C-contiguous arrays of N columns (a 1-D array is one row) that sit back to back in
    one buffer, as PackedBuffers lays weights and gradients out; None when they do not."""
    first = arrays[0]
    n = first.shape[-1]
    base = first
    while isinstance(base.base, np.ndarray):
        base = base.base
    if not base.flags.c_contiguous:
        return None
    addr, rows = first.ctypes.data, 0
    for a in arrays:
        if a.dtype != dt or not a.flags.c_contiguous or a.shape[-1] != n or a.ctypes.data != addr:
            return None
        addr += a.nbytes
        rows += a.size // n
    offset = first.ctypes.data - base.ctypes.data
    if offset < 0 or offset + rows * n * dt.itemsize > base.nbytes:
        return None
    return np.ndarray((rows, n), dtype=dt, buffer=base, offset=offset)
