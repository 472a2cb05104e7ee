"""A Keras model config (any version) -> one flat graph of layers.

Sequential models (Keras 1: a list of layers; Keras 2/3: {"layers": [...]}), functional models (Keras 1/2:
`inbound_nodes` as lists of [layer, node, tensor(, kwargs)]; Keras 3: {"args", "kwargs"} holding
`__keras_tensor__` objects with a `keras_history`), models nested as layers (inlined: their layers join the outer
graph, keeping their names) and the Keras 1 Sequential whose first layer is a Merge of branches (one model input
per branch) all end up as `FlatLayer`s wired by `(producer, output index)` references.

A layer called on several inputs in Keras (a shared layer) becomes one layerforge layer per call, each with a copy
of the same weights; the header of the imported config says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .sources import fail

MODEL_CLASSES = {"Sequential", "Model", "Functional", "Container"}
INPUT_CLASSES = {"InputLayer"}
_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class WeightRef:
    """Where a layer's weights are: legacy (group name, and the prefix its weight names carry when the group is a
    nested model's) or Keras 3 (the object path in model.weights.h5)."""

    legacy_groups: list[tuple[str, str | None]] = field(default_factory=list)
    keras3_path: str | None = None


@dataclass
class FlatLayer:
    name: str  # layerforge name, unique
    original_name: str
    class_name: str
    config: dict
    inputs: list[tuple[str, int]]
    where: str  # where the layer sits in the file, e.g. config.layers[3]
    weights: WeightRef
    copy_of: str | None = None  # the first call of a shared layer
    tensor_kwargs: list = field(default_factory=list)  # tensors passed by keyword (initial_state, mask, ...)
    call_constants: dict = field(default_factory=dict)  # plain values passed by keyword (TFOpLambda's y=2.0)


@dataclass
class FlatInput:
    name: str
    original_name: str
    batch_shape: list
    dtype: str | None


@dataclass
class FlatGraph:
    inputs: list[FlatInput] = field(default_factory=list)
    layers: list[FlatLayer] = field(default_factory=list)
    outputs: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _used: set = field(default_factory=lambda: {"input"})  # the name layerforge gives a chain's single input

    def unique(self, name: str, scope: str | None = None, *, quiet: bool = False) -> str:
        clean = name if _NAME_OK.match(name) else re.sub(r"[^A-Za-z0-9_\-]", "_", name)
        if not _NAME_OK.match(clean):
            clean = "l_" + clean
        if clean != name and not quiet:
            self.notes.append(f"layer name {name!r} -> {clean!r} (layerforge names are letters, digits, _ and -)")
        base = clean
        if base in self._used and scope:
            base = f"{scope}_{clean}"
        out, k = base, 1
        while out in self._used:
            out = f"{base}_{k}"
            k += 1
        self._used.add(out)
        if out != clean and not quiet and clean == "input":
            self.notes.append(f"layer name {name!r} -> {out!r} ('input' names the model input)")
        return out


def _snake(name: str) -> str:
    """Keras 3's naming.to_snake_case: the names its weights file gives objects."""
    s = re.sub(r"\W+", "", name)
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", s)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s)
    return s.lower()


class _K3Names:
    """Keras 3 names the children of a layer list by snake-cased class name, `_1`, `_2`, ... on repeats."""

    def __init__(self, base: str):
        self.base = base
        self.used: dict[str, int] = {}

    def next(self, class_name: str) -> str:
        name = _snake(class_name)
        if name in self.used:
            self.used[name] += 1
            name = f"{name}_{self.used[name]}"
        else:
            self.used[name] = 0
        return f"{self.base}/{name}" if self.base else name


def _entry_name(entry: dict) -> str:
    cfg = entry.get("config")
    name = entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None)
    return str(name) if name else _snake(str(entry.get("class_name", "layer")))


def _is_model(entry: dict) -> bool:
    return entry.get("class_name") in MODEL_CLASSES


