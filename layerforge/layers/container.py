"""Sequential: a small stack of layers used where one layer is expected (inside TimeDistributed, say)."""

from __future__ import annotations

import threading
from typing import Annotated

from pydantic import Field, WithJsonSchema, field_validator

from .base import Example, Layer, LayerConfig, ParamSpec, register, sub_buffers
from .union import LayerSpec

_STACK_SCHEMA = {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["type"]},
                 "description": "the layers, in order"}


def _prefix(name: str, key: str) -> str:
    return f"{name}/{key}"


@register
class Sequential(Layer):
    """Applies `layers:` one after the other, as one layer: for example
    `{type: TimeDistributed, layer: {type: Sequential, layers: [{type: Dense, units: 16, activation: relu},
    {type: Dense, units: 4}]}}` runs a two-layer MLP at every time step. Weights are named
    `<inner layer>/<weight>`; masks flow through the inner layers as in a model."""

    type = "Sequential"
    family = "wrappers"

    class Config(LayerConfig):
        layers: Annotated[list[LayerSpec], WithJsonSchema(_STACK_SCHEMA)] = Field(
            description="the inner layers, in order (single-input, single-output layers)")

        @field_validator("layers")
        @classmethod
        def _not_empty(cls, value):
            if not value:
                raise ValueError("a Sequential needs at least one layer")
            return value

    examples = [
        Example({"type": "Sequential", "layers": [{"type": "Dense", "units": 4, "activation": "tanh"},
                                                   {"type": "Dense", "units": 2}]}, (3,), output_shape=(2,),
                params=26),
        Example({"type": "TimeDistributed", "layer": {"type": "Sequential", "layers": [
            {"type": "Dense", "units": 3, "activation": "tanh"}, {"type": "Dropout", "rate": 0.5},
            {"type": "Dense", "units": 2, "activation": "sigmoid"}]}}, (4, 2), output_shape=(4, 2), params=17,
            mask=True),
        Example({"type": "Sequential", "layers": [{"type": "Dense", "units": 3, "use_bias": False},
                                                   {"type": "BatchNormalization"}, {"type": "ELU"}]}, (4,),
                output_shape=(3,), params=24, trainable_params=18, batch_size=4),
    ]

    def __init__(self, config, name=None):
        super().__init__(config, name)
        from . import make_layer
        from .base import snake_case

        self.inner: list[Layer] = []
        used: dict[str, int] = {}
        for cfg in config.layers:
            base = cfg.name or snake_case(cfg.type)
            k = used.get(base, 0)
            used[base] = k + 1
            self.inner.append(make_layer(cfg, base if k == 0 else f"{base}_{k}"))
        self.stochastic = any(layer.stochastic for layer in self.inner)
        self._last = threading.local()  # the output mask of this thread's latest forward (for compute_mask)

    # ------------------------------------------------------------------ shapes
    def _shapes(self, input_shape):
        shapes = [input_shape]
        for layer in self.inner:
            if layer.multi_input or layer.num_outputs() != 1:
                raise self.shape_error(input_shape, f"inner layer {layer.type} takes several inputs or gives "
                                                    "several outputs; a Sequential chains single-input layers",
                                       hint="build that part as a graph with `inputs:` instead")
            layer.batch_size = self.batch_size
            shapes.append(tuple(layer.output_shape(shapes[-1])))
        return shapes

    def output_shape(self, input_shape):
        return self._shapes(input_shape)[-1]

    def param_specs(self, input_shape):
        specs = []
        for layer, shape in zip(self.inner, self._shapes(input_shape)):
            for s in layer.param_specs(shape):
                trainable = s.trainable
                specs.append(ParamSpec(_prefix(layer.name, s.name), s.shape, s.initializer,
                                       trainable=trainable, regularizer=s.regularizer,
                                       constraint=s.constraint, fan=s.fan))
        return specs

    def flops(self, input_shape, output_shape):
        shapes = self._shapes(input_shape)
        return sum(layer.flops(shapes[i], shapes[i + 1]) for i, layer in enumerate(self.inner))

    # ------------------------------------------------------------------ maths
    def build(self, input_shape):
        super().build(input_shape)
        for layer, shape in zip(self.inner, self._shapes(input_shape)):
            layer.build(shape)

    def init_state(self, batch_size, dtype):
        for layer in self.inner:
            layer.init_state(batch_size, dtype)

    def _own(self, layer, params):
        head = layer.name + "/"
        return {k[len(head):]: v for k, v in params.items() if k.startswith(head)}

    def _state_in(self, layer):
        head = layer.name + "/"
        layer.state.update({k[len(head):]: v for k, v in self.state.items() if k.startswith(head)})

    def _state_out(self, layer, names):
        for key in names:
            if key in layer.state:
                self.state[_prefix(layer.name, key)] = layer.state[key]

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        caches = []
        for layer in self.inner:
            self._state_in(layer)
            before = set(layer.state)
            y, cache = layer.forward(self._own(layer, params), x, training=training, rng=rng, mask=mask,
                                     workspace=workspace)
            self._state_out(layer, before | set(layer.state))
            mask = layer.compute_mask(x, mask)
            caches.append(cache)
            x = y
        self._last.out_mask = mask  # read by compute_mask right after, on the same thread
        return x, caches

    def compute_mask(self, x, mask):
        return getattr(self._last, "out_mask", None)

    @property
    def reentrant(self) -> bool:
        return all(layer.reentrant for layer in self.inner)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        grads = {}
        for i in range(len(self.inner) - 1, -1, -1):
            layer = self.inner[i]
            # an inner layer after the first feeds another inner layer: its input gradient is always needed
            dy, g = layer.backward(self._own(layer, params), dy, cache[i], need_dx=need_dx or i > 0,
                                   out=sub_buffers(out, layer.name), workspace=workspace)
            for k, v in g.items():
                grads[_prefix(layer.name, k)] = v
            if dy is None and (i > 0 or need_dx):
                raise RuntimeError(f"inner layer {layer.name} gave no input gradient")
        return dy, grads

    def activity_penalty(self):
        return None  # inner layers' activity regularizers are not applied (as for TimeDistributed)
