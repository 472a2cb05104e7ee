"""Learning curves from run directories: loss and every metric per epoch, training (solid) and validation
(dashed), learning-rate changes marked by vertical dotted lines, several runs on one figure."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import DataError, Problem

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
NOT_PLOTTED = {"learning_rate", "lr", "time", "epoch"}


def matplotlib_pyplot():
    """pyplot on the Agg backend (no display needed), or a clear message when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise DataError(problems=[Problem(
            message="drawing pictures needs matplotlib, which is not installed",
            hint='pip install "layerforge[plot]" (or pip install matplotlib)')]) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def metric_names(histories: list[list[dict]]) -> list[str]:
    """'loss' first, then the other training metrics in first-seen order (val_ twins are drawn with them)."""
    names: dict[str, None] = {}
    for hist in histories:
        for row in hist:
            for k, v in row.items():
                base = k[4:] if k.startswith("val_") else k
                if base not in NOT_PLOTTED and isinstance(v, (int, float)):
                    names.setdefault(base, None)
    ordered = list(names)
    if "loss" in ordered:
        ordered.remove("loss")
        ordered.insert(0, "loss")
    return ordered


def lr_changes(history: list[dict]) -> list[int]:
    """1-based epochs whose learning rate differs from the epoch before."""
    lrs = [row.get("learning_rate", row.get("lr")) for row in history]
    return [i + 1 for i in range(1, len(lrs))
            if lrs[i] is not None and lrs[i - 1] is not None and not math.isclose(lrs[i], lrs[i - 1], rel_tol=1e-9)]


def _series(history: list[dict], key: str):
    xs, ys = [], []
    for i, row in enumerate(history):
        v = row.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(i + 1)
            ys.append(float(v))
    return xs, ys


def curves_figure(runs: list[tuple[str, list[dict]]], *, title: str | None = None):
    """A matplotlib Figure: one panel per metric, every run in its own colour."""
    plt = matplotlib_pyplot()
    names = metric_names([h for _, h in runs]) or ["loss"]
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for panel, name in zip(axes.flat, names):
        for r, (label, hist) in enumerate(runs):
            color = COLORS[r % len(COLORS)]
            prefix = f"{label} " if len(runs) > 1 else ""
            xs, ys = _series(hist, name)
            if xs:
                panel.plot(xs, ys, color=color, lw=1.6, marker="o" if len(xs) < 3 else None, ms=3,
                           label=f"{prefix}training")
            xs, ys = _series(hist, f"val_{name}")
            if xs:
                panel.plot(xs, ys, color=color, lw=1.6, ls="--", marker="o" if len(xs) < 3 else None, ms=3,
                           label=f"{prefix}validation")
            for k, epoch in enumerate(lr_changes(hist)):
                panel.axvline(epoch - 0.5, color=color, ls=":", lw=1, alpha=0.7,
                              label=f"{prefix}learning rate changed" if k == 0 else None)
        panel.set_title(name)
        panel.set_xlabel("epoch")
        panel.grid(alpha=0.3)
        panel.xaxis.get_major_locator().set_params(integer=True)
    # one legend for the figure, below the panels (every panel draws the same series)
    handles, labels = {}, []
    for panel in axes.flat[:len(names)]:
        for h, lab in zip(*panel.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if title:
        fig.suptitle(title)
    ncol = min(len(labels), 3 if len(runs) > 1 else 3)
    rows_of_legend = math.ceil(len(labels) / max(ncol, 1))
    fig.tight_layout(rect=(0, 0.06 * rows_of_legend / rows, 1, 1))
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="lower center", ncol=ncol, fontsize=8,
                   frameon=False)
    return fig


def read_history(run_dir: Path) -> list[dict]:
    """The history of a run directory (history.json), or a clear error."""
    import json

    run_dir = Path(run_dir)
    path = run_dir / "history.json"
    if not run_dir.is_dir():
        raise DataError(problems=[Problem(message=f"{run_dir} is not a run directory", file=str(run_dir),
                                          hint="give a folder written by `layerforge train`")])
    if not path.exists():
        raise DataError(problems=[Problem(message=f"{run_dir} has no history.json", file=str(run_dir),
                                          hint="give a folder written by `layerforge train`")])
    try:
        hist = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise DataError(problems=[Problem(message=f"cannot read {path}: {e}", file=str(path))]) from None
    if not isinstance(hist, list) or not all(isinstance(r, dict) for r in hist):
        raise DataError(problems=[Problem(message=f"{path} is damaged: not a list of epochs", file=str(path))])
    if not hist:
        raise DataError(problems=[Problem(message=f"{run_dir} has no finished epoch to plot", file=str(run_dir))])
    return hist


def save_figure(fig, path: Path) -> None:
    """Write the figure atomically; the format follows the extension (png, svg, pdf)."""
    import io

    from ..io.atomic import atomic_write_bytes

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in ("png", "svg", "pdf", "jpg", "jpeg"):
        raise DataError(problems=[Problem(message=f"cannot write a picture as {path.suffix or path.name!r}",
                                          file=str(path), expected=".png, .svg, .pdf or .jpg")])
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def plot_runs(run_dirs: list[Path], output: Path, labels: list[str] | None = None) -> Path:
    runs = [(labels[i] if labels else Path(d).name, read_history(Path(d))) for i, d in enumerate(run_dirs)]
    fig = curves_figure(runs)
    save_figure(fig, output)
    matplotlib_pyplot().close(fig)
    return Path(output)
