"""layerforge against PyTorch CPU on five models, training and inference throughput (see README.md).

    python benchmarks/run.py [--models mlp,mnist_cnn,lstm,gru,transformer] [--repeats 5] [--threads N[,N...]]
                             [--json FILE|-] [--batches N] [--no-torch]

``--threads 1,2,4,8,16`` sweeps: every model at every thread count (one table per thread count), then the scaling
table: each model's training and inference throughput per thread count, its ratio to PyTorch, and the rule of
issue 21, "throughput at n threads >= 0.95x its best at any lower thread count", checked for every cell.

Each model is the config in benchmarks/configs/<name>.yaml, built by layerforge (``layerforge.Model``) and, when
PyTorch is installed, re-stated in PyTorch with the same layers, initial-weight-independent shapes, optimizer
(Adam, lr 0.001), loss (softmax + sparse categorical cross-entropy; PyTorch's CrossEntropyLoss on logits),
batch size and synthetic data (the same arrays, drawn by ``layerforge.bench``).

Every framework runs in its own worker process (so their thread pools never compete and each one's memory is
its own), with the same thread count: ``layerforge.kernels.threads.set_threads`` (Numba + BLAS) and
``torch.set_num_threads``. The parent alternates the workers phase by phase and repeat by repeat (ABBA order)
so a change of load on a shared machine hits both. A phase is one epoch over ``batches`` batches:

* train: shuffle, gather each batch, forward, loss, backward, optimizer step (layerforge: ``Model.fit`` for one
  epoch; PyTorch: the usual loop with ``zero_grad(set_to_none=True)``);
* infer: forward of every batch in inference mode, outputs gathered (``Model.predict`` / ``torch.inference_mode``
  with a softmax, as the layerforge model outputs probabilities).

Before the repeats each worker runs one batch of each phase (layerforge: the JIT compile or the Numba cache
load); that time is reported apart ("first batch"). Reported: median samples/s over the repeats, the ratio
layerforge / PyTorch of the medians (and of the best repeats: on a shared machine other jobs only ever add
time, so the best repeat is the steadier estimate), and peak memory per phase: the worker's peak resident set
size (Linux ``VmHWM`` from /proc/self/status, reset before each phase through /proc/self/clear_refs; elsewhere
``ru_maxrss``, which is the peak since the worker started) and its increase over the resident size at the start
of the phase.

For the MLP the layerforge worker also times numpy's float32 GEMMs for the MLP's training shapes (forward,
weight gradients, input gradients except the first layer's) back to back, and the MLP's training throughput is
given as a percentage of that GEMM-only rate.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

MODELS = {  # name -> (config, default batches per epoch)
    "mlp": ("mlp.yaml", 100),
    "mnist_cnn": ("mnist_cnn.yaml", 8),
    "lstm": ("lstm.yaml", 10),
    "gru": ("gru.yaml", 10),
    "transformer": ("transformer.yaml", 10),
}
SEED = 0
PAUSE_S = 0.05  # between phases (see bench_model)


# ============================================================================ memory

def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


def _memory_phase(fn) -> dict:
    """Run fn(); peak RSS during it (MB) and the increase over the RSS at its start."""
    import resource

    exact = _reset_peak()
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    if exact:
        peak = _status_kb("VmHWM")
        method = "VmHWM"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak // 1024 if sys.platform == "darwin" else peak
        method = "ru_maxrss"
    return {"seconds": seconds, "peak_rss_mb": round(peak / 1024, 1),
            "peak_increase_mb": round((peak - before) / 1024, 1) if before is not None else None,
            "memory_method": method}


# ============================================================================ data

def _data(config: Path, batches: int):
    """The model's spec and graph, and the synthetic inputs and targets both workers use (same arrays)."""
    import numpy as np

    from layerforge.bench import synthetic_inputs, synthetic_targets
    from layerforge.config import load_config
    from layerforge.graph import build_graph

    spec = load_config(config)
    graph = build_graph(spec)
    n = spec.config.training.batch_size * batches
    rng = np.random.default_rng(SEED)
    return spec, graph, synthetic_inputs(graph, n, rng), synthetic_targets(graph, n, rng)


