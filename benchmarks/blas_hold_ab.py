"""The BLAS hold beside the engine's threads, on and off, in one process (issue 21).

    python benchmarks/blas_hold_ab.py [--model mnist_cnn] [--rounds 12] [--threads 2]

Imports numpy before layerforge (so OpenBLAS's workers spin ~0.1 s after each multi-threaded call unless
OPENBLAS_THREAD_TIMEOUT was exported), builds the model, then alternates training epochs with the hold
(``kernels.blocks.one_blas_thread_beside_engine_threads``: BLAS at one thread for the whole step) and without it
(its knowledge cleared before every batch, so the Dense GEMMs run on BLAS's threads between the engine's batch
blocks, as before issue 21), with a 0.3 s pause before each epoch; prints the median and best samples/s of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np  # first, as most scripts do

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mnist_cnn")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args(argv)
    import layerforge  # noqa: F401
    from layerforge.api import Model
    from layerforge.bench import synthetic_inputs, synthetic_targets
    from layerforge.config import load_config
    from layerforge.graph import build_graph
    from layerforge.kernels import blocks
    from layerforge.kernels.threads import set_threads

    set_threads(args.threads)
    spec = load_config(HERE / "configs" / f"{args.model}.yaml")
    graph = build_graph(spec)
    b = spec.config.training.batch_size
    n = b * args.batches
    rng = np.random.default_rng(0)
    xs, ys = synthetic_inputs(graph, n, rng), synthetic_targets(graph, n, rng)
    model = Model(spec, graph, seed=0)
    model.fit(xs[0], ys[0], epochs=1, batch_size=b)
    trainer = model.trainer
    rates: dict[str, list[float]] = {"held": [], "not held": []}
    with np.errstate(all="ignore"):
        for i in range(args.rounds):
            mode = "held" if i % 2 == 0 else "not held"
            time.sleep(0.3)
            t0 = time.perf_counter()
            for s in range(0, n, b):
                if mode == "not held":
                    blocks._beside_engine_threads[trainer] = {}
                trainer.train_batch([x[s:s + b] for x in xs], [y[s:s + b] for y in ys], None)
            rates[mode].append(n / (time.perf_counter() - t0))
    for mode, v in rates.items():
        print(f"{args.model} training, BLAS {mode:8s}: median {statistics.median(v):9,.0f}  best {max(v):9,.0f} "
              f"samples/s ({len(v)} epochs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
