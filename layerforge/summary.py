"""The `summary` report: shapes, parameters, FLOPs and memory, from the config alone.

Nothing here imports Numba or allocates weights; a 10^12-unit layer is counted, not built.
"""

from __future__ import annotations

from .graph import Graph
from .layers.base import elements, show_shape

BYTES_PER_VALUE = 4  # float32


def _has_none(shape) -> bool:
    return any(d is None for d in shape)


def summary_data(graph: Graph, batch_size: int | None = None) -> dict:
    """Everything `summary` shows, as plain data (also what --json prints)."""
    sequential = all(
        len(n.inputs) == 1 and (i == 0 or n.inputs[0][0] == graph.nodes[i - 1].name)
        for i, n in enumerate(graph.nodes)
    ) and len(graph.inputs) == 1
    layers = []
    activation_values = 0
    variable = False
    for inp in graph.inputs:
        activation_values += elements(inp.shape)
    for node in graph.nodes:
        outs = node.output_shapes
        for s in outs:
            activation_values += elements(s)
            variable |= _has_none(s)
        layers.append({
            "name": node.name,
            "type": node.layer.type,
            "output_shape": [list(s) for s in outs] if len(outs) > 1 else list(outs[0]),
            "params": node.param_count,
            "trainable_params": node.trainable_count,
            "flops": int(node.flops),
            "connected_to": [f"{t}" if k == 0 else f"{t}:{k}" for t, k in node.inputs],
            "weights": [{"name": p.name, "shape": list(p.shape), "trainable": p.trainable} for p in node.params],
        })
    total = graph.total_params
    trainable = graph.trainable_params
    data = {
        "name": graph.spec.config.name,
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in graph.inputs],
        "outputs": [{"name": t if k == 0 else f"{t}:{k}", "shape": list(graph.shape_of((t, k)))}
                    for t, k in graph.outputs],
        "layers": layers,
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "total_flops": int(sum(n.flops for n in graph.nodes)),
        "weight_bytes": total * BYTES_PER_VALUE,
        "activation_bytes_per_sample": activation_values * BYTES_PER_VALUE,
        "variable_length": variable,
        "sequential": sequential,
    }
    if batch_size:
        data["batch_size"] = batch_size
        data["activation_bytes_per_batch"] = activation_values * BYTES_PER_VALUE * batch_size
    return data


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return f"{n:,.2f} TB"


def human_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:,.2f}{unit}"
    return f"{n:,.0f}"


def render_summary(data: dict, console) -> None:
    """Print the Keras-style table with Rich."""
    from rich import box
    from rich.table import Table

    table = Table(title=f'Model: "{data["name"]}"', box=box.SIMPLE_HEAVY, title_justify="left",
                  show_lines=False, header_style="bold")
    table.add_column("Layer (type)", overflow="fold")
    table.add_column("Output Shape", overflow="fold")
    table.add_column("Param #", justify="right")
    table.add_column("FLOPs", justify="right")
    graph_mode = not data["sequential"]
    if graph_mode:
        table.add_column("Connected to", overflow="fold")
    for inp in data["inputs"]:
        row = [f"{inp['name']} (Input)", show_shape(tuple(inp["shape"])), "0", "0"]
        if graph_mode:
            row.append("")
        table.add_row(*row)
    for layer in data["layers"]:
        shape = layer["output_shape"]
        shown = show_shape([tuple(s) for s in shape]) if shape and isinstance(shape[0], list) else show_shape(
            tuple(shape))
        row = [f"{layer['name']} ({layer['type']})", shown, f"{layer['params']:,}", human_count(layer["flops"])]
        if graph_mode:
            row.append(", ".join(layer["connected_to"]))
        table.add_row(*row)
    console.print(table)
    lines = [
        f"[bold]Total params:[/] {data['total_params']:,} ({human_bytes(data['weight_bytes'])})",
        f"[bold]Trainable params:[/] {data['trainable_params']:,}",
        f"[bold]Non-trainable params:[/] {data['non_trainable_params']:,}",
        f"[bold]Forward FLOPs per sample:[/] {human_count(data['total_flops'])} multiply-adds",
        f"[bold]Activation memory per sample:[/] {human_bytes(data['activation_bytes_per_sample'])}"
        + (" (variable-length axes counted as 1)" if data["variable_length"] else ""),
    ]
    if "batch_size" in data:
        lines.append(f"[bold]Activation memory for a batch of {data['batch_size']}:[/] "
                     f"{human_bytes(data['activation_bytes_per_batch'])} (forward; training keeps about as much "
                     "again for the backward pass)")
    for line in lines:
        console.print(line, highlight=False)