# ============================================================================ layerforge worker

class LayerforgeWorker:
    def __init__(self, config: Path, threads: int, batches: int):
        from layerforge.kernels.threads import set_threads

        set_threads(threads)
        import numpy as np

        from layerforge.api import Model

        self.np = np
        spec, graph, self.xs, self.ys = _data(config, batches)
        self.batch = spec.config.training.batch_size
        n = len(self.xs[0])
        t0 = time.perf_counter()
        self.model = Model(spec, graph, seed=SEED)
        self.build_s = time.perf_counter() - t0
        self.n = n
        self.ready = {}
        with np.errstate(all="ignore"):
            xb, yb = [x[:self.batch] for x in self.xs], [y[:self.batch] for y in self.ys]
            t0 = time.perf_counter()
            self.model.trainer.train_batch(xb, yb, None)
            self.ready["first_train_batch_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            self.model.compiled.forward(xb, training=False, keep=False)
            self.ready["first_inference_batch_s"] = time.perf_counter() - t0
        self.ready["build_s"] = self.build_s

    def train(self):
        self.model.fit(self.xs if len(self.xs) > 1 else self.xs[0], self.ys if len(self.ys) > 1 else self.ys[0],
                       epochs=1, batch_size=self.batch)  # one more epoch from the current weights

    def infer(self):
        self.model.predict(self.xs if len(self.xs) > 1 else self.xs[0], batch_size=self.batch)

    def gemm(self) -> dict:
        """numpy float32 GEMM rate for the MLP's training GEMMs (run back to back, median of 7 rounds)."""
        np = self.np
        rng = np.random.default_rng(0)
        B = self.batch
        dense = [n for n in self.model.graph.nodes if n.layer.type == "Dense"]
        shapes = [(n.input_shape[-1], n.layer.config.units) for n in dense]
        ops = []
        for k, (fan_in, units) in enumerate(shapes):
            x = rng.standard_normal((B, fan_in), dtype=np.float32)
            w = rng.standard_normal((fan_in, units), dtype=np.float32)
            dz = rng.standard_normal((B, units), dtype=np.float32)
            ops.append(lambda x=x, w=w: x @ w)
            ops.append(lambda x=x, dz=dz: x.T @ dz)
            if k:
                ops.append(lambda dz=dz, w=w: dz @ w.T)
        flops = 2 * B * (2 * sum(i * o for i, o in shapes) + sum(i * o for i, o in shapes[1:]))
        for op in ops:
            op()
        rounds = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(20):
                for op in ops:
                    op()
            rounds.append((time.perf_counter() - t0) / 20)
        step = statistics.median(rounds)
        return {"gemm_gflops": flops / step / 1e9, "flops_per_step": flops, "gemm_step_ms": step * 1e3,
                "batch": B}


# ============================================================================ PyTorch worker

class TorchWorker:
    def __init__(self, config: Path, threads: int, batches: int):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        spec, graph, xs, ys = _data(config, batches)
        self.batch = spec.config.training.batch_size
        self.n = len(xs[0])
        torch.manual_seed(SEED)
        self.net, self.x = self._build(spec.config.name, xs[0])
        self.y = torch.from_numpy(ys[0].astype("int64"))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()
        self.gen = torch.Generator().manual_seed(SEED)
        self.ready = {"build_s": 0.0}
        t0 = time.perf_counter()
        self._train_batches(1)
        self.ready["first_train_batch_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._infer_batches(1)
        self.ready["first_inference_batch_s"] = time.perf_counter() - t0

    def _build(self, name: str, x):
        torch, nn = self.torch, self.torch.nn

        class LastStep(nn.Module):
            def __init__(self, rnn):
                super().__init__()
                self.rnn = rnn

            def forward(self, v):
                out, _ = self.rnn(v)
                return out[:, -1]

        if name == "bench-mlp":
            net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
            return net, torch.from_numpy(x)
        if name == "bench-mnist-cnn":
            net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                                nn.Linear(128, 10))
            return net, torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # NHWC -> NCHW, PyTorch's layout
        if name == "bench-lstm":
            net = nn.Sequential(LastStep(nn.LSTM(32, 128, batch_first=True)), nn.Linear(128, 10))
            return net, torch.from_numpy(x)
        if name == "bench-gru":
            net = nn.Sequential(nn.Embedding(10000, 64), LastStep(nn.GRU(64, 64, batch_first=True)),
                                nn.Linear(64, 2))
            return net, torch.from_numpy(x.astype("int64"))
        if name == "bench-transformer":
            return _torch_transformer(torch), torch.from_numpy(x.astype("int64"))
        raise SystemExit(f"no PyTorch version of {name}")

    def _train_batches(self, count=None):
        torch = self.torch
        self.net.train()
        order = torch.randperm(self.n, generator=self.gen)
        stop = self.n if count is None else count * self.batch
        for start in range(0, stop, self.batch):
            idx = order[start:start + self.batch]
            xb, yb = self.x[idx], self.y[idx]
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.net(xb), yb)
            loss.backward()
            self.opt.step()

    def _infer_batches(self, count=None):
        torch = self.torch
        self.net.eval()
        stop = self.n if count is None else count * self.batch
        outs = []
        with torch.inference_mode():
            for start in range(0, stop, self.batch):
                outs.append(torch.softmax(self.net(self.x[start:start + self.batch]), dim=-1))
        return torch.cat(outs)

    def train(self):
        self._train_batches()

    def infer(self):
        self._infer_batches()


