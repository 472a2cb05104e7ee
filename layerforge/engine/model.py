"""A compiled model: weights for every node of a Graph, forward and backward over it.

Forward walks the nodes in topological order keeping each layer's cache;
backward walks them in reverse, summing gradients where an output feeds several
layers (graph fan-out). Masks travel with the values as Keras 3 carries them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..graph import Graph, Node
from ..layers.base import ParamSpec
from ..layers.initializers import initialize
from ..layers.packed import PackedBuffers


@dataclass
class Tape:
    """What one forward pass keeps for the backward pass."""

    caches: dict
    outputs: dict  # (node, k) -> array
    masks: dict  # (node, k) -> mask or None
    activity: list  # (node, output index, spec) for activity regularizers


class CompiledModel:
    def __init__(self, graph: Graph, *, seed: int | None = None, dtype=np.float32):
        from ..memory_budget import check_memory

        check_memory(graph, itemsize=np.dtype(dtype).itemsize)  # refuse a model too big before allocating it
        self.graph = graph
        self.dtype = np.dtype(dtype)
        self.nodes: list[Node] = graph.nodes
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.specs: dict[str, list[ParamSpec]] = {}
        rng = np.random.default_rng(seed)
        for node in self.nodes:
            layer = node.layer
            self.specs[node.name] = node.params
            self.params[node.name] = {}
            for spec in node.params:
                value = initialize(spec.initializer, spec.shape, rng, self.dtype, spec.fan)
                if spec.trainable:
                    self.params[node.name][spec.name] = value
                else:
                    layer.state[spec.name] = value
            layer.build(node.input_shape)
            layer.init_state(graph.batch_size, self.dtype)
        self._pack_trainable()
        self._grad_out = {n.name: v for n in self.nodes if (v := self.grad_views(n.name))}
        self.activity = {n.name: n.layer.activity_penalty() for n in self.nodes}
        # a stochastic layer with its own `seed:` draws from its own stream; the others share the model's
        self.layer_rngs = {n.name: np.random.default_rng(n.layer.config.seed) for n in self.nodes
                           if getattr(n.layer.config, "seed", None) is not None}
        # A node runs its backward pass only when it, or something before it, has weights to train; a layer
        # whose input needs no gradient is told so (backward's need_dx) and may skip computing it.
        needs: dict[str, bool] = {}
        self.needs_input_grad: dict[str, bool] = {}
        for n in self.nodes:
            upstream = any(needs.get(t, False) for t, _ in n.inputs)
            own = n.layer.config.trainable and any(s.trainable for s in n.params)
            self.needs_input_grad[n.name] = upstream
            needs[n.name] = own or upstream
        self.needs_backward = needs
        self._workspace = None

    @property
    def workspace(self):
        """The scratch buffers of this model's own passes (training, evaluate, a single-threaded predict); a
        thread running batches beside it brings its own (kernels.workspace.Workspace)."""
        if self._workspace is None:
            from ..kernels.workspace import Workspace

            self._workspace = Workspace()
        return self._workspace

    @property
    def reentrant(self) -> bool:
        """Whether inference passes of different batches may run at once on separate threads (every layer
        reentrant: no carried state, no user code)."""
        return all(n.layer.reentrant for n in self.nodes)

    # ------------------------------------------------------------------ weights
    def trainable_pairs(self) -> list[tuple[str, str]]:
        """(node, param) of every weight the optimizer updates, in a fixed order."""
        return [(n.name, s.name) for n in self.nodes if n.layer.config.trainable
                for s in self.specs[n.name] if s.trainable]

    def _pack_trainable(self) -> None:
        """Keep every trainable weight as a view into one flat buffer (in ``trainable_pairs`` order), with a
        gradient buffer of the same layout (``self.packed``, layers/packed.py), so an optimizer step is one kernel
        call over all weights and layers can write their weight gradients straight into place. Values are
        unchanged. Nothing is packed without trainable weights or with weights of another dtype."""
        pairs = self.trainable_pairs()
        arrays = [self.params[n][p] for n, p in pairs]
        self.packed: PackedBuffers | None = None
        if not arrays or any(a.dtype != self.dtype for a in arrays):
            return
        packed = PackedBuffers([(pair, a.shape) for pair, a in zip(pairs, arrays, strict=True)], self.dtype)
        for (node, name), a in zip(pairs, arrays, strict=True):
            view = packed.value((node, name))
            view[...] = a
            self.params[node][name] = view
        self.packed = packed

    @property
    def flat_params(self) -> np.ndarray | None:
        """The flat buffer every trainable weight is a view into (None when not packed)."""
        return None if self.packed is None else self.packed.values

    @property
    def flat_grads(self) -> np.ndarray | None:
        """The flat gradient buffer of the same layout (None when not packed)."""
        return None if self.packed is None else self.packed.grads

    def grad_views(self, node_name: str) -> dict[str, np.ndarray] | None:
        """The packed gradient views of a node's trainable weights by name (backward's ``out``), or None."""
        if self.packed is None:
            return None
        views = {s.name: self.packed.grad((node_name, s.name)) for s in self.specs[node_name]
                 if s.trainable and (node_name, s.name) in self.packed.keys()}
        return views or None

    def weight_items(self):
        """(node, spec, array) for every weight, trainable or not, in Keras order."""
        for n in self.nodes:
            for s in self.specs[n.name]:
                arr = self.params[n.name][s.name] if s.trainable else n.layer.state[s.name]
                yield n.name, s, arr

    def get_weights(self) -> dict[str, list[np.ndarray]]:
        out: dict[str, list[np.ndarray]] = {}
        for name, _, arr in self.weight_items():
            out.setdefault(name, []).append(arr.copy())
        return out

    def set_weights(self, weights: dict[str, list[np.ndarray]]) -> None:
        """Set layers' weights by layer name, each a list in the order and layout ``get_weights`` gives; the one
        place weights are replaced (the Python API, EarlyStopping's restore_best_weights)."""
        for name, arrays in weights.items():
            if name not in self.specs:
                raise ConfigError(f"the model has no layer named '{name}' (layers: {', '.join(self.specs)})")
            specs = self.specs[name]
            if len(arrays) != len(specs):
                raise ConfigError(f"layer '{name}' has {len(specs)} weights "
                                  f"({', '.join(s.name for s in specs)}), got {len(arrays)}")
            for spec, arr in zip(specs, arrays):
                if tuple(np.shape(arr)) != tuple(spec.shape):
                    raise ConfigError(f"weight {name}/{spec.name} has shape {tuple(spec.shape)}, got "
                                      f"{np.shape(arr)}")
                self.set_weight(name, spec, arr)

    def set_weight(self, node_name: str, spec: ParamSpec, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value, dtype=self.dtype).reshape(np.shape(value))  # a 0-d weight stays 0-d
        if value.shape != tuple(spec.shape):
            raise ValueError(f"weight {node_name}/{spec.name} has shape {tuple(spec.shape)}, got {value.shape}")
        if spec.trainable:
            current = self.params[node_name].get(spec.name)
            if current is not None and self.packed is not None and self.packed.holds(current):
                current[...] = value  # stays in the packed buffer
            else:
                self.params[node_name][spec.name] = value
        else:
            self.graph.node(node_name).layer.state[spec.name] = value

    def reset_states(self) -> None:
        """Zero the carried state of stateful layers (start of an epoch, or on request)."""
        for n in self.nodes:
            reset = getattr(n.layer, "reset_states", None)
            if callable(reset):
                reset()

    # ------------------------------------------------------------------ passes
    def forward(self, xs: list[np.ndarray], *, training: bool, rng: np.random.Generator | None = None,
                keep: bool = True, workspace=None) -> tuple[list[np.ndarray], list, Tape | None]:
        """Run the graph; returns the outputs, their masks and (when ``keep``) the tape for backward.
        ``workspace``: the scratch buffers to use (default: the model's own, ``self.workspace``)."""
        ws = self.workspace if workspace is None else workspace
        values: dict = {}
        masks: dict = {}
        for inp, x in zip(self.graph.inputs, xs):
            values[(inp.name, 0)] = x
            masks[(inp.name, 0)] = None
        caches: dict = {}
        activity = []
        for node in self.nodes:
            layer = node.layer
            xin = [values[r] for r in node.inputs]
            min_ = [masks[r] for r in node.inputs]
            if not layer.multi_input:
                xin, min_ = xin[0], min_[0]
            layer_training = layer.training_mode(training)  # e.g. a frozen BatchNormalization: inference mode
            layer_rng = self.layer_rngs.get(node.name, rng) if training else rng
            y, cache = layer.forward(self.params[node.name], xin, training=layer_training, rng=layer_rng, mask=min_,
                                     workspace=ws)
            out_mask = layer.compute_mask(xin, min_)
            if keep:
                caches[node.name] = cache
            ys = y if layer.num_outputs() > 1 else [y]
            ms = out_mask if isinstance(out_mask, list) else [out_mask] * len(ys)
            for k, (v, m) in enumerate(zip(ys, ms)):
                values[(node.name, k)] = v
                masks[(node.name, k)] = m
            spec = self.activity[node.name]
            if training and spec:
                activity.append((node.name, spec))
        outs = [values[r] for r in self.graph.outputs]
        out_masks = [masks[r] for r in self.graph.outputs]
        tape = Tape(caches, values, masks, activity) if keep else None
        return outs, out_masks, tape

    def activity_loss(self, tape: Tape, batch: int) -> float:
        """Keras 3 activity penalty: l1·Σ|y| + l2·Σy², divided by the batch size."""
        total = 0.0
        for name, spec in tape.activity:
            for k in range(self.graph.node(name).layer.num_outputs()):
                y = tape.outputs[(name, k)]
                if spec.get("l1"):
                    total += spec["l1"] * float(np.abs(y).sum()) / batch
                if spec.get("l2"):
                    total += spec["l2"] * float(np.square(y).sum()) / batch
        return total

    def backward(self, tape: Tape, output_grads: list[np.ndarray | None], batch: int, *,
                 into_buffers: bool = False) -> dict:
        """Gradients of every trainable weight, given dLoss/dOutput for each model output.

        ``into_buffers``: layers that can write their weight gradients into the model's flat gradient buffer
        (``flat_grads``) do so (backward's ``out``); the returned arrays are then views into it, overwritten by
        the next such call.
        """
        ws = self.workspace
        grads_in: dict = {}

        def add(ref, g):
            if g is None:
                return
            if ref in grads_in:
                grads_in[ref] = grads_in[ref] + g
            else:
                grads_in[ref] = g

        for ref, g in zip(self.graph.outputs, output_grads):
            add(ref, g)
        for name, spec in tape.activity:
            for k in range(self.graph.node(name).layer.num_outputs()):
                y = tape.outputs[(name, k)]
                g = np.zeros_like(y)
                if spec.get("l1"):
                    g += (spec["l1"] / batch) * np.sign(y)
                if spec.get("l2"):
                    g += (2 * spec["l2"] / batch) * y
                add((name, k), g)
        grads: dict = {}
        for node in reversed(self.nodes):
            layer = node.layer
            if not self.needs_backward[node.name]:
                continue
            n_out = layer.num_outputs()
            dys = []
            for k in range(n_out):
                g = grads_in.pop((node.name, k), None)
                if g is None:
                    g = np.zeros_like(tape.outputs[(node.name, k)])
                dys.append(g)
            dy = dys if n_out > 1 else dys[0]
            need_dx = self.needs_input_grad[node.name]
            out = self._grad_out.get(node.name) if into_buffers else None
            dx, g = layer.backward(self.params[node.name], dy, tape.caches[node.name], need_dx=need_dx, out=out,
                                   workspace=ws)
            if layer.config.trainable:
                grads[node.name] = g
            if need_dx:
                dxs = dx if layer.multi_input else [dx]
                for ref, d in zip(node.inputs, dxs):
                    add(ref, d)
        return grads

    def _regularized(self) -> list:
        """(node, spec) of every trainable weight with a non-zero regularizer (fixed once built)."""
        cached = self.__dict__.get("_regularized_list")
        if cached is None:
            from .regularizers import has_penalty

            cached = [(n.name, s) for n in self.nodes if n.layer.config.trainable
                      for s in self.specs[n.name] if s.trainable and has_penalty(s.regularizer)]
            self._regularized_list = cached
        return cached

    def _constrained(self) -> list:
        """(node, spec) of every trainable weight with a constraint (fixed once built)."""
        cached = self.__dict__.get("_constrained_list")
        if cached is None:
            # a frozen layer (trainable: false) keeps its weights exactly: no constraint projection either
            cached = [(n.name, s) for n in self.nodes if n.layer.config.trainable
                      for s in self.specs[n.name] if s.trainable and s.constraint]
            self._constrained_list = cached
        return cached

    def regularization_loss(self) -> float:
        regularized = self._regularized()
        if not regularized:
            return 0.0
        from .regularizers import penalty

        total = 0.0
        for name, s in regularized:
            total += penalty(s.regularizer, self.params[name][s.name])
        return total

    def add_regularization_grads(self, grads: dict) -> None:
        regularized = self._regularized()
        if not regularized:
            return
        from .regularizers import penalty_grad

        for name, s in regularized:
            grads[name][s.name] = grads[name][s.name] + penalty_grad(
                s.regularizer, self.params[name][s.name]).astype(self.dtype, copy=False)

    def apply_constraints(self) -> None:
        constrained = self._constrained()
        if not constrained:
            return
        from .constraints import apply_constraint

        for name, s in constrained:
            apply_constraint(s.constraint, self.params[name][s.name])
