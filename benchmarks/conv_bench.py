"""Convolution training throughput, layerforge vs PyTorch CPU (when `import torch` works).

    python benchmarks/conv_bench.py [--repeats 2] [--rounds 8] [--steps 3] [--threads N] [--env KEY=VALUE ...]
                                    [--no-torch] [--cases model,conv1,conv2,conv2_m3]

Cases (batch 64, float32, training mode, synthetic data; one step = forward + full backward):
  model     the mnist_cnn shape of the brief: input (28, 28, 1) -> Conv2D(32, 3x3, relu) -> MaxPooling2D(2) ->
            Conv2D(64, 3x3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(128, relu) -> Dense(10, softmax).
            Neither side computes the gradient of the model input. The loss is ``sum(output * g)`` for a fixed
            random ``g``. layerforge runs through ``layerforge.engine.model`` (else a build_layer chain).
  conv1     Conv2D(32, 3x3, relu) on 28x28x1 alone (forward; forward + backward including the input gradient)
  conv2     Conv2D(64, 3x3, relu) on 13x13x32 alone (the second convolution of the model above)
  conv2_m3  Conv2D(64, 3x3, relu) on 26x26x32 alone (the second convolution of Keras' mnist_cnn, §11.1 M3)
PyTorch runs its usual NCHW modules (the data is transposed once, outside the timing).

Each framework runs in its own worker process, so their thread pools never compete, with the same thread count
(Numba + OpenBLAS through the environment before numpy loads, ``torch.set_num_threads``). The parent runs the
workers in ABBA order ``--repeats`` times; each worker times ``--rounds`` rounds of ``--steps`` steps per case.
Reported per case: median and best ms per step over all rounds, samples/s, CPU ms per step (all threads:
spin-waiting thread pools show up there) and the throughput ratio layerforge / PyTorch (median).

``--env KEY=VALUE`` sets environment variables in both workers, e.g. ``--env OMP_WAIT_POLICY=passive`` (GNU
OpenMP worker threads then sleep between parallel regions instead of spinning; it applies to Numba's omp
threading layer and to PyTorch alike, and matters a lot on a machine shared with other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 64
INPUT = (28, 28, 1)
CASES = ["model", "conv1", "conv2", "conv2_m3"]
LAYER_CASES = {  # name -> (label, input shape HWC, filters)
    "conv1": ("Conv2D(32,3x3,relu) 28x28x1", (28, 28, 1), 32),
    "conv2": ("Conv2D(64,3x3,relu) 13x13x32", (13, 13, 32), 64),
    "conv2_m3": ("Conv2D(64,3x3,relu) 26x26x32", (26, 26, 32), 64),
}


def model_configs():
    return [{"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
            {"type": "Dense", "units": 10, "activation": "softmax"}]


# ============================================================================================ workers

def _data(np):
    rng = np.random.default_rng(0)
    return rng.random((BATCH, *INPUT)).astype(np.float32), rng.standard_normal((BATCH, 10)).astype(np.float32)


def layerforge_fns(cases, np):
    fns = {}
    if "model" in cases:
        x, g = _data(np)
        try:
            from layerforge.config.model import load_config
            from layerforge.engine.model import CompiledModel
            from layerforge.graph import build_graph

            graph = build_graph(load_config({"name": "bench", "input_shape": list(INPUT), "layers": model_configs()}))
            model = CompiledModel(graph, seed=0, dtype=np.float32)
            rng = np.random.default_rng(0)

            def step():
                _outs, _masks, tape = model.forward([x], training=True, rng=rng)
                model.backward(tape, [g], BATCH)

            step()
        except Exception as exc:  # noqa: BLE001 - the engine is developed in parallel: time the layer chain
            print(f"engine.model not usable ({type(exc).__name__}: {exc}); timing a build_layer chain",
                  file=sys.stderr)
            step = _layer_chain_step(x, g, np)
        fns["model"] = step
    for name in cases:
        if name in LAYER_CASES:
            fns.update(_layerforge_layer(name, np))
    return fns


def _layer_chain_step(x, g, np):
    from layerforge.testing import build_layer

    built, shape = [], INPUT
    for i, cfg in enumerate(model_configs()):
        b = build_layer(cfg, shape, dtype=np.float32, seed=i, name=f"l{i}")
        built.append(b)
        shape = b.output_shape
    from layerforge.kernels.workspace import Workspace

    rng = np.random.default_rng(0)
    ws = Workspace()  # the scratch buffers the engine would hand the layers

    def step():
        h, caches = x, []
        for b in built:
            h, cache = b.layer.forward(b.params, h, training=True, rng=rng, mask=None, workspace=ws)
            caches.append(cache)
        d = g
        for i, (b, cache) in enumerate(zip(reversed(built), reversed(caches), strict=True)):
            # the first layer's input needs no gradient
            d, _grads = b.layer.backward(b.params, d, cache, need_dx=i < len(built) - 1, workspace=ws)

    step()
    return step


def _layerforge_layer(name, np):
    from layerforge.testing import build_layer

    _, shape, filters = LAYER_CASES[name]
    rng = np.random.default_rng(1)
    b = build_layer({"type": "Conv2D", "filters": filters, "kernel_size": 3, "activation": "relu"}, shape,
                    dtype=np.float32)
    x = rng.standard_normal((BATCH, *shape)).astype(np.float32)
    from layerforge.kernels.workspace import Workspace

    ws = Workspace()
    y, _ = b.layer.forward(b.params, x, training=True, workspace=ws)
    dy = rng.standard_normal(y.shape).astype(np.float32)

    def fwd():
        b.layer.forward(b.params, x, training=False, workspace=ws)

    def step():
        _, cache = b.layer.forward(b.params, x, training=True, workspace=ws)
        b.layer.backward(b.params, dy, cache, workspace=ws)

    return {f"{name} fwd": fwd, f"{name} fwd+bwd": step}


def torch_fns(cases, np, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn = torch.nn
    fns = {}
    if "model" in cases:
        x, g = _data(np)
        net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
                            nn.Softmax(dim=1))
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        gt = torch.from_numpy(g)

        def model_step(net=net, xt=xt, gt=gt):
            net.zero_grad(set_to_none=True)
            (net(xt) * gt).sum().backward()

        fns["model"] = model_step
    for name in cases:
        if name not in LAYER_CASES:
            continue
        _, shape, filters = LAYER_CASES[name]
        rng = np.random.default_rng(1)
        conv = nn.Conv2d(shape[-1], filters, 3)
        x = rng.standard_normal((BATCH, *shape)).astype(np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)
        with torch.no_grad():
            out_shape = conv(xt).shape
        dyt = torch.from_numpy(rng.standard_normal(tuple(out_shape)).astype(np.float32))

        def fwd(conv=conv, xt=xt):
            with torch.no_grad():
                torch.relu(conv(xt))

        def step(conv=conv, xt=xt, dyt=dyt):
            conv.zero_grad(set_to_none=True)
            xt.grad = None
            torch.relu(conv(xt)).backward(dyt)

        fns[f"{name} fwd"] = fwd
        fns[f"{name} fwd+bwd"] = step
    return fns


def worker(side: str, cases: list[str], threads: int, rounds: int, steps: int) -> dict:
    # layerforge before numpy: it sets OpenBLAS's thread timeout, read when numpy loads (layerforge/__init__.py)
    import layerforge  # noqa: F401, I001
    import numpy as np

    if side == "layerforge":
        import layerforge.kernels  # noqa: F401 - the package's Numba defaults (threading layer, cache) first
        from layerforge.kernels.threads import set_threads

        set_threads(threads)
        fns = layerforge_fns(cases, np)
    else:
        fns = torch_fns(cases, np, threads)
    out = {}
    for name, fn in fns.items():
        for _ in range(2):  # warm up: JIT / Numba cache load, buffer pools, allocator
            fn()
        wall, cpu = [], []
        for _ in range(rounds):
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(steps):
                fn()
            wall.append((time.perf_counter() - t0) / steps)
            cpu.append((time.process_time() - c0) / steps)
        out[name] = {"wall": wall, "cpu": cpu}
    if side == "layerforge":
        import numba

        out["_meta"] = {"threading_layer": numba.threading_layer(), "numba": numba.__version__,
                        "numpy": np.__version__}
    else:
        import torch

        out["_meta"] = {"torch": torch.__version__}
    return out


# ============================================================================================ parent

def run_worker(side, args, env) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--threads", str(args.threads), "--rounds", str(args.rounds),
           "--steps", str(args.steps), "--cases", ",".join(args.cases)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{proc.stderr}")
    if proc.stderr.strip():
        print(proc.stderr.strip(), file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="ABBA repeats of the two workers")
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds per case in each worker")
    ap.add_argument("--steps", type=int, default=3, help="steps per timed round")
    ap.add_argument("--threads", type=int, default=None, help="threads for both sides (default: all cores)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for both workers (repeatable)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--worker", choices=["layerforge", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    args.threads = args.threads or len(os.sched_getaffinity(0))

    if args.worker:
        print(json.dumps(worker(args.worker, args.cases, args.threads, args.rounds, args.steps)))
        return

    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    sides = ["layerforge"]
    if not args.no_torch:
        probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
        if probe.returncode == 0:
            sides.append("torch")
        else:
            print("PyTorch not importable: layerforge figures only")
    results: dict = {s: {} for s in sides}
    meta: dict = {}
    load_before = os.getloadavg()
    for rep in range(args.repeats):
        order = sides if rep % 2 == 0 else sides[::-1]
        for side in order:
            res = run_worker(side, args, env)
            meta[side] = res.pop("_meta")
            for name, d in res.items():
                slot = results[side].setdefault(name, {"wall": [], "cpu": []})
                slot["wall"] += d["wall"]
                slot["cpu"] += d["cpu"]
    load_after = os.getloadavg()

    print(f"threads {args.threads}; {' '.join(f'{k}={v}' for m in meta.values() for k, v in m.items())}"
          + (f"; env {' '.join(args.env)}" if args.env else ""))
    print(f"batch {BATCH}, ms per step: median / best over {args.repeats} x {args.rounds} rounds of {args.steps} "
          f"steps; cpu = CPU ms per step (all threads); ratio = layerforge / PyTorch throughput (medians)")
    names = list(results["layerforge"])
    for name in names:
        label = "mnist_cnn model fwd+bwd" if name == "model" else \
            LAYER_CASES[name.split()[0]][0] + " " + name.split()[1]
        cells = []
        med = {}
        for side in sides:
            d = results[side].get(name)
            if not d:
                continue
            med[side] = statistics.median(d["wall"])
            cells.append(f"{side[:5]:>5} {med[side] * 1e3:7.2f} / {min(d['wall']) * 1e3:7.2f}  "
                         f"{BATCH / med[side]:7.0f}/s  cpu {statistics.median(d['cpu']) * 1e3:7.2f}")
        ratio = f"  ratio {med['torch'] / med['layerforge']:.2f}x" if "torch" in med else ""
        print(f"  {label:<40} " + " | ".join(cells) + ratio)
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
