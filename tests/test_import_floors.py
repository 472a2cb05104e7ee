"""The import floors of ARCHITECTURE.md, enforced: a module imports only its own floor and the floors below it.

Every import counts, including those inside functions (the lazy imports that keep `validate` free of Numba), so a
floor cannot be climbed by deferring the import. The table below is the one ARCHITECTURE.md describes; a new
top-level package or module must be given a floor here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import layerforge

PACKAGE = Path(layerforge.__file__).resolve().parent

# floor of each top-level package/module of layerforge (higher may import lower, never the reverse)
FLOORS = {
    "errors": 0, "render": 0, "kernels": 0, "activations": 0, "_numpy": 0,
    "expressions": 1, "layers": 1,
    "config": 2, "graph": 2, "io": 2,
    "engine": 3, "data": 3, "summary": 3, "catalog": 3, "schema": 3, "interop": 3, "memory_budget": 3,
    "api": 4,
    # the applications of the API: the command line and what it runs (serve, sweep and distributed training load
    # runs and build Models through api, and share the command bodies of cli.commands)
    "cli": 5, "serve": 5, "sweep": 5, "distributed": 5, "viz": 5, "bench": 5, "testing": 5, "__main__": 5,
    "__init__": 5,
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _top(rel: Path) -> str:
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.name != "__init__.py" else "__init__"


def _imported_tops(rel: Path, tree: ast.AST):
    """(line, top-level part of layerforge) of every import of layerforge code in the module."""
    package = list(rel.parent.parts)  # the module's package, relative to layerforge
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
                targets = [parts] if parts else [[alias.name] for alias in node.names]
            elif node.module and node.module.split(".")[0] == "layerforge":
                parts = node.module.split(".")[1:]
                targets = [parts] if parts else [[alias.name] for alias in node.names]
            else:
                continue
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "layerforge"]
            targets = [t for t in targets if t]
        else:
            continue
        for parts in targets:
            yield node.lineno, parts[0]


def test_every_module_has_a_floor():
    tops = {_top(rel) for rel, _ in _modules()}
    assert tops <= set(FLOORS), f"give these a floor in FLOORS and ARCHITECTURE.md: {sorted(tops - set(FLOORS))}"


def test_no_import_climbs_a_floor():
    upward = []
    for rel, tree in _modules():
        own = _top(rel)
        for line, target in _imported_tops(rel, tree):
            if target == "__version__":
                continue
            if FLOORS.get(target, -1) > FLOORS[own]:
                upward.append(f"layerforge/{rel}:{line} ({own}, floor {FLOORS[own]}) imports {target} "
                              f"(floor {FLOORS[target]})")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_the_lowest_floor_imports_nothing_above_it():
    # kernels are the ground floor: numpy, Numba, the standard library and the other ground-floor modules (the
    # activation registry, errors) only
    ground = {name for name, floor in FLOORS.items() if floor == 0}
    for rel, tree in _modules():
        if _top(rel) == "kernels":
            others = {t for _, t in _imported_tops(rel, tree)} - ground
            assert not others, f"layerforge/{rel} imports {sorted(others)}"
