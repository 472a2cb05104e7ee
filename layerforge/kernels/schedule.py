"""How many blocks and threads a parallel region gets, decided from its work (issue 21).

Two rules, as in PyTorch's intra-op pool:

* **Blocks come from the work, never from the thread count.** A region of ``work`` units is cut into at most
  ``work // grain`` blocks (so every block is worth starting a thread for), at most one per item (sample, row),
  and at most ``max_blocks()``: the machine's cores, a constant of the machine, not of ``set_threads``. Each block
  computes the same thing in the same order whichever thread runs it, and partial results (weight gradients) are
  summed in block order, so a result is bit for bit the same at 1, 2 or any number of threads.
* **Threads never exceed the blocks** nor the configured count (``threads.current_threads``), and a region that
  starts inside another parallel region (a batch of ``predict`` on its own thread reaching a convolution's batch
  blocks or a Numba parallel kernel) runs on its caller's thread alone: the outer region already holds the cores.
  Small work therefore runs on one thread.
"""

from __future__ import annotations

import threading

# Minimum work per block / thread. Starting a block on a pool thread costs ~20-50 us, a Numba parallel launch
# ~30 us; a core does ~50 GFLOP/s of GEMM, a few GB/s of elementwise work, so a block must be worth more than that.
GRAIN_MACS = 1 << 20  # multiply-adds (convolution, recurrent and GEMM blocks): ~20-40 us on one core
GRAIN_ELEMENTS = 32768  # elementwise kernels (PyTorch's at::internal::GRAIN_SIZE)

_inside = threading.local()
_parallel_regions = 0  # regions that ran on more than one thread so far (run_blocks, Numba launches)


def note_parallel_region() -> None:
    global _parallel_regions
    _parallel_regions += 1


def parallel_regions() -> int:
    """How many regions ran on more than one thread in this process so far."""
    return _parallel_regions


def max_blocks() -> int:
    """The most blocks any region is cut into: the machine's cores (independent of the configured threads)."""
    from .threads import cpu_count

    return max(1, cpu_count())


def n_blocks(work: float, items: int, grain: float = GRAIN_MACS) -> int:
    """Blocks for ``work`` units spread over ``items`` independent items (samples, rows): at least ``grain`` units
    per block, at most one block per item and ``max_blocks()`` in all; 1 for small work."""
    if items <= 1 or work < 2 * grain:
        return 1
    return max(1, min(int(work // grain), int(items), max_blocks()))


def in_parallel_region() -> bool:
    """Whether the calling thread is running a block of a parallel region (nested regions run serially)."""
    return getattr(_inside, "depth", 0) > 0


def n_threads(blocks: int) -> int:
    """Threads for a region of ``blocks`` blocks: never more than the blocks or the configured threads, one
    inside another parallel region."""
    from .threads import current_threads

    if blocks <= 1 or in_parallel_region():
        return 1
    return max(1, min(int(blocks), current_threads()))


def numba_threads(elements: int, grain: int = GRAIN_ELEMENTS) -> int:
    """Threads for a Numba ``parallel=True`` kernel over ``elements`` elements."""
    return n_threads(n_blocks(elements, elements, grain))


class region:  # noqa: N801 - used like a function: `with region():`
    """Marks the calling thread as running a block of a parallel region (see ``in_parallel_region``)."""

    def __enter__(self):
        _inside.depth = getattr(_inside, "depth", 0) + 1
        return self

    def __exit__(self, *exc):
        _inside.depth -= 1
        return False


def bounds(items: int, blocks: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of ``items`` cut into ``blocks`` near-equal blocks."""
    return [(items * i // blocks, items * (i + 1) // blocks) for i in range(blocks)]
