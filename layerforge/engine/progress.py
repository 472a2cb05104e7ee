"""Rich progress for `train`: a bar per epoch (batches, ETA, running loss and metrics) and an epoch line."""

from __future__ import annotations

import math


def format_logs(logs: dict, skip=("time", "learning_rate")) -> str:
    parts = []
    for k, v in logs.items():
        if k in skip or not isinstance(v, (int, float)):
            continue
        parts.append(f"{k} {v:.4f}" if math.isfinite(v) and abs(v) < 1e4 else f"{k} {v:.4g}")
    return "  ".join(parts)


class EpochProgress:
    def __init__(self, console, *, quiet: bool = False, bars: bool = True):
        self.console = console
        self.quiet = quiet
        self.bars = bars  # False: one line per epoch only (Keras verbose=2)
        self.progress = None
        self.task = None
        self.first_lr = None  # the learning rate is shown once it differs from the first epoch's

    def start_epoch(self, epoch: int, epochs: int, steps: int):
        # bars only on a terminal; logs get the epoch lines
        if self.quiet or not self.bars or not self.console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn(f"Epoch {epoch + 1}/{epochs}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[logs]}"),
            console=self.console, transient=True, refresh_per_second=8)
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps, logs="")

    def update(self, step: int, logs: dict):
        if self.progress is not None:
            self.progress.update(self.task, completed=step, logs=format_logs(logs))

    def end_epoch(self, epoch: int, epochs: int, logs: dict, seconds: float | None = None):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.quiet:
            return
        width = len(str(epochs))
        lr = logs.get("learning_rate")
        if self.first_lr is None:
            self.first_lr = lr
        shown_lr = f"lr {lr:.3g}  " if lr is not None and lr != self.first_lr else ""
        self.console.print(f"Epoch {epoch + 1:>{width}}/{epochs}  {format_logs(logs)}  "
                           f"[dim]{shown_lr}{seconds or 0:.2f}s[/]", highlight=False)

    def stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
