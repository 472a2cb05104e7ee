"""Inference of the four benchmark models (benchmarks/configs, as in run.py): layerforge's own predict against
the same model exported to ONNX (``layerforge.interop.onnx_export``) and run in onnxruntime, same thread count.

    python benchmarks/onnx_infer.py [--models mlp,mnist_cnn,lstm,gru] [--repeats 5] [--threads N] [--batches N]
                                    [--json FILE|-]

Each framework runs in its own worker process with the same threads (layerforge:
``layerforge.kernels.threads.set_threads``, BLAS and Numba; onnxruntime: ``intra_op_num_threads`` = N,
``inter_op_num_threads`` = 1, sequential execution). The parent alternates the workers repeat by repeat (ABBA) so
a change of load on a shared machine hits both. A pass runs every batch of the synthetic data (run.py's
arrays, the config's batch size) through the model: layerforge ``Model.predict(x, batch_size)``, onnxruntime one
``session.run`` per batch, outputs gathered. Each worker process runs one untimed warm-up pass (the JIT
compile, or ORT's graph optimisation), then three timed passes, whose median is that repeat's figure. Reported:
median samples/s over the repeats and the ratio onnxruntime / layerforge of the medians (and of the best
repeats). Before timing, the worker checks that the ONNX outputs equal layerforge's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run import MODELS, _data  # noqa: E402  (the same models and synthetic data as run.py)

DEFAULT_BATCHES = {"mlp": 100, "mnist_cnn": 8, "lstm": 10, "gru": 10}  # run.py's
PASSES = 3  # timed passes per worker process (their median is that round's figure)


def worker(framework: str, name: str, threads: int, batches: int, repeats: int) -> dict:
    from layerforge.kernels.threads import set_threads

    set_threads(threads)
    import numpy as np

    import layerforge

    spec, graph, xs, _ = _data(HERE / "configs" / MODELS[name][0], batches)
    batch = spec.config.training.batch_size
    model = layerforge.Model(spec, graph, seed=0)
    x = xs[0]
    if framework == "layerforge":
        def run():
            return model.predict(x, batch_size=batch)
    else:
        import onnxruntime as ort

        from layerforge.interop.onnx_export import export_onnx

        proto = export_onnx(model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name

        def run():
            return np.concatenate([sess.run(None, {in_name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])

        want = model.predict(x[:batch], batch_size=batch)
        got = sess.run(None, {in_name: x[:batch]})[0]
        err = float(np.max(np.abs(got - want)))
        if err > 1e-4:
            raise SystemExit(f"{name}: ONNX outputs differ from layerforge's by {err:.3g}")
    t0 = time.perf_counter()
    run()
    warmup = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"samples": len(x), "warmup_s": warmup, "times": times}


def _spawn(framework, name, threads, batches, repeats) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, name, "--threads", str(threads),
           "--batches", str(batches), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"worker {framework}/{name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per framework (median)")
    ap.add_argument("--threads", type=int, default=None, help="threads for both (default: all cores)")
    ap.add_argument("--batches", type=int, default=None, help="batches per pass (default: per model)")
    ap.add_argument("--json", default=None, metavar="FILE")
    ap.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = args.threads or os.cpu_count() or 1
    if args.worker:
        framework, name = args.worker
        print(json.dumps(worker(framework, name, threads, args.batches or DEFAULT_BATCHES[name], args.repeats)))
        return
    results = {}
    for name in args.models.split(","):
        batches = args.batches or DEFAULT_BATCHES[name]
        per = {"layerforge": [], "onnxruntime": []}
        # ABBA over the rounds; each worker process: a warm-up pass, then PASSES timed passes
        order = ["layerforge", "onnxruntime"]
        for r in range(args.repeats):
            for fw in (order if r % 2 == 0 else order[::-1]):
                res = _spawn(fw, name, threads, batches, PASSES)
                per[fw].append(res["samples"] / statistics.median(res["times"]))
        med = {fw: statistics.median(v) for fw, v in per.items()}
        best = {fw: max(v) for fw, v in per.items()}
        results[name] = {"threads": threads, "samples_per_s": med, "best": best,
                         "ratio_median": med["onnxruntime"] / med["layerforge"],
                         "ratio_best": best["onnxruntime"] / best["layerforge"]}
        print(f"{name:10s} threads {threads}: layerforge {med['layerforge']:10.0f}/s  onnxruntime "
              f"{med['onnxruntime']:10.0f}/s  ORT/layerforge {results[name]['ratio_median']:.2f}x "
              f"(best {results[name]['ratio_best']:.2f}x)", flush=True)
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