def _torch_transformer(torch):
    """benchmarks/configs/transformer.yaml in PyTorch: post-norm encoder blocks as the layerforge config states
    them (x = LN(x + MHA(x, x, x)); x = LN(x + FF(x))), mean pooling over time, a linear head (logits; the loss
    applies the softmax)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(64, 4, batch_first=True)
            self.ln1 = nn.LayerNorm(64, eps=1e-3)
            self.ff = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
            self.ln2 = nn.LayerNorm(64, eps=1e-3)

        def forward(self, x):
            a, _ = self.mha(x, x, x, need_weights=False)
            x = self.ln1(x + a)
            return self.ln2(x + self.ff(x))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5000, 64)
            self.blocks = nn.Sequential(Block(), Block())
            self.head = nn.Linear(64, 2)

        def forward(self, ids):
            return self.head(self.blocks(self.embed(ids)).mean(dim=1))

    return Encoder()


def worker_main(framework: str, model: str, threads: int, batches: int) -> None:
    """Answer commands on stdin (train / infer / gemm / quit) with one JSON line each."""
    config = HERE / "configs" / MODELS[model][0]
    try:
        # layerforge before numpy, as in the command-line tool: it sets OpenBLAS's thread timeout, which OpenBLAS
        # reads when numpy loads it (see layerforge/__init__.py).
        import layerforge  # noqa: F401, I001
        import numpy as np

        np.seterr(all="ignore")
        w = (LayerforgeWorker if framework == "layerforge" else TorchWorker)(config, threads, batches)
    except Exception as exc:  # reported by the parent as a skip
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    print(json.dumps({"ready": True, "samples": w.n, "batch": w.batch, **w.ready}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        try:
            if cmd == "gemm":
                out = w.gemm()
            else:
                out = _memory_phase(getattr(w, cmd))
                out["samples"] = w.n
        except Exception as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)


# ============================================================================ parent

class Worker:
    def __init__(self, framework: str, model: str, threads: int, batches: int):
        self.framework = framework
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", framework, model, "--threads",
                                      str(threads), "--batches", str(batches)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"the {self.framework} worker exited (code {self.proc.wait()})"}
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _skip_reason(model: str) -> str | None:
    """Why layerforge cannot build the model yet (e.g. a layer type not registered), or None."""
    from layerforge.config import load_config
    from layerforge.errors import UserError
    from layerforge.graph import build_graph

    try:
        build_graph(load_config(HERE / "configs" / MODELS[model][0]))
    except UserError as exc:
        problems = getattr(exc, "problems", None) or []
        return "; ".join(p.message for p in problems) or str(exc)
    return None


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def bench_model(model: str, *, repeats: int, threads: int, batches: int, with_torch: bool, log) -> dict:
    reason = _skip_reason(model)
    if reason:
        return {"model": model, "skipped": reason}
    frameworks = ["layerforge"] + (["torch"] if with_torch else [])
    workers = {f: Worker(f, model, threads, batches) for f in frameworks}
    try:
        result: dict = {"model": model, "threads": threads}
        for f, w in list(workers.items()):
            if "error" in w.hello:
                if f == "layerforge":
                    return {"model": model, "skipped": w.hello["error"]}
                log(f"  {f}: {w.hello['error']} (left out)")
                w.close()
                del workers[f]
        first = workers["layerforge"].hello
        result.update(samples_per_epoch=first["samples"], batch_size=first["batch"])
        runs = {f: {"train": [], "infer": []} for f in workers}
        order = list(workers)
        for r in range(repeats):
            seq = order if r % 2 == 0 else order[::-1]
            for phase in ("train", "infer"):
                for f in seq:
                    # a pause first: PyTorch's OpenMP (libgomp) threads spin for 5-8 ms after a parallel region
                    # (measured here), which would take a core from whichever phase comes next
                    time.sleep(PAUSE_S)
                    out = workers[f].ask(phase)
                    if "error" in out:
                        raise RuntimeError(f"{f} {phase}: {out['error']}")
                    runs[f][phase].append(out)
            log(f"  repeat {r + 1}/{repeats}: " + ", ".join(
                f"{f} train {runs[f]['train'][-1]['samples'] / runs[f]['train'][-1]['seconds']:,.0f}/s "
                f"infer {runs[f]['infer'][-1]['samples'] / runs[f]['infer'][-1]['seconds']:,.0f}/s" for f in order))
        for f in workers:
            entry = {"first_train_batch_s": round(workers[f].hello["first_train_batch_s"], 4),
                     "first_inference_batch_s": round(workers[f].hello["first_inference_batch_s"], 4)}
            for phase in ("train", "infer"):
                rs = runs[f][phase]
                rates = [o["samples"] / o["seconds"] for o in rs]
                entry[f"{phase}_samples_per_s"] = round(statistics.median(rates), 1)
                entry[f"{phase}_samples_per_s_best"] = round(max(rates), 1)
                entry[f"{phase}_samples_per_s_all"] = [round(v, 1) for v in rates]
                entry[f"{phase}_peak_rss_mb"] = max(o["peak_rss_mb"] for o in rs)
                inc = [o["peak_increase_mb"] for o in rs if o["peak_increase_mb"] is not None]
                entry[f"{phase}_peak_increase_mb"] = max(inc) if inc else None
                entry["memory_method"] = rs[0]["memory_method"]
            result[f] = entry
        if "torch" in workers:
            for phase in ("train", "infer"):
                result[f"{phase}_ratio"] = round(result["layerforge"][f"{phase}_samples_per_s"]
                                                 / result["torch"][f"{phase}_samples_per_s"], 3)
                result[f"{phase}_ratio_best"] = round(result["layerforge"][f"{phase}_samples_per_s_best"]
                                                      / result["torch"][f"{phase}_samples_per_s_best"], 3)
        if model == "mlp":
            g = workers["layerforge"].ask("gemm")
            lf_gflops = g["flops_per_step"] / g["batch"] * result["layerforge"]["train_samples_per_s"] / 1e9
            result["gemm"] = {"numpy_gemm_gflops": round(g["gemm_gflops"], 2),
                              "numpy_gemm_step_ms": round(g["gemm_step_ms"], 4),
                              "layerforge_training_gflops": round(lf_gflops, 2),
                              "percent_of_numpy_gemm": round(100 * lf_gflops / g["gemm_gflops"], 1)}
        return result
    finally:
        for w in workers.values():
            w.close()


def _render(results: list[dict], meta: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"layerforge vs PyTorch CPU, {meta['threads']} thread(s), median of {meta['repeats']} "
                        "repeats (samples/s); ratio of medians (ratio of best repeats)", header_style="bold",
                  title_justify="left")
    for col in ("model", "train lf", "train torch", "ratio", "infer lf", "infer torch", "ratio",
                "1st batch lf s", "train peak MB lf/torch", "infer peak MB lf/torch"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for r in results:
        if "skipped" in r:
            table.add_row(r["model"], "[yellow]skipped[/]", *[""] * 8)
            continue
        lf, th = r["layerforge"], r.get("torch")
        table.add_row(
            r["model"], f"{lf['train_samples_per_s']:,.0f}", f"{th['train_samples_per_s']:,.0f}" if th else "-",
            f"{r['train_ratio']:.2f}x ({r['train_ratio_best']:.2f}x)" if th else "-",
            f"{lf['infer_samples_per_s']:,.0f}", f"{th['infer_samples_per_s']:,.0f}" if th else "-",
            f"{r['infer_ratio']:.2f}x ({r['infer_ratio_best']:.2f}x)" if th else "-",
            f"{lf['first_train_batch_s']:.2f}",
            *(f"{lf[k]:.0f} / {th[k]:.0f}" if th else f"{lf[k]:.0f}"
              for k in ("train_peak_rss_mb", "infer_peak_rss_mb")))
    console.print(table)
    for r in results:
        if "skipped" in r:
            console.print(f"[yellow]{r['model']} skipped[/]: {r['skipped']}")
    for r in results:
        if "gemm" in r:
            g = r["gemm"]
            console.print(f"MLP training: {g['layerforge_training_gflops']:.1f} GFLOP/s in GEMM work = "
                          f"{g['percent_of_numpy_gemm']:.0f}% of numpy's float32 GEMM rate for the same shapes "
                          f"({g['numpy_gemm_gflops']:.1f} GFLOP/s)")
    console.print(f"load average before/after: {meta['load_before']} / {meta['load_after']}; memory: peak RSS of "
                  f"each worker during the phase ({meta['memory_method']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--repeats", type=int, default=5, help="epochs timed per phase and framework (median)")
    ap.add_argument("--threads", default=None,
                    help="threads for both frameworks, or a comma list to sweep, e.g. 1,2,4,8,16 (default: all cores)")
    ap.add_argument("--batches", type=int, default=None, help="batches per epoch (default: per model)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON ('-': stdout)")
    ap.add_argument("--no-torch", action="store_true", help="layerforge only")
    ap.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from layerforge.kernels.threads import cpu_count

    try:
        counts = [int(t) for t in args.threads.split(",") if t.strip()] if args.threads else [cpu_count()]
    except ValueError:
        ap.error(f"--threads takes a number or a comma list of numbers, e.g. 1,2,4 (got {args.threads!r})")
    if not counts or min(counts) < 1:
        ap.error("--threads: every count must be at least 1")
    if args.worker:
        worker_main(args.worker[0], args.worker[1], counts[0], args.batches or MODELS[args.worker[1]][1])
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    with_torch = not args.no_torch and _torch_available()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if not with_torch and not args.no_torch:
        log("PyTorch is not installed: layerforge only (pip install torch==2.13.0 for the comparison)")
    if max(counts) > cpu_count():
        log(f"note: {max(counts)} threads on {cpu_count()} cores: the larger counts only measure oversubscription")
    meta = {"threads": counts[0] if len(counts) == 1 else counts, "repeats": args.repeats, "load_before": _load(),
            "python": sys.version.split()[0], "cores": cpu_count(), "torch": with_torch,
            "memory_method": "VmHWM reset per phase" if _reset_peak() else "ru_maxrss",
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    # model by model, its thread counts one after the other, so a change of load on a shared machine hits a model's
    # whole sweep alike rather than one thread count
    sweeps = [{"threads": n, "results": [], "load": []} for n in sorted(set(counts))]
    for m in models:
        for sweep in sweeps:
            n = sweep["threads"]
            log(f"{m}, {n} thread(s) ...")
            sweep["results"].append(bench_model(m, repeats=args.repeats, threads=n,
                                                batches=args.batches or MODELS[m][1], with_torch=with_torch, log=log))
            sweep["load"].append(_load())
    meta["load_after"] = _load()
    for sweep in sweeps:
        _render(sweep["results"], {**meta, "threads": sweep["threads"]})
    out: dict = {"meta": meta}
    if len(sweeps) == 1:
        out["results"] = sweeps[0]["results"]
    else:
        out["sweeps"] = sweeps
        out["scaling"] = scaling(sweeps)
        _render_scaling(out["scaling"])
    if args.json:
        text = json.dumps(out, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


SCALING_RULE = 0.95  # issue 21: at n threads, at least 0.95x the best at any lower thread count


def scaling(sweeps: list[dict]) -> list[dict]:
    """Per model and phase: layerforge's (and PyTorch's) samples/s at each thread count, the ratio to PyTorch, and
    whether each count keeps SCALING_RULE x the best of the lower counts (``ok``; None for the lowest count)."""
    rows = []
    models = [r["model"] for r in sweeps[0]["results"]]
    for model in models:
        for phase in ("train", "infer"):
            cells, best_below = [], None
            for sweep in sweeps:
                r = next((x for x in sweep["results"] if x["model"] == model), None)
                if r is None or "skipped" in r:
                    continue
                lf = r["layerforge"][f"{phase}_samples_per_s"]
                th = r.get("torch", {}).get(f"{phase}_samples_per_s")
                ok = None if best_below is None else lf >= SCALING_RULE * best_below
                cells.append({"threads": sweep["threads"], "layerforge": lf, "torch": th,
                              "ratio": r.get(f"{phase}_ratio"), "best_lower": best_below, "ok": ok})
                best_below = lf if best_below is None else max(best_below, lf)
            if cells:
                rows.append({"model": model, "phase": phase, "cells": cells,
                             "rule_holds": all(c["ok"] is not False for c in cells)})
    return rows


def _render_scaling(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    counts = [c["threads"] for c in rows[0]["cells"]] if rows else []
    table = Table(title=f"Scaling: layerforge samples/s (ratio to PyTorch); '!' where below {SCALING_RULE}x the "
                        "best at a lower thread count", header_style="bold", title_justify="left")
    table.add_column("model / phase", no_wrap=True)
    for n in counts:
        table.add_column(f"{n} thr", justify="right", no_wrap=True)
    table.add_column(f"rule {SCALING_RULE}x", justify="right")
    for row in rows:
        by = {c["threads"]: c for c in row["cells"]}
        cells = []
        for n in counts:
            c = by.get(n)
            if c is None:
                cells.append("-")
                continue
            ratio = f" ({c['ratio']:.2f}x)" if c["ratio"] is not None else ""
            cells.append(f"{c['layerforge']:,.0f}{ratio}{' !' if c['ok'] is False else ''}")
        table.add_row(f"{row['model']} {row['phase']}", *cells, "holds" if row["rule_holds"] else "[red]broken[/]")
    console.print(table)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
