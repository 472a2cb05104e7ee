"""Keep freed memory for reuse instead of returning it to the system after every batch.

A training step allocates and frees the same large arrays every batch (a convolution's output and input
gradient: 5-10 MB each for the Keras mnist_cnn at batch 64). With glibc's defaults, blocks that large are
mapped fresh from the system and unmapped when freed, so every batch pays a page fault per 4 KB touched
(measured: ~2,000 faults and ~10% of the mnist_cnn training step). ``keep_freed_memory`` raises the mmap
threshold to 64 MB (arrays below it come from the heap and are reused) and keeps up to 128 MB of freed heap
instead of trimming it, as PyTorch's CPU caching allocator keeps its blocks. glibc (Linux) only; elsewhere, or
when the user tunes malloc through its own environment variables, it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_done = False


def keep_freed_memory() -> bool:
    """Tune glibc's malloc once per process; returns whether it was done (now or before)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or any(v.startswith("MALLOC_") for v in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                  TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):  # not glibc
        return False
    _done = ok
    return ok
