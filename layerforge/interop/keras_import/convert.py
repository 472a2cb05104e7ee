"""The import itself: flat Keras graph -> layerforge config (validated by layerforge's own parser and graph
builder) -> weights in layerforge's layout -> config.yaml with a header, and a run directory when there are
weights."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import yaml

from ...errors import ConfigError, Problem
from . import ImportResult
from .layer_map import Dialect, Unsupported, _Skip, map_layer, version_tuple
from .sources import Keras3Weights, KerasImportError, KerasSource, LegacyWeights
from .topology import FlatGraph, FlatLayer, flatten
from .training_map import training_section
from .weights import WeightMismatch, convert, fit_to_specs, keras3_arrays, legacy_arrays

_DTYPES = {"float32", "float64", "int32", "int64"}
_RNN_TYPES = {"LSTM", "GRU", "SimpleRNN", "ConvLSTM2D"}


def _unsupported_error(src: KerasSource, items: list[Unsupported]) -> KerasImportError:
    problems = [Problem(message=f"layer {u.name!r} ({u.class_name}) at {u.where}: {u.reason}", file=str(src.path),
                        hint=u.fix) for u in items]
    problems.append(Problem(message=f"{len(items)} layer{'s' if len(items) != 1 else ''} cannot be imported; "
                                    "nothing was written", file=str(src.path)))
    return KerasImportError(problems=problems)


def _guess_backend(src: KerasSource, d: Dialect, graph: FlatGraph) -> str | None:
    if d.major >= 3:
        return None  # Keras 3 kernels have one layout and meaning on every backend
    text = json.dumps(src.model)
    if d.major == 1 and re.search(r'"dim_ordering":\s*"th"', text):
        d.note("backend not recorded in the file (Keras 1 does not): assumed theano, as the model uses "
               "dim_ordering th (use --backend tensorflow if it was trained with TensorFlow)")
        return "theano"
    if src.weights is not None and re.search(r'"(Conv|Convolution|Deconv|Atrous|Separable|Depthwise)', text):
        d.note("backend not recorded in the file: assumed tensorflow (use --backend theano for a Theano model)")
    return "tensorflow"


def _is_chain(graph: FlatGraph) -> bool:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return False
    prev = (graph.inputs[0].name, 0)
    for layer in graph.layers:
        if layer.inputs != [prev]:
            return False
        prev = (layer.name, 0)
    return graph.outputs[0] == prev


def _ref(r: tuple[str, int]) -> str:
    return r[0] if r[1] == 0 else f"{r[0]}:{r[1]}"


def _input_dtype(inp, graph: FlatGraph, mapped: dict, d: Dialect) -> str:
    consumers = [layer for layer in graph.layers if any(r[0] == inp.name for r in layer.inputs)]
    dtype = inp.dtype if isinstance(inp.dtype, str) else None
    if consumers and all(mapped[c.name]["type"] == "Embedding" for c in consumers):
        return dtype if dtype in ("int32", "int64") else "int32"
    if dtype is None:
        return "float32"
    if dtype not in _DTYPES:
        d.note(f"input {inp.name!r}: Keras dtype {dtype} read as float32")
        return "float32"
    return dtype


def build_config(src: KerasSource, graph: FlatGraph, mapped: dict, d: Dialect) -> dict:
    cfg_model = src.model.get("config")
    name = (cfg_model.get("name") if isinstance(cfg_model, dict) else None) or src.path.stem
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(name))
    out: dict = {"name": name}
    chain = _is_chain(graph)
    batch = None
    for inp in graph.inputs:
        if inp.batch_shape and inp.batch_shape[0] is not None:
            batch = int(inp.batch_shape[0])
    stateful = any(m.get("stateful") or (m.get("layer") or {}).get("stateful") for m in mapped.values())
    if batch and stateful:
        out["batch_size"] = batch
    if chain:
        inp = graph.inputs[0]
        out["input_shape"] = [None if v is None else int(v) for v in inp.batch_shape[1:]]
        dtype = _input_dtype(inp, graph, mapped, d)
        if dtype != "float32":
            out["input_dtype"] = dtype
    else:
        out["inputs"] = [{"name": i.name, "shape": [None if v is None else int(v) for v in i.batch_shape[1:]],
                          **({"dtype": dt} if (dt := _input_dtype(i, graph, mapped, d)) != "float32" else {})}
                         for i in graph.inputs]
    layers = []
    for layer in graph.layers:
        entry = {"type": mapped[layer.name]["type"], "name": layer.name}
        entry.update({k: v for k, v in mapped[layer.name].items() if k != "type"})
        if not chain:
            entry["inputs"] = [_ref(r) for r in layer.inputs]
        layers.append(entry)
    out["layers"] = layers
    if not chain and (len(graph.outputs) != 1 or graph.outputs[0] != (graph.layers[-1].name, 0)):
        out["outputs"] = [_ref(r) for r in graph.outputs]
    return out


def _layer_arrays(src: KerasSource, layer: FlatLayer, own_groups: set):
    w = src.weights
    if isinstance(w, Keras3Weights):
        if layer.weights.keras3_path is None:
            return []
        return keras3_arrays(w, layer.weights.keras3_path, layer.class_name, layer.config)
    if isinstance(w, LegacyWeights):
        return legacy_arrays(w, layer.weights.legacy_groups, own_groups)
    return None


def _convert_weights(src: KerasSource, graph: FlatGraph, lf_graph, mapped: dict, d: Dialect) -> dict:
    tensors: dict[str, np.ndarray] = {}
    problems = []
    own_groups = {layer.original_name for layer in graph.layers}
    for layer in graph.layers:
        node = lf_graph.node(layer.name)
        if not node.params:
            continue
        arrays = _layer_arrays(src, layer, own_groups)
        if arrays is None:
            problems.append(Problem(message=f"layer {layer.original_name!r} ({layer.class_name}) at {layer.where}: "
                                            "no weights for it in the weights file", file=str(src.weights_path),
                                    hint="is this the weights file of this model?"))
            continue
        try:
            converted = convert(layer.class_name, layer.config, mapped[layer.name], arrays, d)
            tensors.update(fit_to_specs(layer.name, converted, node.params, layer.where))
        except (WeightMismatch, KeyError, ValueError, IndexError) as exc:
            problems.append(Problem(message=str(exc), file=str(src.weights_path)))
    if problems:
        raise KerasImportError(problems=problems)
    return tensors


def _header(src: KerasSource, d: Dialect, graph: FlatGraph, with_weights: bool) -> str:
    version = src.keras_version or f"not recorded (the config reads as Keras {d.major})"
    backend = d.backend or "not recorded (Keras 3 weights mean the same on every backend)"
    lines = [f"# Imported by `layerforge import` from {src.path.name} ({_KIND[src.kind]})",
             f"# Keras {version}, backend {backend}",
             f"# Weights: {src.weights_path.name if with_weights and src.weights_path else 'none (architecture only)'}"]
    choices = list(dict.fromkeys(d.notes + graph.notes + src.notes))
    if choices:
        lines.append("# Semantic choices made in the import:")
        lines += [w for c in choices for w in textwrap.wrap(c, 116, initial_indent="#   - ",
                                                            subsequent_indent="#     ")]
    if d.ignored:
        lines.append("# Not carried over:")
        lines += [w for c in d.ignored for w in textwrap.wrap(c, 116, initial_indent="#   - ",
                                                              subsequent_indent="#     ")]
    return "\n".join(lines) + "\n"


_KIND = {"json": "model.to_json() JSON", "hdf5": "legacy HDF5 model file", "keras": "Keras 3 .keras archive"}


def _schema(lf_graph, spec) -> dict:
    outputs = [name if k == 0 else f"{name}_{k}" for name, k in lf_graph.outputs]
    loss = spec.config.training.loss
    if isinstance(loss, dict) and "type" not in loss:
        per = [loss.get(o) for o in outputs]
    elif isinstance(loss, list):
        per = list(loss) + [None] * (len(outputs) - len(loss))
    else:
        per = [loss] * len(outputs)
    return {"inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in lf_graph.inputs],
            "outputs": [{"name": o, "shape": list(lf_graph.shape_of(r)), "loss": ls}
                        for o, r, ls in zip(outputs, lf_graph.outputs, per)],
            "feature_names": None, "encoders": {}}


def _plain(value):
    """{type: mse} -> mse, inside lists and mappings too."""
    if isinstance(value, dict):
        if set(value) == {"type"}:
            return value["type"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _is_default(value, default) -> bool:
    if value == default:
        return True
    if isinstance(default, tuple):
        flat = [list(x) if isinstance(x, tuple) else x for x in default]
        return value == flat or (len(set(default)) == 1 and value == default[0])
    return False


def compact_layer(entry: dict) -> dict:
    """A canonical layer mapping without the parameters left at their defaults (readable YAML)."""
    from pydantic_core import PydanticUndefined

    from ...layers import REGISTRY

    cls = REGISTRY.get(entry.get("type"))
    if cls is None:
        return entry
    fields = cls.Config.model_fields
    out = {}
    for key, value in entry.items():
        if key in ("input_shape", "batch_input_shape"):
            continue  # the model's inputs are declared at the top
        if key in ("layer", "backward_layer") and isinstance(value, dict):
            value = compact_layer(value)
        elif key == "layers" and isinstance(value, list):
            value = [compact_layer(v) for v in value]
        f = fields.get(key)
        if key not in ("type", "name") and f is not None and f.default is not PydanticUndefined \
                and _is_default(value, f.default):
            continue
        out[key] = value
    return out


# Keras 2/3 merge layers broadcast their inputs; layerforge's Merge (Keras 1) needs equal shapes
_BROADCAST = {"Add": " + ", "Subtract": " - ", "Multiply": " * ", "Average": " + ", "Maximum": "maximum",
              "Minimum": "minimum"}


def _broadcast_merges(exc, graph: FlatGraph, mapped: dict, d: Dialect) -> bool:
    """Rewrite the Keras 2/3 merge layers that failed for unequal (broadcast) shapes as a Lambda; True if any."""
    changed = False
    for p in exc.problems:
        m = re.match(r"layers\[(\d+)\]", p.path or "")
        if not m or "identical input shapes" not in p.message or int(m.group(1)) >= len(graph.layers):
            continue
        layer = graph.layers[int(m.group(1))]
        op = _BROADCAST.get(layer.class_name)
        if op is None or mapped[layer.name]["type"] == "Lambda":
            continue
        xs = [f"x{i}" for i in range(len(layer.inputs))]
        if op.strip() in "+-*":
            expr = op.join(xs)
            if layer.class_name == "Average":
                expr = f"({expr}) / {len(xs)}"
        else:
            expr = xs[0]
            for x in xs[1:]:
                expr = f"{op}({expr}, {x})"
        mapped[layer.name] = {"type": "Lambda", "expression": expr}
        d.note(f"{layer.class_name} layers whose inputs differ in shape broadcast them, as in Keras 2/3: each is a "
               f"Lambda computing {expr}")
        changed = True
    return changed


def _located(exc, src: KerasSource, graph: FlatGraph) -> KerasImportError:
    """Problems of the assembled config (shapes, connections), pointed at the Keras layers they come from."""
    problems = []
    for p in exc.problems:
        m = re.match(r"layers\[(\d+)\](.*)", p.path or "")
        if m and int(m.group(1)) < len(graph.layers):
            layer = graph.layers[int(m.group(1))]
            message = f"layer {layer.original_name!r} ({layer.class_name}) at {layer.where}: {p.message}"
        else:
            message = f"the imported model does not hold together: {p.message}"
        problems.append(Problem(message=message, file=str(src.path), found=p.found, expected=p.expected,
                                hint=p.hint))
    return KerasImportError(problems=problems)


def _check_layer(entry: dict) -> tuple[str, str] | None:
    """Validate one mapped layer with layerforge's parser: (what is wrong, what to do) or None."""
    from ...config.model import parse_layer
    from ...config.source import SourceMap

    problems: list = []
    parse_layer(entry, ("layer",), SourceMap(), problems)
    if not problems:
        return None
    what = "; ".join(f"{p.path.removeprefix('layer.').removeprefix('layer') or 'layer'}: {p.message}"
                     + (f" (found {p.found})" if p.found else "") for p in problems)
    fix = next((p.hint for p in problems if p.hint), None) or "change the layer in Keras to a setting layerforge " \
        "supports (`layerforge layers TYPE` lists them) and save again"
    return f"layerforge cannot express it: {what}", fix


