"""Recurrent-layer training throughput, layerforge vs PyTorch CPU (when `import torch` works).

    python benchmarks/rnn_bench.py [--repeats 20] [--threads N] [--only lstm|gru] [--no-torch]

Cases (forward + backward of one batch, float32, training mode):
  lstm: LSTM(128) on (50 steps x 32 features) + Dense(10), batch 64
  gru:  Embedding(10000, 64) + GRU(64) + Dense(2) on 100 tokens, batch 64

layerforge runs through ``layerforge.engine.model`` when it can build the model, else layer by layer
with ``layerforge.testing.build_layer`` (the same kernels either way). PyTorch gets the same thread
count (``torch.set_num_threads``). The loss is ``sum(output * g)`` for a fixed random ``g`` on both
sides, so both run exactly one forward and one full backward (all weight gradients and BPTT).
Prints the median time per batch, samples/s and the ratio layerforge / PyTorch. Both run in this one process
(their thread pools can disturb each other with more than one thread); benchmarks/run.py, which runs each framework
in its own worker process, is the reference comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _threads_from_argv(argv) -> int:
    """--threads N (default: every core), read before numpy loads so that BLAS starts with N threads."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


THREADS = _threads_from_argv(None)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

# layerforge before numpy: it sets OpenBLAS's thread timeout, read when numpy loads (layerforge/__init__.py)
import layerforge  # noqa: E402, F401, I001
import numpy as np  # noqa: E402


def _timings(fns, repeats: int, warmup: int = 3) -> list[tuple[float, float]]:
    """(median, min) seconds per call of each function, run interleaved so that machine load hits all alike."""
    fns = [f for f in fns if f is not None]
    for f in fns:
        for _ in range(warmup):
            f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return [(statistics.median(t), min(t)) for t in times]


# ---------------------------------------------------------------------------------------- layerforge

def _layer_chain(configs, input_shape, dtype=np.float32):
    """Build the layers one after another (fallback when the engine is not available)."""
    from layerforge.testing import build_layer

    built, shape = [], input_shape
    for i, cfg in enumerate(configs):
        b = build_layer(cfg, shape, dtype=dtype, seed=i, name=f"l{i}")
        built.append(b)
        shape = b.output_shape
    return built


def layerforge_step(configs, input_shape, x, g):
    """A closure running forward + backward once."""
    from layerforge.kernels.workspace import Workspace

    built = _layer_chain(configs, input_shape)
    rng = np.random.default_rng(0)
    ws = Workspace()  # the scratch buffers the engine would hand the layers

    def step():
        h, caches, mask = x, [], None
        for b in built:
            y, cache = b.layer.forward(b.params, h, training=True, rng=rng, mask=mask, workspace=ws)
            mask = b.layer.compute_mask(h, mask)
            caches.append(cache)
            h = y
        d = g
        for b, cache in zip(reversed(built), reversed(caches), strict=True):
            d, _grads = b.layer.backward(b.params, d, cache, workspace=ws)

    return step, "build_layer chain"


def engine_step(configs, input_shape, x, g, input_dtype=None):
    """Same through layerforge.engine.model, when that engine exists and runs this model."""
    from layerforge.config.model import load_config
    from layerforge.engine.model import CompiledModel
    from layerforge.graph import build_graph

    cfg = {"name": "bench", "input_shape": list(input_shape), "layers": [dict(c) for c in configs]}
    if input_dtype:
        cfg["input_dtype"] = input_dtype
    graph = build_graph(load_config(cfg))
    model = CompiledModel(graph, seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)

    def step():
        outs, _masks, tape = model.forward([x], training=True, rng=rng)
        model.backward(tape, [g], x.shape[0], into_buffers=True)  # as training does: into the gradient buffer

    step()
    return step, "engine.model"


def make_layerforge(configs, input_shape, x, g, input_dtype=None):
    try:
        return engine_step(configs, input_shape, x, g, input_dtype)
    except Exception as exc:  # the engine is developed in parallel; fall back to the layer chain
        print(f"  (engine.model not usable here: {type(exc).__name__}: {exc}; timing the layer chain)")
        return layerforge_step(configs, input_shape, x, g)


