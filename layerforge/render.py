"""Rendering user errors for the terminal: location, the offending line with a caret, found/expected/hint."""

from __future__ import annotations

from functools import lru_cache

from .errors import Problem, UserError

MAX_SHOWN = 50  # problems printed in full; the rest are counted
LINE_WIDTH = 160  # an echoed source line is cut to this many characters around the column
FIELD_WIDTH = 400  # a message, found, expected or hint longer than this is cut


def _source_line(file: str, number: int) -> str | None:
    """Line ``number`` of a regular text file, read lazily (the file may be large; only the line is kept)."""
    import os
    import stat

    try:
        st = os.stat(file)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _read_line(file, number, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _read_line(file: str, number: int, mtime_ns: int, size: int) -> str | None:
    import itertools

    try:
        with open(file, encoding="utf-8-sig", errors="replace", newline=None) as fh:
            for line in itertools.islice(fh, number - 1, number):
                return line.rstrip("\r\n")
    except (OSError, ValueError):
        return None
    return None


def _cut(text: str, limit: int = FIELD_WIDTH) -> str:
    return text if len(text) <= limit else text[: limit - 1] + f"… ({len(text):,} characters)"


def _window(text: str, column: int | None) -> tuple[str, int | None]:
    """The part of a long line around ``column`` (1-based), and the column within it."""
    if len(text) <= LINE_WIDTH:
        return text, column
    col = column or 1
    start = max(0, min(col - 1 - LINE_WIDTH // 2, len(text) - LINE_WIDTH))
    piece = text[start:start + LINE_WIDTH]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + LINE_WIDTH < len(text) else ""
    return prefix + piece + suffix, (col - start + len(prefix)) if column else None


def render_problem(p: Problem, console) -> None:
    from rich.markup import escape

    parts = []
    if p.location():
        parts.append(f"[bold]{escape(p.location())}[/]")
    if p.path:
        parts.append(f"[cyan]{escape(_cut(p.path, 200))}[/]")
    parts.append(f"[bold red]error:[/] {escape(_cut(p.message))}")
    console.print(": ".join(parts), highlight=False)
    if p.file and p.line and not p.file.startswith("<"):
        line = _source_line(p.file, p.line)
        if line is not None:
            text, column = _window(line.expandtabs(1), p.column)
            gutter = f"{p.line:>4} | "
            console.print(f"[dim]{gutter}[/]{escape(text)}", highlight=False)
            if column:
                console.print(" " * (len(gutter) + column - 1) + "[bold red]^[/]", highlight=False)
    if p.found is not None:
        console.print(f"     [dim]found:[/]    {escape(_cut(p.found))}", highlight=False)
    if p.expected is not None:
        console.print(f"     [dim]expected:[/] {escape(_cut(p.expected))}", highlight=False)
    if p.hint:
        console.print(f"     [green]hint:[/]     {escape(_cut(p.hint))}", highlight=False)


def render_user_error(exc: UserError, console) -> None:
    from rich.markup import escape

    if exc.problems:
        for p in exc.problems[:MAX_SHOWN]:
            render_problem(p, console)
        n = len(exc.problems)
        if n > MAX_SHOWN:
            console.print(f"[bold red]{n:,} errors[/] (the first {MAX_SHOWN} shown; fix these and run again)",
                          highlight=False)
        elif n > 1:
            console.print(f"[bold red]{n} errors[/]", highlight=False)
    else:
        console.print(f"[bold red]error:[/] {escape(_cut(str(exc)))}", highlight=False)
