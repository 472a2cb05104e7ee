"""Scratch arrays of one line of work, owned by whoever runs the layers (the engine), not by the layers.

A layer's forward/backward takes ``workspace=`` (a ``Workspace`` or None). Buffers it needs only during a call, or
from a forward to its backward (im2col columns, recurrent gate buffers), come from ``workspace.pool(key)`` and go
back to it when done; with None the layer allocates fresh arrays. Layers keep no per-call state on themselves,
so one layer object can run on several threads at once as long as each thread has its own workspace (parallel
predict gives every thread one; a training loop has one).

Reuse matters: fresh buffers of a few MB cost page faults on every pass (measured: ~3 ms of a 17 ms LSTM
training step) and serialise the threads. A workspace keeps at most ``max_bytes`` of free arrays in all; a
buffer given back beyond that is dropped (the next take allocates), so inputs of ever new sizes cannot grow it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

# Large enough for the columns and gate buffers of every layer of the benchmark models at batch 256 several times
# over, small next to a machine's memory.
DEFAULT_MAX_BYTES = 512 << 20


class BufferPool:
    """Reusable scratch arrays keyed by (shape, dtype): take one, give it back when done (thread-safe: the blocks
    of one call may share it). At most ``max_shapes`` shapes are kept (the oldest dropped first) and at most four
    arrays of each; a pool belonging to a workspace also stays within the workspace's byte cap."""

    MAX_SHAPES = 16

    def __init__(self, max_shapes: int | None = None, workspace: Workspace | None = None):
        self.max_shapes = max_shapes or self.MAX_SHAPES
        self._free: OrderedDict = OrderedDict()
        self._workspace = workspace
        self._lock = threading.Lock()

    def take(self, shape, dtype) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            stack = self._free.get(key)
            if stack:
                array = stack.pop()
                self._free.move_to_end(key)
                if self._workspace is not None:
                    self._workspace._count(-array.nbytes)
                return array
        return np.empty(shape, dtype=dtype)

    def give(self, array) -> None:
        if array is None:
            return
        key = (array.shape, array.dtype.str)
        with self._lock:
            stack = self._free.get(key)
            if stack is None:
                while len(self._free) >= self.max_shapes:
                    _, dropped = self._free.popitem(last=False)
                    if self._workspace is not None:
                        self._workspace._count(-sum(a.nbytes for a in dropped))
                stack = self._free[key] = []
            if len(stack) >= 4 or any(a is array for a in stack):
                return
            if self._workspace is not None and not self._workspace._count(array.nbytes):
                return  # over the workspace's cap: dropped
            stack.append(array)
            self._free.move_to_end(key)


class Workspace:
    """The buffer pools of one line of work, one per key (a layer and the name of its buffer), within one byte cap
    over all of them. Not to be shared by threads running different batches: give each its own."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = int(max_bytes)
        self.kept_bytes = 0
        self._pools: dict = {}
        self._lock = threading.Lock()

    def pool(self, key, max_shapes: int | None = None) -> BufferPool:
        """The pool of ``key`` (made on first use); ``max_shapes`` bounds the shapes it keeps."""
        found = self._pools.get(key)
        if found is None:
            with self._lock:
                found = self._pools.setdefault(key, BufferPool(max_shapes, self))
        return found

    def _count(self, nbytes: int) -> bool:
        """Add ``nbytes`` to the kept total; False (nothing added) when a positive amount would pass the cap."""
        with self._lock:
            if nbytes > 0 and self.kept_bytes + nbytes > self.max_bytes:
                return False
            self.kept_bytes += nbytes
            return True

    def clear(self) -> None:
        with self._lock:
            self._pools = {}
            self.kept_bytes = 0


def pool_of(workspace: Workspace | None, key, max_shapes: int | None = None) -> BufferPool:
    """``workspace.pool(key)``, or with no workspace a pool of its own that the caller drops (fresh arrays)."""
    if workspace is None:
        return BufferPool(max_shapes)
    return workspace.pool(key, max_shapes)
