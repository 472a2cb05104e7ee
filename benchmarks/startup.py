"""Start-up time of `layerforge train`: from the process start to the end of the first training batch.

    python benchmarks/startup.py [--models mlp,mnist_cnn,lstm,gru] [--repeats 3] [--threads N] [--json FILE|-]

For each benchmark model (benchmarks/configs/*.yaml) a small synthetic .npz (two batches) is written, then
``layerforge train CONFIG --data FILE --quiet`` runs in a fresh Python process whose first training batch ends
the process (a hook on ``Trainer.train_batch``). The parent measures the wall time from starting the process to
that moment: interpreter start, imports, config, graph, weights, data, and the first batch with its Numba work.

* cold: ``NUMBA_CACHE_DIR`` points at a new empty folder, so every kernel the model uses is compiled;
* warm: the same folder again (filled by the cold run): the kernels load from the on-disk cache.

Also reported: ``layerforge --help`` and whether it loaded Numba (it must not).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
MODELS = ("mlp", "mnist_cnn", "lstm", "gru")

CHILD = """
import os, sys
sys.path.insert(0, {root!r})
from layerforge.engine import training
_train_batch = training.Trainer.train_batch
def _first(self, *args, **kwargs):
    out = _train_batch(self, *args, **kwargs)
    sys.stdout.write("FIRST_BATCH\\n"); sys.stdout.flush()
    os._exit(0)
training.Trainer.train_batch = _first
from layerforge.cli import main
sys.argv = ["layerforge", "train", {config!r}, "--data", {data!r}, "--output", {out!r}, "--quiet"] + {extra!r}
main()
"""


def _write_data(config: Path, folder: Path) -> Path:
    import numpy as np

    from layerforge.bench import synthetic_inputs, synthetic_targets
    from layerforge.config import load_config
    from layerforge.graph import build_graph

    spec = load_config(config)
    graph = build_graph(spec)
    rng = np.random.default_rng(0)
    n = 2 * spec.config.training.batch_size
    (x,), (y,) = synthetic_inputs(graph, n, rng), synthetic_targets(graph, n, rng)
    path = folder / f"{config.stem}.npz"
    np.savez(path, x=x, y=y)
    return path


def time_to_first_batch(config: Path, data: Path, cache_dir: Path, work: Path, threads: int | None) -> float:
    out = Path(tempfile.mkdtemp(dir=work)) / "run"
    extra = ["--threads", str(threads)] if threads else []
    code = CHILD.format(root=str(ROOT), config=str(config), data=str(data), out=str(out), extra=extra)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(work))
    for line in proc.stdout:
        if line.strip() == "FIRST_BATCH":
            elapsed = time.perf_counter() - t0
            proc.wait()
            return elapsed
    err = proc.stderr.read()
    proc.wait()
    raise RuntimeError(f"{config.name}: no first batch (exit {proc.returncode}): {err.strip()[-500:]}")


def help_time() -> dict:
    code = ("import sys, time; t=time.perf_counter(); sys.argv=['layerforge','--help']\n"
            "from layerforge.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(repr(('numba' in sys.modules)))")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    return {"help_s": round(time.perf_counter() - t0, 3), "help_imports_numba": out.stderr.strip().endswith("True")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=3, help="warm runs per model (median)")
    ap.add_argument("--threads", type=int, default=None, help="passed to `layerforge train --threads`")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write JSON ('-': stdout)")
    args = ap.parse_args(argv)
    from layerforge.config import load_config
    from layerforge.errors import UserError
    from layerforge.graph import build_graph

    results = {"help": help_time(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="lf-startup-") as tmp:
        work = Path(tmp)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            config = HERE / "configs" / f"{name}.yaml"
            try:
                build_graph(load_config(config))
            except UserError as exc:
                problems = getattr(exc, "problems", None) or []
                results["models"][name] = {"skipped": "; ".join(p.message for p in problems) or str(exc)}
                continue
            data = _write_data(config, work)
            cache = Path(tempfile.mkdtemp(prefix="numba-cache-", dir=work))
            cold = time_to_first_batch(config, data, cache, work, args.threads)
            warm = [time_to_first_batch(config, data, cache, work, args.threads) for _ in range(args.repeats)]
            results["models"][name] = {"cold_s": round(cold, 3), "warm_s": round(statistics.median(warm), 3),
                                       "warm_all_s": [round(w, 3) for w in warm]}
            print(f"{name}: cold {cold:.2f} s, warm {statistics.median(warm):.2f} s (median of {len(warm)})",
                  file=sys.stderr, flush=True)
    h = results["help"]
    print(f"layerforge --help: {h['help_s']:.2f} s, imports numba: {h['help_imports_numba']}")
    for name, r in results["models"].items():
        if "skipped" in r:
            print(f"{name}: skipped ({r['skipped']})")
        else:
            print(f"{name}: train start to first batch: cold {r['cold_s']:.2f} s, warm {r['warm_s']:.2f} s")
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
