"""The layer graph of a model with shapes, as Keras' ``plot_model(show_shapes=True)`` draws it.

``graph_dot`` gives Graphviz DOT text (one box per layer: name and type, input and output shapes; a
wrapper such as Bidirectional, TimeDistributed or Sequential is a dashed cluster holding its inner layers),
``graph_mermaid`` the same as a Mermaid flowchart. ``write_graph`` picks by the extension: .dot/.gv and
.mmd/.md are text; .svg/.png/.pdf are rendered by Graphviz's `dot` program when it is installed, and
otherwise the DOT text is written beside them (``model.dot``) with a note on how to render it. Only the
config-level graph is needed (no weights, no Numba).
"""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

from ..layers.base import show_shapes

IMAGE_FORMATS = ("svg", "png", "pdf")


def inner_layers(layer) -> list:
    """The layers a wrapper holds (TimeDistributed/Sequential: ``inner``; Bidirectional: both directions)."""
    found = []
    inner = getattr(layer, "inner", None)
    if inner is not None:
        found += list(inner) if isinstance(inner, (list, tuple)) else [inner]
    for attr in ("forward_layer", "backward_layer"):
        if getattr(layer, attr, None) is not None:
            found.append(getattr(layer, attr))
    return found


def inner_with_shapes(layer, in_shape) -> list[tuple]:
    """[(inner layer, its input shape, its output shape)]; shapes None where they cannot be worked out."""
    kids = inner_layers(layer)
    try:
        if isinstance(getattr(layer, "inner", None), list):  # Sequential: a chain
            shapes = layer._shapes(in_shape)
            return [(k, shapes[i], shapes[i + 1]) for i, k in enumerate(kids)]
        if hasattr(layer, "_inner_shape"):  # TimeDistributed: the inner layer sees one time step
            child_in = layer._inner_shape(in_shape)
            return [(k, child_in, k.output_shape(child_in)) for k in kids]
        return [(k, in_shape, k.output_shape(in_shape)) for k in kids]  # Bidirectional: both see the input
    except Exception:  # noqa: BLE001 - a picture without inner shapes is still a picture
        return [(k, None, None) for k in kids]


def _node_shapes(graph, node):
    ins = [graph.shape_of(ref) for ref in node.inputs]
    return (ins[0] if len(ins) == 1 else ins), node.output_shapes if len(node.output_shapes) > 1 else \
        node.output_shapes[0]


def _dot_id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _table(title: str, ins, outs, color: str = "#e8f0fe") -> str:
    e = html.escape
    rows = f'<TR><TD COLSPAN="2" BGCOLOR="{color}"><B>{e(title)}</B></TD></TR>'
    if ins is not None:
        rows += f'<TR><TD ALIGN="LEFT">input:</TD><TD ALIGN="LEFT">{e(show_shapes(ins))}</TD></TR>'
    rows += f'<TR><TD ALIGN="LEFT">output:</TD><TD ALIGN="LEFT">{e(show_shapes(outs))}</TD></TR>'
    return f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">{rows}</TABLE>>'