def run_import(src: KerasSource, out_dir: Path, *, lambdas: dict[str, str], backend: str | None) -> ImportResult:
    from ...config.model import parse_model
    from ...config.source import SourceMap
    from ...graph import build_graph
    from ...io.atomic import atomic_directory, atomic_write_text
    from ...io.rundir import write_run

    d = Dialect(major=src.major, version=version_tuple(src.keras_version), backend=backend or _backend_of(src))
    graph = flatten(src.model, keras3_weights=isinstance(src.weights, Keras3Weights))
    if d.major == 1:
        text = json.dumps(src.model)
        th, tf = (len(re.findall(rf'"dim_ordering":\s*"{o}"', text)) for o in ("th", "tf"))
        d.image_ordering = "th" if th > tf else "tf"
    if d.backend is None:
        d.backend = _guess_backend(src, d, graph)
    elif backend:
        d.note(f"backend {backend} (given with --backend)")

    names = {layer.original_name for layer in graph.layers} | {layer.name for layer in graph.layers}
    stray = [n for n in lambdas if n not in names or not any(
        layer.class_name in ("Lambda", "TFOpLambda") and n in (layer.name, layer.original_name)
        for layer in graph.layers)]
    if stray:
        lambda_names = [layer.original_name for layer in graph.layers if layer.class_name == "Lambda"]
        raise KerasImportError(problems=[Problem(
            message=f"--lambda {n}=...: the model has no Lambda layer named {n!r}", file=str(src.path),
            hint=f"its Lambda layers: {', '.join(lambda_names)}" if lambda_names else "the model has no Lambda layer")
            for n in stray])

    mapped: dict[str, dict] = {}
    unsupported: list[Unsupported] = []
    for layer in graph.layers:
        if layer.class_name == "Normalization" and layer.config.get("mean") is None and src.weights is not None:
            arrays = _layer_arrays(src, layer, {x.original_name for x in graph.layers}) or []
            if len(arrays) >= 2:  # mean, variance (and count): constants of the layer
                layer.config = {**layer.config, "mean": arrays[0][1], "variance": arrays[1][1]}
        if layer.class_name == "TFOpLambda" or layer.config.get("__op_module"):
            layer.config = {**layer.config, "__call_constants": layer.call_constants}
        lam = {layer.original_name: lambdas[layer.original_name]} if layer.original_name in lambdas else \
            ({layer.original_name: lambdas[layer.name]} if layer.name in lambdas else {})
        try:
            mapped[layer.name] = map_layer(layer.class_name, layer.config, d, name=layer.original_name,
                                           where=layer.where, lambdas=lam, n_inputs=len(layer.inputs))
            problem = _check_layer(mapped[layer.name])
            if layer.tensor_kwargs or (mapped[layer.name]["type"] in _RNN_TYPES and len(layer.inputs) > 1):
                what = ", ".join(layer.tensor_kwargs) or "initial states"
                problem = (f"called with tensors for {what} (e.g. a seq2seq decoder started from an encoder's "
                           "states); layerforge layers take their inputs positionally and recurrent layers start "
                           "from zeros", "rebuild that part of the model without them")
            if problem is not None:
                unsupported.append(Unsupported(layer.original_name, layer.class_name, layer.where, problem[0],
                                               problem[1]))
        except _Skip as skip:
            unsupported.append(skip.unsupported)
        except ValueError as exc:
            unsupported.append(Unsupported(layer.original_name, layer.class_name, layer.where, str(exc),
                                           "change it in Keras and save again"))
    if unsupported:
        raise _unsupported_error(src, unsupported)
    config = build_config(src, graph, mapped, d)
    training = training_section(src.training_config, d)
    if training:
        config["training"] = training
    config_path = out_dir / "config.yaml"
    while True:
        try:
            spec = parse_model(config, SourceMap(file=str(config_path)), out_dir.resolve())
            lf_graph = build_graph(spec)
            break
        except ConfigError as exc:
            if not _broadcast_merges(exc, graph, mapped, d):
                raise _located(exc, src, graph) from None
            config = build_config(src, graph, mapped, d)
            if training:
                config["training"] = training

    canonical = spec.canonical_dict()
    canonical["layers"] = [compact_layer(entry) for entry in canonical["layers"]]
    spec = parse_model(canonical, SourceMap(file=str(config_path)), out_dir.resolve())  # what the YAML says
    lf_graph = build_graph(spec)
    dumped = spec.config.training.model_dump(mode="json", exclude_none=True)
    canonical["training"] = {k: _plain(dumped[k]) for k in (training or {}) if k in dumped}  # only what Keras had
    if not canonical["training"]:
        canonical.pop("training")
    with_weights = src.weights is not None
    tensors = _convert_weights(src, graph, lf_graph, mapped, d) if with_weights else {}
    header = _header(src, d, graph, with_weights)
    text = header + yaml.safe_dump(canonical, sort_keys=False, allow_unicode=True, default_flow_style=None,
                                   width=110)
    if with_weights:
        write_run(out_dir, config=canonical, weights=tensors, optimizer_state=None, state={"seed": 0},
                  history=[], schema=_schema(lf_graph, spec))
        atomic_write_text(config_path, text)  # the same config, with the header that explains the import
    else:
        with atomic_directory(out_dir) as tmp:
            (tmp / "config.yaml").write_text(text)
    return ImportResult(out_dir=out_dir, config_path=config_path, source=src.path, source_kind=src.kind,
                        keras_version=src.keras_version, backend=d.backend, layers=len(lf_graph.nodes),
                        total_params=lf_graph.total_params, with_weights=with_weights,
                        notes=list(dict.fromkeys(d.notes + graph.notes + src.notes)), ignored=list(d.ignored),
                        config=canonical)


def _backend_of(src: KerasSource) -> str | None:
    b = src.backend
    if b is None:
        return None
    b = str(b).lower()
    return {"tf": "tensorflow", "th": "theano"}.get(b, b)
