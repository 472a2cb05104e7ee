"""Convolution training throughput, layerforge vs PyTorch CPU (when `import torch` works).

    python benchmarks/conv_bench.py [--rounds 15] [--steps 4] [--threads N] [--env KEY=VALUE ...]
                                    [--no-torch] [--no-layers]

Model (the Keras mnist_cnn shape), batch 64, float32, training mode, synthetic data:
  input (28, 28, 1) -> Conv2D(32, 3x3, relu) -> MaxPooling2D(2) -> Conv2D(64, 3x3, relu) -> MaxPooling2D(2)
  -> Flatten -> Dense(128, relu) -> Dense(10, softmax)

One step = forward + full backward (all weight gradients and every input gradient the model needs; PyTorch
skips the gradient of the model input, layerforge computes it). The loss is ``sum(output * g)`` for a fixed
random ``g`` on both sides. layerforge runs through ``layerforge.engine.model`` when it can build the model,
else layer by layer with ``layerforge.testing.build_layer`` (the same kernels either way); PyTorch runs its
usual NCHW modules with ``torch.set_num_threads`` equal to Numba's thread count.

The machine may be shared: the two sides are timed in alternating rounds (``--steps`` steps each) so load
changes hit both, and both the median and the best round are printed, with the CPU time per batch (all
threads; spin-waiting thread pools show up there). A per-layer table times each convolution layer's forward and
forward+backward alone on both sides.

``--threads N`` (default: all cores) is applied to Numba, PyTorch and OpenBLAS (OPENBLAS_NUM_THREADS, set before
numpy loads). ``--env KEY=VALUE`` sets further environment variables first, e.g. ``--env OMP_WAIT_POLICY=passive``
(GNU OpenMP worker threads then sleep instead of spinning between parallel regions; it applies to Numba's omp
threading layer and to PyTorch alike).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
np = None  # imported in main() once the thread settings are in the environment

BATCH = 64
INPUT = (28, 28, 1)


def model_configs(with_pooling: bool):
    pool = [{"type": "MaxPooling2D", "pool_size": 2}] if with_pooling else []
    return ([{"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"}] + pool
            + [{"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"}] + pool
            + [{"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
               {"type": "Dense", "units": 10, "activation": "softmax"}])


def have_pooling() -> bool:
    try:
        from layerforge.layers import REGISTRY, load_all

        load_all()
        cls = REGISTRY.get("MaxPooling2D")
        return cls is not None and cls.is_trainable()
    except Exception:
        return False


# ---------------------------------------------------------------------------------------- layerforge

def layer_chain_step(configs, x, g):
    from layerforge.testing import build_layer

    built, shape = [], INPUT
    for i, cfg in enumerate(configs):
        b = build_layer(cfg, shape, dtype=np.float32, seed=i, name=f"l{i}")
        built.append(b)
        shape = b.output_shape
    rng = np.random.default_rng(0)

    def step():
        h, caches = x, []
        for b in built:
            h, cache = b.layer.forward(b.params, h, training=True, rng=rng, mask=None)
            caches.append(cache)
        d = g
        for b, cache in zip(reversed(built), reversed(caches), strict=True):
            d, _grads = b.layer.backward(b.params, d, cache)

    step()
    return step, "build_layer chain"


def engine_step(configs, x, g):
    from layerforge.config.model import load_config
    from layerforge.engine.model import CompiledModel
    from layerforge.graph import build_graph

    graph = build_graph(load_config({"name": "bench", "input_shape": list(INPUT), "layers": configs}))
    model = CompiledModel(graph, seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)

    def step():
        _outs, _masks, tape = model.forward([x], training=True, rng=rng)
        model.backward(tape, [g], x.shape[0])

    step()
    return step, "engine.model"


def make_layerforge(configs, x, g):
    try:
        return engine_step(configs, x, g)
    except Exception as exc:  # the engine is developed in parallel; fall back to the layer chain
        print(f"  (engine.model not usable: {type(exc).__name__}: {exc}; timing the layer chain)")
        return layer_chain_step(configs, x, g)


# ---------------------------------------------------------------------------------------- PyTorch

def torch_model(with_pooling: bool):
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    side = (((28 - 2) // 2 - 2) // 2) if with_pooling else 24
    layers = [nn.Conv2d(1, 32, 3), nn.ReLU()] + ([nn.MaxPool2d(2)] if with_pooling else [])
    layers += [nn.Conv2d(32, 64, 3), nn.ReLU()] + ([nn.MaxPool2d(2)] if with_pooling else [])
    layers += [nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(), nn.Linear(128, 10), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)


def torch_step(with_pooling, x, g):
    import torch

    net = torch_model(with_pooling)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    gt = torch.from_numpy(g)

    def step():
        net.zero_grad(set_to_none=True)
        (net(xt) * gt).sum().backward()

    step()
    return step


# ---------------------------------------------------------------------------------------- timing

def alternate(fns: dict, rounds: int, steps: int, cpu: dict | None = None) -> dict:
    """Time every fn in alternating rounds; returns name -> list of seconds per call (one per round).
    ``cpu`` (when given) receives name -> list of CPU seconds per call (process time, all threads)."""
    for fn in fns.values():  # warm up (compilation, buffer pools, allocator)
        for _ in range(2):
            fn()
    out = {name: [] for name in fns}
    if cpu is not None:
        cpu.update({name: [] for name in fns})
    for _ in range(rounds):
        for name, fn in fns.items():
            c0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            out[name].append((time.perf_counter() - t0) / steps)
            if cpu is not None:
                cpu[name].append((time.process_time() - c0) / steps)
    return out


def conv_layer_cases(x, with_pooling: bool):
    """(label, layerforge config, input shape (HWC)) of the two convolutions as they sit in the model."""
    second = (13, 13, 32) if with_pooling else (26, 26, 32)
    return [("Conv2D(32,3x3,relu) on 28x28x1", {"type": "Conv2D", "filters": 32, "kernel_size": 3,
                                                "activation": "relu"}, INPUT),
            (f"Conv2D(64,3x3,relu) on {second[0]}x{second[1]}x32", {"type": "Conv2D", "filters": 64,
                                                                    "kernel_size": 3, "activation": "relu"}, second)]


def layer_fns(cfg, shape, have_torch, threads):
    from layerforge.testing import build_layer

    rng = np.random.default_rng(1)
    b = build_layer(cfg, shape, dtype=np.float32)
    x = rng.standard_normal((BATCH, *shape)).astype(np.float32)
    y, _ = b.layer.forward(b.params, x, training=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)

    def lf_fwd():
        b.layer.forward(b.params, x, training=False)

    def lf_step():
        _, cache = b.layer.forward(b.params, x, training=True)
        b.layer.backward(b.params, dy, cache)

    fns = {"lf fwd": lf_fwd, "lf fwd+bwd": lf_step}
    if have_torch:
        import torch

        conv = torch.nn.Conv2d(shape[-1], cfg["filters"], cfg["kernel_size"])
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)
        dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))

        def t_fwd():
            with torch.no_grad():
                torch.relu(conv(xt))

        def t_step():
            conv.zero_grad(set_to_none=True)
            xt.grad = None
            torch.relu(conv(xt)).backward(dyt)

        fns.update({"torch fwd": t_fwd, "torch fwd+bwd": t_step})
    return fns


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=4, help="steps per timed round")
    ap.add_argument("--threads", type=int, default=None, help="threads for every side (default: all cores)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable set before numpy, Numba and PyTorch load (repeatable)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    args = ap.parse_args(argv)

    threads = args.threads or os.cpu_count() or 1
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    for item in args.env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    global np
    import numba
    import numpy

    np = numpy
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    threads = numba.get_num_threads()
    have_torch = False
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(threads)
            have_torch = True
        except Exception:
            print("PyTorch not importable: layerforge figures only")
    pooling = have_pooling()
    print(f"threads: {threads}; numba {numba.__version__}; numpy {np.__version__}"
          + (f"; torch {torch.__version__}" if have_torch else "")
          + (f"; env {' '.join(args.env)}" if args.env else ""))
    if not pooling:
        print("MaxPooling2D has no backward yet: the model runs without the pooling layers")

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, *INPUT)).astype(np.float32)
    g = rng.standard_normal((BATCH, 10)).astype(np.float32)
    configs = model_configs(pooling)
    lf_step, how = make_layerforge(configs, x, g)
    fns = {"layerforge": lf_step}
    if have_torch:
        fns["pytorch"] = torch_step(pooling, x, g)
    cpu: dict = {}
    times = alternate(fns, args.rounds, args.steps, cpu)

    print(f"\nmnist_cnn shape{'' if pooling else ' (no pooling)'}, batch {BATCH}, forward+backward per batch "
          f"[{how}], {args.rounds} rounds x {args.steps} steps (Numba threading layer {numba.threading_layer()})")
    for name, ts in times.items():
        med, best = statistics.median(ts), min(ts)
        print(f"  {name:<11} median {med * 1e3:8.2f} ms/batch {BATCH / med:9.0f} samples/s   "
              f"best {best * 1e3:8.2f} ms/batch {BATCH / best:9.0f} samples/s   "
              f"cpu {statistics.median(cpu[name]) * 1e3:8.2f} ms/batch")
    if have_torch:
        ratio_med = statistics.median(times["pytorch"]) / statistics.median(times["layerforge"])
        ratio_best = min(times["pytorch"]) / min(times["layerforge"])
        print(f"  throughput ratio layerforge/pytorch: median {ratio_med:.2f}x, best {ratio_best:.2f}x")

    if not args.no_layers:
        print("\nper convolution layer (batch 64, ms per call: median / best)")
        for label, cfg, shape in conv_layer_cases(x, pooling):
            t = alternate(layer_fns(cfg, shape, have_torch, threads), args.rounds, args.steps)
            cells = "  ".join(f"{k} {statistics.median(v) * 1e3:6.2f}/{min(v) * 1e3:6.2f}" for k, v in t.items())
            print(f"  {label:<34} {cells}")
            if have_torch:
                r = statistics.median(t["torch fwd+bwd"]) / statistics.median(t["lf fwd+bwd"])
                print(f"  {'':<34} fwd+bwd ratio layerforge/pytorch (median): {r:.2f}x")


if __name__ == "__main__":
    main()
