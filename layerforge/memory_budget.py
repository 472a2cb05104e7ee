"""Will a model fit in memory? Estimated from the graph before a single weight is allocated.

A huge but legal config (``Dense units: 300000000``) would otherwise end in ``MemoryError`` (or the kernel's
OOM killer) halfway through initialisation. The estimate counts what training must hold at once: weights,
their gradients, the optimizer's per-weight state and the activations of one batch (forward values and
their gradients). It is a lower bound (layer scratch buffers come on top), so a refusal is never a false
alarm by much. No Numba, no numpy allocation: this module only does arithmetic on the graph.
"""

from __future__ import annotations

import os
import re

from .errors import ConfigError
from .graph import Graph
from .layers.base import elements

# per-weight state an optimizer keeps (float arrays the size of the weights), as engine/optimizers.py does
_SLOTS = {"sgd": 0, "rmsprop": 1, "adagrad": 1, "adadelta": 2, "adam": 2, "adamw": 2, "adamax": 2, "nadam": 2}

ASSUMED_SAMPLES = 256  # batch size the estimate assumes at most when the data is not known yet
_limit: int | None = None  # bytes set by `train --max-memory`; None: the machine's free memory


def set_max_memory(limit: int | None) -> None:
    """Use ``limit`` bytes (instead of the free memory) as the ceiling for the next models built."""
    global _limit
    _limit = limit


def optimizer_slots(optimizer: dict) -> int:
    name = optimizer.get("type", "adam") if isinstance(optimizer, dict) else str(optimizer)
    n = _SLOTS.get(name, 2)
    if name == "sgd" and optimizer.get("momentum"):
        n = 1
    if name == "rmsprop":
        n += bool(optimizer.get("centered")) + bool(optimizer.get("momentum"))
    if name in ("adam", "adamw") and optimizer.get("amsgrad"):
        n += 1
    return n


def training_memory(graph: Graph, batch_size: int | None = None, itemsize: int = 4,
                    training: bool = True) -> dict[str, int]:
    """Bytes for weights, gradients, optimizer state and one batch's activations (variable lengths count 1)."""
    cfg = graph.spec.config.training
    # a batch is never larger than the data; before the data is read, count at most ASSUMED_SAMPLES of it
    batch = batch_size or min(cfg.batch_size, ASSUMED_SAMPLES)
    total = graph.total_params
    trainable = graph.trainable_params if training else 0
    values = sum(elements(i.shape) for i in graph.inputs) + sum(
        elements(s) for n in graph.nodes for s in n.output_shapes)
    out = {
        "weights": total * itemsize,
        "gradients": trainable * itemsize,
        "optimizer_state": trainable * itemsize * (optimizer_slots(cfg.optimizer) if training else 0),
        "activations": values * batch * itemsize * (2 if training else 1),
    }
    out["total"] = sum(out.values())
    return out


def free_memory() -> int | None:
    """Bytes this process can still get: the system's available memory, or the cgroup's (container) limit
    when that is lower; None when neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as fh:
                limit = fh.read().strip()
            with open(usage_file) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            found.append(max(0, int(limit) - usage))
        break
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def check_memory(graph: Graph, *, itemsize: int = 4, training: bool = True) -> None:
    """Refuse (ConfigError, before anything is allocated) a model whose estimate exceeds the ceiling."""
    need = training_memory(graph, itemsize=itemsize, training=training)
    limit = _limit if _limit is not None else free_memory()
    if limit is None or need["total"] <= limit:
        return
    parts = ", ".join(f"{k.replace('_', ' ')} {human_bytes(v)}" for k, v in need.items() if k != "total" and v)
    biggest = max(graph.nodes, key=lambda n: n.param_count, default=None)
    source = graph.spec.source
    where = ("layers", biggest.index) if biggest is not None and biggest.param_count else ()
    ceiling = f"the --max-memory limit is {human_bytes(limit)}" if _limit is not None else \
        f"this machine has {human_bytes(limit)} free"
    raise ConfigError(problems=[source.problem(
        where, f"{'training' if training else 'running'} this model needs about {human_bytes(need['total'])} "
               f"({parts}); {ceiling}; nothing was allocated",
        hint="make the largest layers smaller or lower training.batch_size; to try anyway, pass "
             f"--max-memory {human_bytes(need['total'] * 1.1).replace(' ', '')}")])


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)(i?b?)\s*$", re.I)


def parse_size(text: str) -> int:
    """'8G', '512MB', '1.5GiB', '1000000' -> bytes (K, M, G, T are powers of 1024)."""
    m = _SIZE.match(text or "")
    if not m:
        raise ValueError(f"{text!r} is not a size; write e.g. 8G, 512M or 1.5GB")
    scale = 1024 ** " KMGT".index((m.group(2) or " ").upper())
    value = int(float(m.group(1)) * scale)
    if value <= 0:
        raise ValueError(f"{text!r}: the size must be positive")
    return value


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PB"
