"""The scheduling logic of the engine's parallel regions (kernels/schedule.py, kernels/blocks.py): small work on
one thread, never more threads than blocks or than configured, nested regions serial, and results bit for bit
the same at any thread count. No timings."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from layerforge.kernels import schedule, threads
from layerforge.kernels.blocks import run_blocks


@pytest.fixture
def restore_threads():
    saved = threads.current_threads()
    saved_configured = threads._configured
    yield
    threads.set_threads(saved)
    threads._configured = saved_configured


def test_small_work_is_one_block_on_one_thread(restore_threads):
    threads.set_threads(4)
    assert schedule.n_blocks(100, 64) == 1
    assert schedule.n_blocks(schedule.GRAIN_MACS, 64) == 1  # less than two grains: not worth a second thread
    assert schedule.n_blocks(10**12, 1) == 1  # one item cannot be split
    assert schedule.n_threads(1) == 1
    assert schedule.numba_threads(1000) == 1
    assert schedule.numba_threads(0) == 1


def test_blocks_follow_the_work_and_the_cores_not_the_threads(monkeypatch, restore_threads):
    monkeypatch.setattr(schedule, "max_blocks", lambda: 8)
    counts = set()
    for n in (1, 2, 3, 8):
        threads.set_threads(n)
        counts.add(schedule.n_blocks(5 * schedule.GRAIN_MACS, 64))
    assert counts == {5}
    assert schedule.n_blocks(100 * schedule.GRAIN_MACS, 64) == 8  # at most the cores
    assert schedule.n_blocks(100 * schedule.GRAIN_MACS, 3) == 3  # at most one per item


@pytest.mark.parametrize("configured", [1, 2, 3, 4, 16])
def test_threads_never_exceed_blocks_nor_the_configured_count(configured, restore_threads):
    threads.set_threads(configured)
    for blocks in range(1, 12):
        t = schedule.n_threads(blocks)
        assert 1 <= t <= min(blocks, configured)
    assert schedule.n_threads(64) == configured
    assert schedule.numba_threads(10**9) == min(configured, schedule.max_blocks())


@pytest.mark.parametrize("configured,blocks", [(1, 5), (2, 5), (4, 3), (8, 2), (3, 7)])
def test_run_blocks_uses_at_most_min_blocks_threads_and_keeps_block_order(configured, blocks, restore_threads):
    threads.set_threads(configured)
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def work(k):
        with lock:
            seen[k] = threading.get_ident()
        return k * k

    assert run_blocks(work, blocks) == [k * k for k in range(blocks)]
    assert sorted(seen) == list(range(blocks))
    assert len(set(seen.values())) <= min(blocks, configured)


def test_a_region_inside_a_block_runs_serially(restore_threads):
    threads.set_threads(4)
    inner: list = []

    def work(k):
        inner.append((schedule.in_parallel_region(), schedule.n_threads(8), schedule.numba_threads(10**9)))
        return run_blocks(lambda j: threading.get_ident(), 3)

    outer = run_blocks(work, 2)
    assert all(flag and t == 1 and nt == 1 for flag, t, nt in inner)
    for idents in outer:  # each nested region ran on the thread of its block alone
        assert len(set(idents)) == 1
    assert not schedule.in_parallel_region()


def test_numba_parallel_kernels_get_threads_sized_by_their_arrays(restore_threads):
    import numba
    from numba import njit, prange

    from layerforge.kernels.blocks import one_launch_at_a_time

    @one_launch_at_a_time
    @njit(parallel=True)
    def threads_seen(a):
        for i in prange(a.size):
            a[i] = 1.0
        return numba.get_num_threads()

    threads.set_threads(2)
    before = numba.get_num_threads()
    assert threads_seen(np.zeros(100)) == 1  # small: one thread
    want = min(2, numba.config.NUMBA_NUM_THREADS)
    assert threads_seen(np.zeros(4 * schedule.GRAIN_ELEMENTS)) == want
    assert numba.get_num_threads() == before  # the caller's count is restored


_CONV = """
name: sched-conv
input_shape: [12, 12, 4]
layers:
  - {type: Conv2D, filters: 16, kernel_size: 3, activation: relu}
  - {type: Conv2D, filters: 8, kernel_size: 3, activation: tanh}
  - {type: MaxPooling2D, pool_size: 2}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: adam}, batch_size: 32, epochs: 1}
"""

_CONV_KINDS = """
name: sched-conv-kinds
input_shape: [16, 16, 8]
layers:
  - {type: Conv2DTranspose, filters: 16, kernel_size: 3, activation: relu}
  - {type: DepthwiseConv2D, kernel_size: 3, depth_multiplier: 2, activation: tanh}
  - {type: SeparableConv2D, filters: 8, kernel_size: 3, activation: relu}
  - {type: Flatten}
  - {type: Dense, units: 3, activation: softmax}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: adam}, batch_size: 32, epochs: 1}
"""

_LSTM = """
name: sched-lstm
input_shape: [30, 16]
layers:
  - {type: LSTM, units: 48, return_sequences: true}
  - {type: GRU, units: 24}
  - {type: Dense, units: 3, activation: softmax}
training: {loss: sparse_categorical_crossentropy, optimizer: {type: adam}, batch_size: 32, epochs: 1}
"""


@pytest.mark.parametrize("text", [_CONV, _CONV_KINDS, _LSTM], ids=["conv", "conv-kinds", "lstm"])
def test_training_and_predict_are_bit_identical_at_any_thread_count(text, tmp_path, monkeypatch, restore_threads):
    from layerforge.api import Model
    from layerforge.config import load_config
    from layerforge.graph import build_graph

    monkeypatch.setattr(schedule, "max_blocks", lambda: 4)  # as on a 4-core machine: blocks > threads happens
    path = tmp_path / "m.yaml"
    path.write_text(text)
    spec = load_config(path)
    rng = np.random.default_rng(0)
    shape = tuple(spec.config.input_shape)
    x = rng.standard_normal((64, *shape)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    results = []
    for n in (1, 2, 4):
        threads.set_threads(n)
        model = Model(spec, build_graph(spec), seed=3)
        before = schedule.parallel_regions()
        model.fit(x, y, epochs=1, batch_size=32)
        assert (schedule.parallel_regions() > before) == (n > 1)  # the blocks ran on several threads
        params = model.compiled.params
        weights = [np.array(params[node][name]) for node in sorted(params) for name in sorted(params[node])]
        results.append((weights, np.array(model.predict(x, batch_size=16))))
    for weights, pred in results[1:]:
        assert len(weights) == len(results[0][0])
        for a, b in zip(weights, results[0][0]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(pred, results[0][1])


def test_blas_is_held_to_one_thread_beside_the_engine_threads_from_the_second_call(restore_threads):
    from layerforge.kernels.blocks import blas_controllers, one_blas_thread_beside_engine_threads

    libs = blas_controllers()
    if not libs:
        pytest.skip("threadpoolctl cannot control the BLAS libraries here")
    threads.set_threads(2)

    class Owner:
        pass

    seen = []

    @one_blas_thread_beside_engine_threads("phase")
    def step(owner, parallel: bool):
        seen.append(max(lib.num_threads for lib in libs))
        if parallel:
            run_blocks(lambda k: k, 2)

    engine_threaded, gemm_only = Owner(), Owner()
    for _ in range(2):
        step(engine_threaded, True)
        step(gemm_only, False)
    assert seen == [2, 2, 1, 2]  # learned from the first call: held from the second on, for that owner only
    assert max(lib.num_threads for lib in libs) == 2  # restored afterwards
