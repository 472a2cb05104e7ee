"""A one-line sparkline of a series (the validation loss at the end of `train`)."""

from __future__ import annotations

import math

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int = 60) -> str:
    """``values`` as block characters, lowest ▁ to highest █; at most ``width`` characters (the series is
    resampled to fit); non-finite values show as a space."""
    vals = [float(v) for v in values]
    if not vals:
        return ""
    if len(vals) > width:
        step = len(vals) / width
        vals = [vals[min(len(vals) - 1, int(i * step))] for i in range(width)]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return " " * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append(" ")
        elif span == 0:
            out.append(BARS[len(BARS) // 2])
        else:
            out.append(BARS[min(len(BARS) - 1, int((v - lo) / span * len(BARS)))])
    return "".join(out)


def loss_sparkline_line(history: list[dict]) -> str | None:
    """'val_loss ▇▅▃▂▁▁ 0.693 -> 0.112 (best 0.101 at epoch 5)', or None without a loss history."""
    key = "val_loss" if any("val_loss" in h for h in history) else "loss"
    vals = [h.get(key, float("nan")) for h in history]
    finite = [(v, i) for i, v in enumerate(vals) if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(vals) < 2 or not finite:
        return None
    best, at = min(finite)
    return (f"{key} {sparkline(vals)} {vals[0]:.4g} -> {vals[-1]:.4g} (best {best:.4g} at epoch {at + 1})")
