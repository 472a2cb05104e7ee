"""One error hierarchy for everything a user can get wrong.

The CLI renders these without a traceback and exits with code 2 (``UserError``)
or 1 (``RunFailed``). Each carries enough context to point at the cause:
file, line, column, the config path, what was found and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    """One thing wrong in a config, with where it is and how to fix it."""

    message: str
    path: str = ""  # config path, e.g. "layers[3].filters"
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    found: str | None = None
    expected: str | None = None
    hint: str | None = None

    def location(self) -> str:
        if self.file is None and self.line is None:
            return ""
        parts = [self.file or "<config>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render_plain(self) -> str:
        head = self.location()
        if self.path:
            head += f": {self.path}" if head else self.path
        lines = [f"{head}: {self.message}" if head else self.message]
        if self.found is not None:
            lines.append(f"  found:    {self.found}")
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.hint:
            lines.append(f"  hint:     {self.hint}")
        return "\n".join(lines)


class UserError(Exception):
    """Something the user can fix; exit code 2, no traceback."""

    exit_code = 2

    def __init__(self, message: str = "", problems: list[Problem] | None = None):
        self.problems: list[Problem] = list(problems or [])
        if not message and self.problems:
            message = self.problems[0].render_plain()
        super().__init__(message)

    def render_plain(self) -> str:
        if self.problems:
            return "\n".join(p.render_plain() for p in self.problems)
        return str(self)


class ConfigError(UserError):
    """The YAML config (or a command-line override) is wrong."""


class ShapeError(ConfigError):
    """A layer cannot accept the shape it receives."""


class DataError(UserError):
    """A data file does not fit the model or cannot be read."""


class CheckpointError(UserError):
    """A run directory is missing, incomplete or does not fit the config."""


class RunFailed(Exception):
    """Training itself failed (for example the loss became NaN); exit code 1."""

    exit_code = 1


def did_you_mean(word: str, choices, cutoff: float = 0.6) -> str | None:
    """The closest known name to ``word``, if one is close enough."""
    import difflib

    choices = list(choices)
    if len(word) > 200 or len(choices) > 10_000:  # no real typo is that long; difflib is quadratic in it
        return None
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return lowered[word.lower()]
    found = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    if found:
        return found[0]
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[found[0]] if found else None
