"""Data-parallel training speed: samples/s on 1, 2, ... MPI ranks and the gradient Allreduce's share of the time.

    python benchmarks/mpi_bench.py                          # all four benchmark models on 1 and 2 ranks
    python benchmarks/mpi_bench.py --ranks 1,2,4 --models mlp,gru --epochs 5 --json mpi.json
    python benchmarks/mpi_bench.py --ranks 1 --threads 1             # one rank on one core, for comparison

Each setting runs `mpirun -n K` on this script's worker mode: every rank builds the model from its YAML
(benchmarks/configs), takes synthetic data (``layerforge.bench``), installs the data-parallel hooks
(``layerforge.distributed.mpi.DataParallel``, as `train --distributed` does) and trains one untimed epoch (JIT
compile or cache load), then ``--epochs`` timed ones. The global batch is the config's for every K (each rank
computes 1/K of it), so the figures compare the same training. The cores of the machine are divided among the
ranks (K ranks x cores/K threads), as `train --distributed` does. Rank 0 reports samples/s, the step time, the
share of the training time spent inside the gradient Allreduce (waiting for the slower rank included: MPICH
polls while it waits) and the share the Allreduce alone takes (the same buffer reduced with all ranks entering
together, times the number of steps).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = {"mlp": ("mlp.yaml", 40), "mnist_cnn": ("mnist_cnn.yaml", 8), "lstm": ("lstm.yaml", 10),
          "gru": ("gru.yaml", 10)}


def worker(model: str, batches: int, epochs: int, threads: int) -> None:
    sys.path.insert(0, str(ROOT))
    from mpi4py import MPI

    from layerforge.distributed.mpi import ranks_on_this_host
    from layerforge.kernels.threads import cpu_count, set_threads

    comm = MPI.COMM_WORLD
    threads = threads or max(1, cpu_count() // ranks_on_this_host(comm))
    set_threads(threads)
    import numpy as np

    import layerforge
    from layerforge.bench import synthetic_inputs, synthetic_targets
    from layerforge.distributed.mpi import DataParallel

    m = layerforge.Model.from_yaml(HERE / "configs" / MODELS[model][0])
    batch = m.spec.config.training.batch_size
    n = batch * batches
    rng = np.random.default_rng(0)
    xs, ys = synthetic_inputs(m.graph, n, rng), synthetic_targets(m.graph, n, rng)
    trainer = m.trainer
    parallel = DataParallel(comm, trainer, seed=m.seed)
    trainer.parallel = parallel
    x = xs if len(xs) > 1 else xs[0]
    y = ys if len(ys) > 1 else ys[0]
    m.fit(x, y, epochs=1)  # compile / load the kernels
    parallel.allreduce_seconds, parallel.steps = 0.0, 0
    comm.Barrier()
    started = time.perf_counter()
    m.fit(x, y, epochs=1 + epochs)
    comm.Barrier()
    elapsed = time.perf_counter() - started
    share = comm.allreduce(parallel.allreduce_seconds, op=MPI.SUM) / comm.Get_size() / elapsed
    # the Allreduce alone: the same buffer, every rank entering together (after a barrier), so no waiting for a
    # slower rank is counted; the share above includes that wait (MPICH polls while it waits)
    buf = m.compiled.flat_grads.copy()
    pure = []
    for _ in range(20):
        comm.Barrier()
        t0 = time.perf_counter()
        if comm.Get_size() > 1:
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        pure.append(time.perf_counter() - t0)
    pure_step = float(np.median(pure))
    if comm.Get_rank() == 0:
        print(json.dumps({"model": model, "ranks": comm.Get_size(), "threads_per_rank": threads, "batch": batch,
                          "samples_per_s": n * epochs / elapsed, "allreduce_share": share,
                          "allreduce_alone_share": pure_step * parallel.steps / elapsed,
                          "allreduce_alone_ms": 1000 * pure_step, "step_ms": 1000 * elapsed / parallel.steps,
                          "steps": parallel.steps, "gradient_values": int(m.compiled.flat_grads.size)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per setting (default 3)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--threads", type=int, default=0, help="threads per rank (default: the cores / ranks)")
    ap.add_argument("--worker", nargs=4, metavar=("MODEL", "BATCHES", "EPOCHS", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]), int(args.worker[3]))
        return
    mpirun = shutil.which("mpirun", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if mpirun is None:
        sys.exit("no mpirun: pip install 'layerforge[mpi]'")
    rows = []
    print(f"{'model':<10} {'ranks':>5} {'threads':>7} {'samples/s':>10} {'step ms':>8} {'Allreduce':>9} "
          f"{'alone':>6} {'alone ms':>8}")
    for model in args.models.split(","):
        for k in [int(r) for r in args.ranks.split(",")]:
            cmd = [mpirun, "-n", str(k), sys.executable, __file__, "--worker", model, str(MODELS[model][1]),
                   str(args.epochs), str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                print(f"{model} on {k} ranks failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{model:<10} {k:>5} {row['threads_per_rank']:>7} {row['samples_per_s']:>10,.0f} "
                  f"{row['step_ms']:>8.2f} {100 * row['allreduce_share']:>8.1f}% "
                  f"{100 * row['allreduce_alone_share']:>5.1f}% {row['allreduce_alone_ms']:>8.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
