"""Peak memory of `layerforge predict` / `evaluate` on a CSV 10x the data memory budget.

    python benchmarks/stream_memory.py [--budget-mb 16] [--factor 10]

Trains a tiny 16-feature classifier, writes a CSV of ``factor`` times ``LAYERFORGE_DATA_BUDGET``, and runs
predict and evaluate on it in fresh processes, printing each one's peak resident memory (ru_maxrss), next to
the same commands on a small file (the interpreter, numpy, Numba and the model: the fixed part). With the
file read in pieces the peak stays near the fixed part plus about the budget, whatever the file's size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CONFIG = """
name: stream-mem
seed: 1
input_shape: [16]
layers:
  - {type: Dense, units: 32, activation: relu}
  - {type: Dense, units: 3, activation: softmax, name: label}
training: {loss: sparse_categorical_crossentropy, optimizer: adam, metrics: [accuracy], epochs: 2, batch_size: 64}
data:
  train: {path: small.csv, target: label}
"""


def write_csv(path: Path, rows: int, rng) -> None:
    header = ",".join(f"f{k}" for k in range(16)) + ",label\n"
    with open(path, "w") as fh:
        fh.write(header)
        block = 50_000
        for start in range(0, rows, block):
            m = min(block, rows - start)
            x = rng.normal(size=(m, 16)).round(4)
            y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1).astype(int)
            lines = [",".join(map(str, r)) + f",c{c}" for r, c in zip(x.tolist(), y.tolist())]
            fh.write("\n".join(lines) + "\n")


def peak_mb(cmd: list[str], env: dict) -> float:
    """Peak RSS in MB of one child process (run via a helper so each measurement is its own)."""
    code = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(r.returncode)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-mb", type=float, default=16)
    ap.add_argument("--factor", type=float, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    env = dict(os.environ, LAYERFORGE_DATA_BUDGET=f"{args.budget_mb}MB")
    lf = [sys.executable, "-m", "layerforge"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "m.yaml").write_text(CONFIG)
        write_csv(tmp / "small.csv", 2000, rng)
        subprocess.run(lf + ["train", str(tmp / "m.yaml"), "-q", "-o", str(tmp / "run")], check=True, env=env)
        target = args.budget_mb * args.factor * 1024 * 1024
        rows = int(target / ((tmp / "small.csv").stat().st_size / 2000))
        write_csv(tmp / "big.csv", rows, rng)
        size = (tmp / "big.csv").stat().st_size / 2**20
        print(f"budget {args.budget_mb:g} MB; big.csv {size:.0f} MB, {rows:,} rows")
        for what, extra in (("predict", ["-o", str(tmp / "p.csv")]), ("evaluate", [])):
            small = peak_mb(lf + [what, str(tmp / "run"), "--data", str(tmp / "small.csv")] + extra, env)
            big = peak_mb(lf + [what, str(tmp / "run"), "--data", str(tmp / "big.csv")] + extra, env)
            print(f"{what:9s} peak RSS: small file {small:.0f} MB, big file {big:.0f} MB "
                  f"(+{big - small:.0f} MB for a {size:.0f} MB file)")


if __name__ == "__main__":
    main()