def _layers_of(model_cfg) -> tuple[list, str | None]:
    """A Sequential's layer list and name, in every version's form."""
    if isinstance(model_cfg, list):  # Keras 1 / early Keras 2
        return model_cfg, None
    if isinstance(model_cfg, dict):
        return list(model_cfg.get("layers") or []), model_cfg.get("name")
    fail("a Sequential model's config is neither a list nor a mapping of layers")


def _batch_shape(cfg: dict):
    """The batch input shape a layer config declares (first layers and InputLayers), in every version's form."""
    if not isinstance(cfg, dict):
        return None
    for key in ("batch_input_shape", "batch_shape"):
        if isinstance(cfg.get(key), list):
            return list(cfg[key])
    if isinstance(cfg.get("input_shape"), list):
        return [None, *cfg["input_shape"]]
    if "mask_zero" in cfg and "output_dim" in cfg:  # Embedding: input_dim is the vocabulary size
        return [None, cfg.get("input_length")]
    if cfg.get("input_dim") is not None:
        if "input_length" in cfg:
            return [None, cfg.get("input_length"), cfg["input_dim"]]
        return [None, cfg["input_dim"]]
    return None


class Flattener:
    def __init__(self, keras3_weights: bool):
        self.g = FlatGraph()
        self.k3 = keras3_weights
        self.calls: dict[str, int] = {}  # original layer key -> times called so far

    # ------------------------------------------------------------------ entry
    def run(self, model: dict) -> FlatGraph:
        cls = model.get("class_name")
        if cls == "Sequential":
            outs = self.sequential(model, "config", None, "", top=True)
        elif cls in MODEL_CLASSES:
            outs = self.functional(model, "config", None, "", top=True)
        else:
            fail(f"the top-level object is a {cls}, not a Keras model",
                 hint="pass a file written by model.to_json() or model.save()")
        self.g.outputs = outs
        return self.g

    def _input(self, name: str, batch_shape, dtype, *, made_up: bool = False) -> tuple[str, int]:
        flat = self.g.unique(name, quiet=made_up)
        self.g.inputs.append(FlatInput(flat, name, list(batch_shape), dtype))
        return (flat, 0)

    def _add(self, entry: dict, inputs, where: str, k3path: str | None, legacy, scope: str | None,
             key: str) -> tuple[str, int] | str:
        name = _entry_name(entry)
        n = self.calls.get(key, 0)
        self.calls[key] = n + 1
        first = None
        if n > 0:
            first = next(layer.name for layer in self.g.layers if layer.copy_of is None and
                         getattr(layer, "_key", None) == key)
        flat = self.g.unique(name, scope)
        cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        if isinstance(entry.get("build_config"), dict):  # Keras 3 keeps the built input shape beside the config
            cfg = {**cfg, "__build_config": entry["build_config"]}
        if str(entry.get("module", "")).startswith(("keras.src.ops", "keras.ops")):  # a keras.ops call, no layer
            cfg = {**cfg, "__op_module": entry["module"]}
        layer = FlatLayer(flat, name, str(entry.get("class_name")), cfg, list(inputs), where,
                          WeightRef(legacy_groups=legacy, keras3_path=k3path), copy_of=first)
        layer._key = key  # type: ignore[attr-defined]
        self.g.layers.append(layer)
        if first is not None:
            self.g.notes.append(f"layer {name!r} is shared in Keras (called {n + 1} times); layerforge gives each call "
                                f"its own layer ({flat!r} is a copy with the same weights)")
        return flat

    # ------------------------------------------------------------------ Sequential
    def sequential(self, entry: dict, where: str, inputs, k3base: str, *, top: bool = False, legacy=None,
                   scope: str | None = None):
        layers, name = _layers_of(entry.get("config"))
        name = name or entry.get("name")
        if not layers:
            fail(f"{where}: a Sequential model without layers")
        k3 = _K3Names(f"{k3base}/layers" if k3base else "layers")
        cur = inputs[0] if inputs else None
        start = 0
        first = layers[0]
        if first.get("class_name") == "Merge" and isinstance((first.get("config") or {}).get("layers"), list):
            cur = self._keras1_merge_first(first, f"{where}[0]" if isinstance(entry.get("config"), list) else
                                           f"{where}.layers[0]", inputs, legacy, scope)
            start = 1
        for i in range(start, len(layers)):
            item = layers[i]
            w = f"{where}[{i}]" if isinstance(entry.get("config"), list) else f"{where}.layers[{i}]"
            cls = item.get("class_name")
            icfg = item.get("config") if isinstance(item.get("config"), dict) else {}
            if cls in INPUT_CLASSES:
                if cur is None:
                    shape = _batch_shape(icfg) or fail(f"{w}: InputLayer without a shape")
                    cur = self._input(_entry_name(item), shape, icfg.get("dtype"))
                continue
            if cur is None:
                shape = _batch_shape(icfg) if isinstance(icfg, dict) else None
                if shape is None and isinstance(entry.get("config"), dict):
                    bis = entry["config"].get("build_input_shape")
                    shape = list(bis) if isinstance(bis, list) else None
                if shape is None:
                    fail(f"{w}: the first layer of the model gives no input shape",
                         hint="a model saved before it was built has no shapes; build it in Keras and save again")
                dtype = icfg.get("input_dtype") or icfg.get("dtype") if isinstance(icfg, dict) else None
                if isinstance(dtype, dict):
                    dtype = None
                cur = self._input(f"{_entry_name(item)}_input", shape, dtype, made_up=True)  # Keras' own name
            k3path = k3.next(cls) if self.k3 else None
            lg = self._legacy_for(_entry_name(item), legacy)
            if _is_model(item):
                outs = self._nested(item, w, [cur], k3path, lg)
                cur = outs[0]
            else:
                cur = (self._add(item, [cur], w, k3path, lg, scope, key=f"{id(entry)}:{i}"), 0)
        return [cur]

    def _keras1_merge_first(self, merge: dict, where: str, inputs, legacy, scope):
        """Keras 1 Sequential([Merge([branch, branch, ...]), ...]): one model input per branch."""
        cfg = merge["config"]
        outs = []
        for b, branch in enumerate(cfg["layers"]):
            bw = f"{where}.config.layers[{b}]"
            if branch.get("class_name") == "Sequential":
                # Keras 1 saves the branches' layers flattened: each has its own top-level group
                outs.extend(self.sequential(branch, bw + ".config", None, "", legacy=legacy, scope=scope))
            else:
                bcfg = branch.get("config") or {}
                shape = _batch_shape(bcfg) or fail(f"{bw}: a Merge branch without an input shape")
                ref = self._input(f"{_entry_name(branch)}_input", shape, bcfg.get("input_dtype"))
                outs.append((self._add(branch, [ref], bw, None, self._legacy_for(_entry_name(branch), legacy),
                                       scope, key=f"{id(branch)}"), 0))
        merge_entry = {"class_name": "Merge", "config": {k: v for k, v in cfg.items() if k != "layers"}}
        return (self._add(merge_entry, outs, where, None, [], scope, key=f"{id(merge)}"), 0)

    def _legacy_for(self, layer_name: str, parent) -> list:
        """Candidate groups for a layer's weights: its own top-level group (Keras 1 flattens Merge branches), then
        the enclosing nested models' groups, where its weight names start with its name."""
        out = [(layer_name, None)]
        for group, _ in parent or []:
            out.append((group, layer_name))
        return out

    def _nested(self, item: dict, where: str, inputs, k3path, legacy):
        name = _entry_name(item)
        self.g.notes.append(f"nested model {name!r} ({item.get('class_name')}) inlined: its layers keep their names")
        parent = [(name, None)] + [(g, None) for g, p in (legacy or [])[1:]]
        if item.get("class_name") == "Sequential":
            return self.sequential(item, where + ".config", inputs, k3path or "", legacy=parent, scope=name)
        return self.functional(item, where + ".config", inputs, k3path or "", legacy=parent, scope=name)

    # ------------------------------------------------------------------ functional
    def functional(self, entry: dict, where: str, inputs, k3base: str, *, top: bool = False, legacy=None,
                   scope: str | None = None):
        cfg = entry.get("config") or {}
        layers = cfg.get("layers") or []
        by_name = {_entry_name(item): (i, item) for i, item in enumerate(layers)}
        k3 = _K3Names(f"{k3base}/layers" if k3base else "layers")
        k3paths = {}
        for item in layers:
            if self.k3 and not str(item.get("module", "")).startswith(("keras.src.ops", "keras.ops")):
                k3paths[_entry_name(item)] = k3.next(str(item.get("class_name")))  # keras.ops calls hold nothing
        node_out: dict[tuple[str, int], object] = {}  # (layer, node) -> ("layer", flat name) | ("list", refs)

        input_refs = _refs(cfg.get("input_layers"))
        for k, (lname, node, _t) in enumerate(input_refs):
            if lname not in by_name:
                fail(f"{where}.input_layers: no layer named {lname!r}")
            i, item = by_name[lname]
            icfg = item.get("config") or {}
            if inputs is None:
                shape = _batch_shape(icfg) or fail(f"{where}.layers[{i}]: input {lname!r} has no shape")
                dtype = icfg.get("dtype") if isinstance(icfg.get("dtype"), str) else icfg.get("input_dtype")
                node_out[(lname, node)] = ("list", [self._input(lname, shape, dtype)])
            else:
                if k >= len(inputs):
                    fail(f"{where}: nested model {cfg.get('name')!r} has more inputs than it is given")
                node_out[(lname, node)] = ("list", [inputs[k]])

        offsets = _model_node_offsets(layers, cfg, where)
        pending = []
        for i, item in enumerate(layers):
            if item.get("class_name") in INPUT_CLASSES:
                continue
            nodes = item.get("inbound_nodes") or []
            for n, node in enumerate(nodes):
                pending.append((i, item, n, node))
        progress = True
        while pending and progress:
            progress = False
            rest = []
            for i, item, n, node in pending:
                refs = _node_refs(node, f"{where}.layers[{i}].inbound_nodes[{n}]")
                if not all((r[0], r[1]) in node_out for r in refs):
                    rest.append((i, item, n, node))
                    continue
                srcs = [_lookup(node_out, r) for r in refs]
                lname = _entry_name(item)
                w = f"{where}.layers[{i}]"
                lg = self._legacy_for(lname, legacy)
                if _is_model(item):  # referenced by node index + its own internal nodes (Keras 2)
                    node_out[(lname, n + offsets.get(lname, 0))] = (
                        "list", self._nested(item, w, srcs, k3paths.get(lname), lg))
                else:
                    flat = self._add(item, srcs, w, k3paths.get(lname), lg, scope, key=f"{id(entry)}:{lname}")
                    self.g.layers[-1].tensor_kwargs = tensor_kwargs(node)
                    self.g.layers[-1].call_constants = call_constants(node)
                    node_out[(lname, n)] = ("layer", flat)
                progress = True
            pending = rest
        if pending:
            i, item, _, _ = pending[0]
            fail(f"{where}.layers[{i}]: layer {_entry_name(item)!r} takes an input that no layer produces",
                 hint="the model config is incomplete or not a Keras functional model")
        outs = []
        for r in _refs(cfg.get("output_layers")):
            if (r[0], r[1]) not in node_out:
                fail(f"{where}.output_layers: no layer named {r[0]!r} (node {r[1]})")
            outs.append(_lookup(node_out, r))
        return outs