def graph_dot(graph) -> str:
    lines = [f"digraph {_dot_id(graph.spec.config.name or 'model')} {{",
             '  graph [rankdir=TB, fontname="Helvetica", fontsize=11];',
             '  node [shape=plaintext, fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for inp in graph.inputs:
        lines.append(f"  {_dot_id(inp.name)} [label={_table(f'{inp.name}: InputLayer', None, inp.shape, '#fff4d6')}];")
    for node in graph.nodes:
        ins, outs = _node_shapes(graph, node)
        label = _table(f"{node.name}: {node.layer.type}", ins, outs)
        children = inner_layers(node.layer)
        if children:
            lines.append(f"  subgraph {_dot_id('cluster_' + node.name)} {{")
            lines.append(f'    label={_dot_id(node.layer.type + " " + node.name)}; style="rounded,dashed"; '
                         'color="#888888";')
            lines.append(f"    {_dot_id(node.name)} [label={label}];")
            _dot_children(lines, node.name, inner_with_shapes(node.layer, ins), depth=2)
            lines.append("  }")
        else:
            lines.append(f"  {_dot_id(node.name)} [label={label}];")
    for node in graph.nodes:
        for src, k in node.inputs:
            attrs = f' [label="{k}"]' if k else ""
            lines.append(f"  {_dot_id(src)} -> {_dot_id(node.name)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_children(lines: list[str], parent: str, children, depth: int) -> None:
    pad = "  " * depth
    for child, cin, cout in children:
        cid = f"{parent}/{child.name}"
        title = f"{child.name}: {child.type}"
        label = _table(title, cin, cout, "#f1f3f4") if cout is not None else \
            f"<<B>{html.escape(title)}</B>>, shape=box, style=rounded"
        grand = inner_layers(child)
        if grand:
            lines.append(f"{pad}subgraph {_dot_id('cluster_' + cid)} {{")
            lines.append(f'{pad}  label={_dot_id(child.type + " " + child.name)}; style="rounded,dashed";')
            lines.append(f"{pad}  {_dot_id(cid)} [label={label}];")
            _dot_children(lines, cid, inner_with_shapes(child, cin) if cin is not None else
                          [(g, None, None) for g in grand], depth + 1)
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{_dot_id(cid)} [label={label}];")
        lines.append(f'{pad}{_dot_id(parent)} -> {_dot_id(cid)} [style=dotted, arrowhead=none];')


def _mm_id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def _mm_text(s: str) -> str:
    return s.replace('"', "#quot;")


def graph_mermaid(graph) -> str:
    lines = ["flowchart TB"]
    for inp in graph.inputs:
        lines.append(f'  {_mm_id(inp.name)}["{_mm_text(inp.name)}: InputLayer<br/>output: '
                     f'{_mm_text(show_shapes(inp.shape))}"]')
    for node in graph.nodes:
        ins, outs = _node_shapes(graph, node)
        box = (f'{_mm_id(node.name)}["{_mm_text(node.name)}: {node.layer.type}<br/>input: '
               f'{_mm_text(show_shapes(ins))}<br/>output: {_mm_text(show_shapes(outs))}"]')
        children = inner_layers(node.layer)
        if children:
            lines.append(f'  subgraph {_mm_id("sg_" + node.name)}["{node.layer.type} {_mm_text(node.name)}"]')
            lines.append(f"    {box}")
            _mm_children(lines, node.name, inner_with_shapes(node.layer, ins), 2)
            lines.append("  end")
        else:
            lines.append(f"  {box}")
    for node in graph.nodes:
        for src, _ in node.inputs:
            lines.append(f"  {_mm_id(src)} --> {_mm_id(node.name)}")
    return "\n".join(lines) + "\n"


def _mm_children(lines, parent, children, depth):
    pad = "  " * depth
    for child, cin, cout in children:
        cid = f"{parent}/{child.name}"
        shapes = "" if cout is None else (f"<br/>input: {_mm_text(show_shapes(cin))}<br/>output: "
                                          f"{_mm_text(show_shapes(cout))}")
        lines.append(f'{pad}{_mm_id(cid)}("{_mm_text(child.name)}: {child.type}{shapes}")')
        lines.append(f"{pad}{_mm_id(parent)} -.- {_mm_id(cid)}")
        grand = inner_layers(child)
        if grand:
            _mm_children(lines, cid, inner_with_shapes(child, cin) if cin is not None else
                         [(g, None, None) for g in grand], depth)


def dot_program() -> str | None:
    return shutil.which("dot")


def render_dot(dot_text: str, fmt: str) -> bytes:
    """Graphviz's output for ``dot_text`` (raises RuntimeError with dot's message if it fails)."""
    proc = subprocess.run([dot_program() or "dot", f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace").strip() or f"dot exited with {proc.returncode}")
    return proc.stdout


def write_graph(graph, path: Path) -> tuple[Path, str]:
    """Write the graph to ``path`` by its extension. Returns (the file written, a note for the user)."""
    from ..errors import ConfigError, Problem
    from ..io.atomic import atomic_write_bytes, atomic_write_text

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt in ("mmd", "md", "mermaid"):
        text = graph_mermaid(graph)
        atomic_write_text(path, f"```mermaid\n{text}```\n" if fmt == "md" else text)
        return path, "Mermaid flowchart (GitHub renders it in Markdown; or https://mermaid.live)"
    dot_text = graph_dot(graph)
    if fmt in ("dot", "gv"):
        atomic_write_text(path, dot_text)
        return path, f"Graphviz DOT text; render it with: dot -Tsvg {path} -o {path.with_suffix('.svg')}"
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(problems=[Problem(message=f"cannot draw the graph as {path.suffix or path.name!r}",
                                            file=str(path), expected=".svg, .png, .pdf (Graphviz), .dot or .mmd")])
    if dot_program() is None:
        fallback = path.with_suffix(".dot")
        atomic_write_text(fallback, dot_text)
        return fallback, (f"Graphviz's `dot` is not installed, so {path} was not drawn; the graph is in "
                          f"{fallback} (install Graphviz, e.g. apt-get install graphviz, then: dot -T{fmt} "
                          f"{fallback} -o {path}; or write --graph model.mmd for Mermaid)")
    try:
        data = render_dot(dot_text, fmt)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        fallback = path.with_suffix(".dot")
        atomic_write_text(fallback, dot_text)
        return fallback, f"dot failed ({e}); the DOT text is in {fallback}"
    atomic_write_bytes(path, data)
    return path, "drawn by Graphviz"
