"""Rendering user errors for the terminal: location, the offending line with a caret, found/expected/hint."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .errors import Problem, UserError


@lru_cache(maxsize=16)
def _lines(file: str) -> list[str]:
    try:
        return Path(file).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def render_problem(p: Problem, console) -> None:
    from rich.markup import escape

    parts = []
    if p.location():
        parts.append(f"[bold]{escape(p.location())}[/]")
    if p.path:
        parts.append(f"[cyan]{escape(p.path)}[/]")
    parts.append(f"[bold red]error:[/] {escape(p.message)}")
    console.print(": ".join(parts), highlight=False)
    if p.file and p.line and not p.file.startswith("<"):
        lines = _lines(p.file)
        if 0 < p.line <= len(lines):
            text = lines[p.line - 1]
            gutter = f"{p.line:>4} | "
            console.print(f"[dim]{gutter}[/]{escape(text)}", highlight=False)
            if p.column:
                console.print(" " * (len(gutter) + p.column - 1) + "[bold red]^[/]", highlight=False)
    if p.found is not None:
        console.print(f"     [dim]found:[/]    {escape(p.found)}", highlight=False)
    if p.expected is not None:
        console.print(f"     [dim]expected:[/] {escape(p.expected)}", highlight=False)
    if p.hint:
        console.print(f"     [green]hint:[/]     {escape(p.hint)}", highlight=False)


def render_user_error(exc: UserError, console) -> None:
    from rich.markup import escape

    if exc.problems:
        for p in exc.problems:
            render_problem(p, console)
        n = len(exc.problems)
        if n > 1:
            console.print(f"[bold red]{n} errors[/]", highlight=False)
    else:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