def _model_node_offsets(layers: list, cfg: dict, where: str) -> dict[str, int]:
    """Keras 2 numbers the calls of a nested model after the model's own internal node(s): references to its
    first call may say node 1. The offset is what the references need beyond the calls listed."""
    calls = {_entry_name(item): len(item.get("inbound_nodes") or []) for item in layers if _is_model(item)}
    if not calls:
        return {}
    highest: dict[str, int] = {}
    refs = list(_refs(cfg.get("output_layers")))
    for i, item in enumerate(layers):
        for n, node in enumerate(item.get("inbound_nodes") or []):
            refs.extend(_node_refs(node, f"{where}.layers[{i}].inbound_nodes[{n}]"))
    for name, node, _ in refs:
        if name in calls:
            highest[name] = max(highest.get(name, 0), node)
    return {name: max(0, highest.get(name, 0) - (n - 1)) for name, n in calls.items() if n}


def _lookup(node_out, ref) -> tuple[str, int]:
    kind, value = node_out[(ref[0], ref[1])]
    if kind == "layer":
        return (value, ref[2])
    return value[ref[2]]


def _refs(value) -> list[tuple[str, int, int]]:
    """input_layers / output_layers: [name, node, tensor] or a list of those (or a dict of them)."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if value and isinstance(value[0], str):
        value = [value]
    return [(str(v[0]), int(v[1]), int(v[2])) for v in value]


def _node_refs(node, where: str) -> list[tuple[str, int, int]]:
    """The input tensors of one call: Keras 1/2 [[name, node, tensor, kwargs?], ...]; Keras 3 {args, kwargs}."""
    if isinstance(node, dict):  # Keras 3
        refs: list = []
        _collect_tensors(node.get("args", []), refs)
        kwargs = dict(node.get("kwargs") or {})
        for key in _TENSOR_KWARGS:  # attention layers: query, value, key may be passed by name
            if key in kwargs:
                _collect_tensors(kwargs.pop(key), refs)
        return refs
    out = []
    if node and isinstance(node[0], str):  # tf.keras 2.4+: a call with one input is [name, node, tensor, kwargs]
        node = [node]
    for item in node:
        if isinstance(item, list) and item and isinstance(item[0], str):
            kwargs = dict(item[3]) if len(item) > 3 and isinstance(item[3], dict) else {}
            extra = [kwargs.pop(k) for k in _TENSOR_KWARGS if k in kwargs]
            out.append((item[0], int(item[1]) if len(item) > 1 else 0, int(item[2]) if len(item) > 2 else 0))
            out.extend((str(e[0]), int(e[1]), int(e[2])) for e in extra if isinstance(e, list) and len(e) >= 3)
    return out


def tensor_kwargs(node) -> list[str]:
    """Keyword arguments of a call that hold tensors layerforge layers cannot take (initial_state, mask, ...)."""
    if isinstance(node, dict):
        names = []
        for key, value in (node.get("kwargs") or {}).items():
            found: list = []
            _collect_tensors(value, found)
            if found and key not in _TENSOR_KWARGS:
                names.append(key)
        return names
    names = []
    if node and isinstance(node[0], str):
        node = [node]
    for item in node:
        if isinstance(item, list) and len(item) > 3 and isinstance(item[3], dict):
            names += [k for k, v in item[3].items() if k not in _TENSOR_KWARGS and isinstance(v, list) and v
                      and isinstance(v[0], (str, list))]
    return names


def call_constants(node) -> dict:
    """The keyword arguments of a call that are plain values (tf.keras TFOpLambda: `y: 2.0`), and under "__args"
    the positional arguments of a Keras 3 call with each tensor as None (keras.ops calls: `multiply(x, 2.0)`)."""
    if isinstance(node, dict):
        items = list((node.get("kwargs") or {}).items())
        args = node.get("args") or []
        items.append(("__args", [None if _is_tensor(a) else a for a in args]))
    else:
        node = [node] if node and isinstance(node[0], str) else node
        items = [kv for item in node if isinstance(item, list) and len(item) > 3 and isinstance(item[3], dict)
                 for kv in item[3].items()]
    out = {}
    for key, value in items:
        found: list = []
        _collect_tensors(value, found)
        if not found and not (isinstance(value, list) and value and isinstance(value[0], str)):
            out[key] = value
    return out


# Keyword arguments that carry a layer's real inputs, in input order: MultiHeadAttention(query, value, key), and
# tf.keras's TFOpLambda(x, y=...) for the tf.* functions called on Keras tensors
_TENSOR_KWARGS = ("query", "value", "key", "y")


def _is_tensor(value) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _collect_tensors(value, out: list) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            h = value["config"]["keras_history"]
            out.append((str(h[0]), int(h[1]), int(h[2])))
            return
        for v in value.values():
            _collect_tensors(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect_tensors(v, out)


def flatten(model: dict, *, keras3_weights: bool) -> FlatGraph:
    return Flattener(keras3_weights).run(model)