# ---------------------------------------------------------------------------------------- PyTorch

def torch_lstm_step(x, g, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(x.shape[2], 128, batch_first=True)
    dense = torch.nn.Linear(128, 10)
    xt = torch.from_numpy(x)
    gt = torch.from_numpy(g)

    def step():
        lstm.zero_grad()
        dense.zero_grad()
        out, _ = lstm(xt)
        y = dense(out[:, -1])
        (y * gt).sum().backward()

    return step


def torch_gru_step(tokens, g, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10000, 64)
    gru = torch.nn.GRU(64, 64, batch_first=True)
    dense = torch.nn.Linear(64, 2)
    xt = torch.from_numpy(tokens.astype(np.int64))
    gt = torch.from_numpy(g)

    def step():
        for m in (emb, gru, dense):
            m.zero_grad()
        out, _ = gru(emb(xt))
        y = dense(out[:, -1])
        (y * gt).sum().backward()

    return step


# ---------------------------------------------------------------------------------------- main

def report(name, batch, results, how):
    """results: [(median, min)] for layerforge and, when run, PyTorch."""
    (lf_med, lf_min), *rest = results
    line = (f"{name}\n  layerforge {lf_med * 1e3:8.2f} ms/batch (min {lf_min * 1e3:7.2f}) "
            f"{batch / lf_med:8.0f} samples/s  [{how}]")
    if rest:
        (t_med, t_min), = rest
        line += (f"\n  pytorch    {t_med * 1e3:8.2f} ms/batch (min {t_min * 1e3:7.2f}) {batch / t_med:8.0f} samples/s"
                 f"\n  ratio layerforge/pytorch (throughput): median {t_med / lf_med:.2f}x, best {t_min / lf_min:.2f}x")
    print(line, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="threads for both sides (default: all cores)")
    ap.add_argument("--only", choices=["lstm", "gru"], default=None)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)

    threads = args.threads or THREADS
    from layerforge.kernels import recurrent as K
    from layerforge.kernels.threads import set_threads

    set_threads(threads)
    have_torch = False
    if not args.no_torch:
        try:
            import torch  # noqa: F401

            have_torch = True
        except Exception:
            print("PyTorch not importable: layerforge figures only")
    print(f"threads: {threads} (BLAS, Numba and PyTorch); numpy {np.__version__}")
    kinds = {K.GEMM_FORTRAN: "scipy's Fortran sgemm", K.GEMM_CBLAS64: "CBLAS ILP64", K.GEMM_CBLAS32: "CBLAS LP64"}
    address, kind = K.gemm_for(np.float32)
    versions = {a: v for a, _, v in K.gemm_candidates(np.float32)}
    version = ".".join(map(str, versions.get(address, ()))) or "scipy's"
    print(f"recurrent time loops: {kinds[kind]} (OpenBLAS {version}), one block of samples per thread")
    rng = np.random.default_rng(0)
    batch = 64

    if args.only in (None, "lstm"):
        x = rng.standard_normal((batch, 50, 32)).astype(np.float32)
        g = rng.standard_normal((batch, 10)).astype(np.float32)
        configs = [{"type": "LSTM", "units": 128}, {"type": "Dense", "units": 10}]
        step, how = make_layerforge(configs, (50, 32), x, g)
        other = torch_lstm_step(x, g, threads) if have_torch else None
        report("LSTM(128) on 50x32 + Dense(10), batch 64", batch, _timings([step, other], args.repeats), how)

    if args.only in (None, "gru"):
        tokens = rng.integers(0, 10000, size=(batch, 100)).astype(np.int32)
        g = rng.standard_normal((batch, 2)).astype(np.float32)
        configs = [{"type": "Embedding", "input_dim": 10000, "output_dim": 64}, {"type": "GRU", "units": 64},
                   {"type": "Dense", "units": 2}]
        step, how = make_layerforge(configs, (100,), tokens, g, input_dtype="int32")
        other = torch_gru_step(tokens, g, threads) if have_torch else None
        report("Embedding(10000,64) + GRU(64) + Dense(2) on 100 tokens, batch 64", batch,
               _timings([step, other], args.repeats), how)


if __name__ == "__main__":
    main()
