"""Does layerforge's speed depend on importing numpy before layerforge? (issue 21)

    python benchmarks/import_order.py [--rounds 3] [--threads 2]

Each round starts two fresh processes one after the other, in alternating order: one runs ``import numpy`` and
then ``import layerforge`` (as most scripts and notebooks do), the other imports layerforge first (which sets
``OPENBLAS_THREAD_TIMEOUT`` before numpy loads OpenBLAS). Neither sets any environment variable. Each process
builds the benchmark MLP and mnist_cnn through ``layerforge.Model`` (benchmarks/configs), trains one untimed epoch
of each, then times three times an MLP training epoch, MLP predict, a CNN training epoch and CNN predict
(``--pause S`` sleeps S seconds before each) and prints the median samples/s of each. The parent prints both
orders side by side and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import sys, time, json, statistics
sys.path.insert(0, {root!r})
if {numpy_first}:
    import numpy as np
    import layerforge
else:
    import layerforge
    import numpy as np
from layerforge.kernels.threads import set_threads
set_threads({threads})
from layerforge.api import Model
from layerforge.bench import synthetic_inputs, synthetic_targets
from layerforge.config import load_config
from layerforge.graph import build_graph

def setup(name, batches):
    spec = load_config({here!r} + "/configs/" + name + ".yaml")
    graph = build_graph(spec)
    b = spec.config.training.batch_size
    rng = np.random.default_rng(0)
    xs, ys = synthetic_inputs(graph, b * batches, rng), synthetic_targets(graph, b * batches, rng)
    m = Model(spec, graph, seed=0)
    return m, xs[0], ys[0], b

np.seterr(all="ignore")
mlp = setup("mlp", 100)
cnn = setup("mnist_cnn", 8)
for m, x, y, b in (mlp, cnn):
    m.fit(x, y, epochs=1, batch_size=b)
    m.predict(x, batch_size=b)
rates = {{"mlp_train": [], "mlp_infer": [], "cnn_train": [], "cnn_infer": []}}
for _ in range(3):
    for key, (m, x, y, b) in (("mlp", mlp), ("cnn", cnn)):
        time.sleep({pause})
        t0 = time.perf_counter(); m.fit(x, y, epochs=1, batch_size=b)
        rates[key + "_train"].append(len(x) / (time.perf_counter() - t0))
        time.sleep({pause})
        t0 = time.perf_counter(); m.predict(x, batch_size=b)
        rates[key + "_infer"].append(len(x) / (time.perf_counter() - t0))
print(json.dumps({{k: statistics.median(v) for k, v in rates.items()}}))
"""


def run_child(numpy_first: bool, threads: int, pause: float = 0.0) -> dict:
    code = CHILD.format(root=str(ROOT), here=str(HERE), numpy_first=numpy_first, threads=threads, pause=pause)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS",
                                                              "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds slept before each timed phase (0.3: past OpenBLAS's ~0.1 s spin after the last one)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    runs = {"numpy_first": [], "layerforge_first": []}
    for r in range(args.rounds):
        order = [True, False] if r % 2 == 0 else [False, True]
        for numpy_first in order:
            key = "numpy_first" if numpy_first else "layerforge_first"
            res = run_child(numpy_first, args.threads, args.pause)
            runs[key].append(res)
            print(f"round {r + 1} {key:17s} " + "  ".join(f"{k} {v:9,.0f}" for k, v in res.items())
                  + f"  (load {os.getloadavg()[0]:.2f})", flush=True)
    keys = list(runs["numpy_first"][0])
    print(f"\nmedian samples/s over {args.rounds} rounds, {args.threads} thread(s):")
    summary = {}
    for k in keys:
        a = statistics.median(r[k] for r in runs["numpy_first"])
        b = statistics.median(r[k] for r in runs["layerforge_first"])
        summary[k] = {"numpy_first": a, "layerforge_first": b, "ratio": a / b}
        print(f"  {k:10s} numpy first {a:9,.0f}   layerforge first {b:9,.0f}   numpy-first / layerforge-first "
              f"{a / b:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
