"""Config -> DAG of layer nodes: references, topological order, shape inference.

Every problem found is collected (unknown or duplicate names, cycles, unused
inputs, shape mismatches) so `validate` can report them all at once. A layer
whose inputs failed is skipped rather than reported again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config.model import ModelSpec
from .errors import ConfigError, Problem, did_you_mean
from .layers import Layer, ParamSpec, make_layer
from .layers.base import snake_case

# Weights above this many elements in one array are refused before anything is allocated.
MAX_WEIGHT_ELEMENTS = 2**32
# Values per sample of one layer's output (or an input) above this are refused: 2**31 float32 values are 8 GiB
# for a single sample, and larger products overflow the int64 arithmetic of array sizes and FLOP counts.
MAX_SAMPLE_ELEMENTS = 2**31


def shape_problem(shape, what: str) -> str | None:
    """Why ``shape`` (without the batch axis) cannot be used, or None: every dimension a positive integer or
    null, and the values per sample within MAX_SAMPLE_ELEMENTS."""
    total = 1
    for d in shape:
        if d is None:
            continue
        if isinstance(d, bool) or not isinstance(d, int):
            return f"{what} has a dimension {d!r}; every dimension is a positive integer or null"
        if d <= 0:
            return f"{what} has a dimension {d:,}; every dimension is a positive integer (or null for any length)"
        total *= d
    if total > MAX_SAMPLE_ELEMENTS:
        return (f"{what} {tuple(shape)} has {total:,} values per sample, more than the {MAX_SAMPLE_ELEMENTS:,} "
                "layerforge allows")
    return None


@dataclass
class InputNode:
    name: str
    shape: tuple
    dtype: str = "float32"


@dataclass
class Node:
    name: str
    layer: Layer
    index: int  # position in the config's `layers:` list
    inputs: list[tuple[str, int]]  # (producer name, output index)
    input_shape: object = None  # one shape, or a list for multi-input layers
    output_shapes: list = field(default_factory=list)
    params: list[ParamSpec] = field(default_factory=list)
    flops: int = 0

    @property
    def output_shape(self):
        return self.output_shapes[0] if len(self.output_shapes) == 1 else self.output_shapes

    @property
    def param_count(self) -> int:
        return sum(p.size for p in self.params)

    @property
    def trainable_count(self) -> int:
        if not self.layer.config.trainable:
            return 0
        return sum(p.size for p in self.params if p.trainable)


@dataclass
class Graph:
    spec: ModelSpec
    inputs: list[InputNode]
    nodes: list[Node]  # topological order
    outputs: list[tuple[str, int]]
    batch_size: int | None = None
    warnings: list[str] = field(default_factory=list)

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def __post_init__(self):
        self._by_name = {n.name: n for n in self.nodes}

    def shape_of(self, ref: tuple[str, int]):
        for inp in self.inputs:
            if inp.name == ref[0]:
                return inp.shape
        return self._by_name[ref[0]].output_shapes[ref[1]]

    @property
    def total_params(self) -> int:
        return sum(n.param_count for n in self.nodes)

    @property
    def trainable_params(self) -> int:
        return sum(n.trainable_count for n in self.nodes)

    @property
    def output_shapes(self) -> list:
        return [self.shape_of(r) for r in self.outputs]


def _parse_ref(ref: str) -> tuple[str, int | None]:
    if ":" in ref:
        name, _, idx = ref.rpartition(":")
        if idx.isdigit():
            return name, int(idx)
    return ref, None


def _declared_inputs(layer_cfgs) -> dict:
    """{layer index: (input name, shape, dtype, batch size)} of the InputLayers without `inputs:` (Keras' model
    inputs, in config order). Unnamed ones are called input, input_1, ... as a single top-level input would be."""
    found = [(i, c) for i, c in enumerate(layer_cfgs) if c is not None and c.type == "InputLayer"
             and c.inputs is None and (c.input_shape is not None or c.batch_input_shape is not None)]
    taken = {c.name for c in layer_cfgs if c is not None and c.name}
    out, k = {}, 0
    for i, c in found:
        name = c.name
        while name is None:
            name = "input" if k == 0 else f"input_{k}"
            k += 1
            if name in taken:
                name = None
        batch = c.batch_input_shape[0] if c.batch_input_shape else None
        shape = tuple(c.batch_input_shape[1:]) if c.batch_input_shape else tuple(c.input_shape)
        out[i] = (name, shape, c.dtype, batch)
    return out


def _batch_dim(shape, source, path, problems) -> int | None:
    """The batch size a Keras-style batch_input_shape fixes (its first entry), checked."""
    b = shape[0] if shape else None
    if b is not None and b <= 0:
        problems.append(source.problem(path + ("batch_input_shape", 0), f"the batch size must be positive, not {b}",
                                       hint="null (any batch size) or a positive integer"))
        return None
    return b


def build_graph(spec: ModelSpec) -> Graph:
    """Resolve names and infer every shape; raise one ConfigError with all problems."""
    cfg, source = spec.config, spec.source
    problems: list[Problem] = []
    layer_cfgs = spec.layers

    # -- model inputs
    inputs: list[InputNode] = []
    batch_size = cfg.batch_size
    first = layer_cfgs[0] if layer_cfgs else None
    # Keras-style InputLayers (without `inputs:`) are the model inputs when the top level declares none
    absorbed = {} if cfg.inputs or cfg.input_shape is not None else _declared_inputs(layer_cfgs)
    if absorbed:
        for name, shape, dtype, batch in absorbed.values():
            inputs.append(InputNode(name, shape, cfg.input_dtype or dtype or "float32"))
            batch_size = batch_size or batch
    elif cfg.inputs:
        inputs = [InputNode(i.name, tuple(i.shape), i.dtype) for i in cfg.inputs]
        if cfg.input_shape is not None:
            problems.append(source.problem(("input_shape",), "give either `inputs:` or `input_shape:`, not both"))
    elif cfg.input_shape is not None:
        inputs = [InputNode("input", tuple(cfg.input_shape), cfg.input_dtype or "float32")]
    elif first is not None and (first.batch_input_shape or first.input_shape):
        if first.batch_input_shape:
            batch_size = batch_size or _batch_dim(first.batch_input_shape, source, ("layers", 0), problems)
            shape = tuple(first.batch_input_shape[1:])
        else:
            shape = tuple(first.input_shape)
        inputs = [InputNode("input", shape, cfg.input_dtype or "float32")]
    else:
        problems.append(source.problem(
            ("layers", 0), "the model has no input shape",
            hint="add `input_shape: [n_features]` at the top level (or `inputs:` for a graph, "
                 "or Keras-style `input_shape:` on the first layer)"))
        raise ConfigError(problems=problems)
    for i, c in enumerate(layer_cfgs):
        if i > 0 and c is not None and c.batch_input_shape:
            batch_size = batch_size or _batch_dim(c.batch_input_shape, source, ("layers", i), problems)
    input_problems = []
    for k, inp in enumerate(inputs):
        why = shape_problem(inp.shape, "the input shape")
        if why:
            where = ("inputs", k, "shape") if cfg.inputs else ("input_shape",) if cfg.input_shape is not None else \
                ("layers", 0, "batch_input_shape" if first.batch_input_shape else "input_shape")
            input_problems.append(source.problem(where, why, found=str(list(inp.shape)),
                                                 hint="e.g. [28, 28, 1] for images, [null, 8] for sequences "
                                                      "of any length"))
    if input_problems:
        raise ConfigError(problems=problems + input_problems)
    input_names = {i.name for i in inputs}

    # -- names
    names: list[str] = []
    seen: dict[str, int] = {}
    counters: dict[str, int] = {}
    explicit = {c.name for c in layer_cfgs if c is not None and c.name}
    for i, c in enumerate(layer_cfgs):
        if i in absorbed:
            names.append(absorbed[i][0])
            continue
        if c.name:
            name = c.name
            if name in seen or name in input_names:
                where = f"layers[{seen[name]}]" if name in seen else "the model inputs"
                problems.append(source.problem(("layers", i, "name"), f"duplicate name '{name}' (also used by {where})",
                                               hint="every layer and input needs its own name"))
        else:
            base = snake_case(c.type)
            k = counters.get(base, 0)
            name = base if k == 0 else f"{base}_{k}"
            while name in explicit or name in seen or name in input_names:
                k += 1
                name = f"{base}_{k}"
            counters[base] = k + 1
        seen.setdefault(name, i)
        names.append(name)

    # -- references
    layers = [make_layer(c, names[i]) for i, c in enumerate(layer_cfgs)]
    n_outputs = {inp.name: 1 for inp in inputs}
    for name, layer in zip(names, layers):
        n_outputs[name] = layer.num_outputs()
    edges: dict[str, list[tuple[str, int]]] = {}
    for i, (name, layer) in enumerate(zip(names, layers)):
        if i in absorbed:
            continue
        c = layer.config
        refs: list[tuple[str, int]] = []
        if c.inputs is None:
            if i == 0:
                if len(inputs) != 1:
                    problems.append(source.problem(("layers", i), "the first layer has no `inputs:` but the model has "
                                                   f"{len(inputs)} inputs", hint="list the inputs it takes"))
                else:
                    refs = [(inputs[0].name, 0)]
            else:
                refs = [(names[i - 1], 0)]
        else:
            for j, ref in enumerate(c.inputs):
                target, idx = _parse_ref(ref)
                if target not in n_outputs:
                    near = did_you_mean(target, list(n_outputs))
                    problems.append(source.problem(("layers", i, "inputs", j), f"unknown layer or input '{target}'",
                                                   hint=f"did you mean '{near}'?" if near else
                                                   "inputs must name a model input or another layer"))
                    continue
                if target == name:
                    problems.append(source.problem(("layers", i, "inputs", j), f"layer '{name}' takes its own output"))
                    continue
                if idx is None:
                    if layer.multi_input and n_outputs[target] > 1:
                        refs.extend((target, k) for k in range(n_outputs[target]))
                    else:
                        refs.append((target, 0))
                elif idx >= n_outputs[target]:
                    problems.append(source.problem(("layers", i, "inputs", j),
                                                   f"'{target}' has {n_outputs[target]} output(s); there is no :{idx}"))
                else:
                    refs.append((target, idx))
        if not layer.multi_input and len(refs) > 1:
            problems.append(source.problem(("layers", i, "inputs"), f"{c.type} takes one input, got {len(refs)}",
                                           hint="join several inputs with a merge layer (Concatenate, Add, ...)"))
            refs = refs[:1]
        edges[name] = refs

    # -- outputs
    outputs: list[tuple[str, int]] = []
    listed: set[str] = set()
    for j, ref in enumerate(cfg.outputs or [names[-1]]):
        target, idx = _parse_ref(ref)
        if ref in listed:
            problems.append(source.problem(("outputs", j), f"output '{ref}' is listed twice",
                                           hint="list each output once"))
            continue
        listed.add(ref)
        if target in input_names:
            problems.append(source.problem(("outputs", j), f"'{target}' is a model input, not a layer",
                                           hint="outputs name layers (their `name:`)"))
        elif target not in n_outputs:
            near = did_you_mean(target, list(n_outputs))
            problems.append(source.problem(("outputs", j), f"unknown output '{target}'",
                                           hint=f"did you mean '{near}'?" if near else "name a layer"))
        elif idx is None:
            outputs.extend((target, k) for k in range(n_outputs[target]))
        elif idx >= n_outputs[target]:
            problems.append(source.problem(("outputs", j), f"'{target}' has {n_outputs[target]} output(s); "
                                           f"there is no :{idx}", hint=f"use '{target}' or '{target}:0'"
                                           + (f" to '{target}:{n_outputs[target] - 1}'" if n_outputs[target] > 1
                                              else "")))
        else:
            outputs.append((target, idx))

    # -- topological order (Kahn, in waves), keeping config order among ready layers; linear in the edges
    index_of: dict[str, int] = {}
    indices_of: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        index_of.setdefault(n, i)
        indices_of.setdefault(n, []).append(i)
    waiting = {name: len({t for t, _ in edges.get(name, []) if t not in input_names and t in index_of})
               for name in names}
    consumers_of: dict[str, list[str]] = {}
    for name in names:
        for t in {t for t, _ in edges.get(name, []) if t not in input_names and t in index_of}:
            consumers_of.setdefault(t, []).append(name)
    order: list[int] = []
    done: set[str] = {names[i] for i in absorbed}  # InputLayers that became model inputs
    wave = [i for i, n in enumerate(names) if waiting[n] == 0 and i not in absorbed]
    while wave:
        nxt = []
        for i in wave:
            done.add(names[i])
            order.append(i)
            for c in consumers_of.get(names[i], ()):
                waiting[c] -= 1
                if waiting[c] == 0:
                    nxt.extend(indices_of[c])
        wave = sorted(set(nxt))
    if len(order) + len(absorbed) < len(names):
        stuck = [names[i] for i in range(len(names)) if names[i] not in done]
        problems.append(source.problem(("layers", index_of[stuck[0]]),
                                       "the layers form a cycle: " + " -> ".join(stuck[:10])
                                       + (f" ... ({len(stuck):,} layers)" if len(stuck) > 10 else ""),
                                       hint="a layer cannot (indirectly) take its own output"))

    # -- shapes
    shapes: dict[tuple[str, int], tuple] = {(inp.name, 0): inp.shape for inp in inputs}
    nodes: list[Node] = []
    failed: set[str] = set()
    for i in order:
        name, layer = names[i], layers[i]
        refs = edges[name]
        if any(t in failed or (t, k) not in shapes for t, k in refs) or not refs:
            failed.add(name)
            continue
        in_shapes = [shapes[r] for r in refs]
        in_shape = in_shapes if layer.multi_input else in_shapes[0]
        layer.batch_size = batch_size
        try:
            out = layer.output_shape(in_shape)
            specs = layer.param_specs(in_shape)
        except ConfigError as exc:  # ShapeError, or a layer refusing its config (e.g. code not allowed)
            failed.add(name)
            for p in exc.problems:
                line, col = source.locate(("layers", i, "type"))
                p.file, p.line, p.column = source.file, line, col
                p.path = f"layers[{i}]"
            problems.extend(exc.problems)
            continue
        except (ValueError, TypeError, ArithmeticError, IndexError) as exc:  # a config no shape rule foresaw
            failed.add(name)
            problems.append(source.problem(("layers", i), f"{layer.config.type} cannot take the input shape "
                                           f"{in_shape}: {exc}", hint="check the layer's parameters against "
                                           f"`layerforge layers {layer.config.type}`"))
            continue
        outs = list(out) if layer.num_outputs() > 1 else [out]
        why = next(filter(None, (shape_problem(tuple(o), f"the output shape of layer '{name}'") for o in outs)),
                   None)
        if why:
            failed.add(name)
            problems.append(source.problem(("layers", i), why + "; nothing was allocated", found=f"input {in_shape}",
                                           hint="reduce the layer's size or the input shape"))
            continue
        for k, s in enumerate(outs):
            shapes[(name, k)] = tuple(s)
        for weight in specs:  # a constraint's axis must exist on the weight it constrains
            if not _constraint_has_axis(weight.constraint):  # none, or non_neg: nothing to check (scalar weights)
                continue
            axis = weight.constraint.get("axis", 0) if isinstance(weight.constraint, dict) else 0
            nd = len(weight.shape)
            bad = [a for a in (axis if isinstance(axis, list) else [axis]) if not -nd <= a < nd]
            if bad:
                problems.append(source.problem(
                    ("layers", i), f"the constraint on weight '{weight.name}' of layer '{name}' uses axis {bad[0]}, "
                    f"but the weight has {nd} axes (shape {weight.shape})",
                    hint=f"use an axis from {-nd} to {nd - 1}"))
        biggest = max(specs, key=lambda p: p.size, default=None)
        if biggest is not None and biggest.size > MAX_WEIGHT_ELEMENTS:
            problems.append(source.problem(
                ("layers", i), f"weight '{biggest.name}' of layer '{name}' would have {biggest.size:,} elements "
                f"({biggest.size * 4 / 2**30:,.0f} GiB as float32); nothing was allocated",
                found=f"shape {biggest.shape}", hint="reduce the layer's size"))
        node = Node(name=name, layer=layer, index=i, inputs=refs, input_shape=in_shape,
                    output_shapes=[tuple(s) for s in outs], params=specs)
        node.flops = layer.flops(in_shape, node.output_shape)
        nodes.append(node)
        layer.input_shape = in_shape

    # -- input dtypes: integer indices feed an Embedding
    consumers_of_input: dict[str, list] = {inp.name: [] for inp in inputs}
    for n, refs in edges.items():
        for t in {t for t, _ in refs if t in consumers_of_input}:
            consumers_of_input[t].append(layers[index_of[n]])
    for inp in inputs:
        consumers = consumers_of_input[inp.name]
        if not consumers:
            problems.append(source.problem(("inputs",) if cfg.inputs else ("layers", 0),
                                           f"model input '{inp.name}' is not used by any layer",
                                           hint="connect it with `inputs:` or remove it"))
        if (not cfg.inputs and cfg.input_dtype is None and consumers
                and all(c.type == "Embedding" for c in consumers)):
            inp.dtype = "int32"

    # -- dangling layers
    used = {t for refs in edges.values() for t, _ in refs} | {t for t, _ in outputs} | {
        _parse_ref(r)[0] for r in (cfg.outputs or [])}
    for name in names:
        if name not in used and name not in input_names:
            problems.append(source.problem(("layers", index_of[name]),
                                           f"the output of layer '{name}' is not used",
                                           hint="feed it to another layer or list it under `outputs:`"))

    if outputs and not any(p.path.startswith("outputs") for p in problems):
        _check_per_output(cfg.training, [n if k == 0 else f"{n}_{k}" for n, k in outputs], source, problems)
    if problems:
        raise ConfigError(problems=problems)
    return Graph(spec=spec, inputs=inputs, nodes=nodes, outputs=outputs, batch_size=batch_size)


def _check_per_output(training, keys: list[str], source, problems: list[Problem]) -> None:
    """`loss`, `loss_weights` and `metrics` given per output (a list in output order, or a mapping by output
    name) must fit the model's outputs: checked here so that `validate` finds it, not `train`."""
    for what in ("loss", "loss_weights", "metrics"):
        value = getattr(training, what)
        if isinstance(value, dict) and "type" not in value:
            for name in value:
                if name not in keys:
                    near = did_you_mean(str(name), keys)
                    problems.append(source.problem(
                        ("training", what, name), f"training.{what} names output '{name}', which the model does "
                        "not have", key=True, expected=", ".join(keys), hint=f"did you mean '{near}'?" if near else
                        None))
        elif isinstance(value, list) and what != "metrics" and len(value) != len(keys):
            problems.append(source.problem(
                ("training", what), f"training.{what} has {len(value)} entries but the model has {len(keys)} "
                f"output{'s' if len(keys) != 1 else ''}", expected=", ".join(keys),
                hint="one entry per output, in the order of `outputs:`"))


def _constraint_has_axis(constraint) -> bool:
    """Whether a weight's constraint works over an axis (max_norm, unit_norm, min_max_norm)."""
    from .layers.fields import CONSTRAINT_ALIASES, CONSTRAINTS

    if constraint is None:
        return False
    name = constraint.get("type") if isinstance(constraint, dict) else str(constraint)
    name = CONSTRAINT_ALIASES.get(name, name)
    return "axis" in CONSTRAINTS.get(name, {"axis": 0})
