"""Derive layers/_index.py from the registry: ``python -m layerforge.layers._make_index`` rewrites it.

The index maps every layer type name (aliases included) to the family module that registers it, so loading a config
imports only the families it uses. It is generated from the registry (every family imported, every registered class
read), never edited by hand; tests/test_layers_generic.py fails when the committed file differs from what this
writes, and ``ensure_type`` falls back to importing every family for a name the index lacks.
"""

from __future__ import annotations

from pathlib import Path

HEADER = '''"""Which family module defines each layer type name (aliases included), so a config imports only the
families it uses. Generated from the registry by `python -m layerforge.layers._make_index`: do not edit."""

'''


def type_modules() -> dict[str, str]:
    """Every registered type name and alias -> the family module (under layerforge.layers) that registers it."""
    from . import FAMILIES, REGISTRY, load_all

    load_all()
    order = {family: i for i, family in enumerate(FAMILIES)}
    classes = sorted(REGISTRY.values(), key=lambda cls: order.get(family_of(cls), len(order)))
    return {name: family_of(cls) for cls in classes for name in (cls.type, *cls.aliases)}


def family_of(cls) -> str:
    """The family module or package directly under layerforge.layers that defines ``cls`` (a family package's
    layers live in its submodules: layerforge.layers.convolution.conv -> convolution)."""
    return cls.__module__.split(".")[2]


def render() -> str:
    lines = [f"    {name!r}: {module!r},".replace("'", '"') for name, module in type_modules().items()]
    return HEADER + "TYPE_MODULES: dict[str, str] = {\n" + "\n".join(lines) + "\n}\n"


def main() -> None:
    import os
    import tempfile

    path = Path(__file__).with_name("_index.py")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="._index.", suffix=".tmp")  # written whole, then renamed
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(render())
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
