"""Wrappers: TimeDistributed (a layer applied to every time step) and Bidirectional (a recurrent layer
run both ways)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, model_validator

from ._numpy import np
from .base import Example, Layer, LayerConfig, register, sub_buffers
from .union import LayerSpec

# ---------------------------------------------------------------------------------------- TimeDistributed

@register
class TimeDistributed(Layer):
    """Applies the wrapped layer (`layer:`) to every time step: input (batch, time, ...) is run as one
    batch of batch*time slices and reshaped back, so the weights are shared across time and the
    parameters are the inner layer's (same names). Works with any single-input, single-output layer
    (Dense, Conv2D, a recurrent layer over nested sequences, another TimeDistributed). The incoming
    mask passes through unchanged; the inner layer sees no mask (as Keras 1)."""

    type = "TimeDistributed"
    family = "wrappers"
    supports_masking = True

    class Config(LayerConfig):
        layer: LayerSpec = Field(description="the layer applied at every time step (a layer mapping)")

    examples = [
        Example({"type": "TimeDistributed", "layer": {"type": "Dense", "units": 8}}, (10, 16), output_shape=(10, 8),
                params=136, gradcheck=False, note="reference figure"),
        Example({"type": "TimeDistributed", "layer": {"type": "Dense", "units": 4}}, (10, 16),
                output_shape=(10, 4), params=68, gradcheck=False, note="reference figure M9 (after LSTM(16))"),
        Example({"type": "TimeDistributed", "layer": {"type": "Dense", "units": 3, "activation": "tanh"}}, (4, 2),
                output_shape=(4, 3), params=9, mask=True),
        Example({"type": "TimeDistributed", "layer": {"type": "SimpleRNN", "units": 2}}, (3, 4, 2),
                output_shape=(3, 2), params=10),
        Example({"type": "TimeDistributed",
                 "layer": {"type": "TimeDistributed", "layer": {"type": "Dense", "units": 2, "use_bias": False}}},
                (2, 3, 4), output_shape=(2, 3, 2), params=8),
    ]

    def __init__(self, config, name=None):
        super().__init__(config, name)
        from . import make_layer

        self.inner = make_layer(config.layer, config.layer.name or self.name)
        self.inner.state = self.state  # non-trainable weights of the inner layer live in our state

    @property
    def reentrant(self) -> bool:
        return self.inner.reentrant

    def _inner_shape(self, input_shape):
        if isinstance(input_shape, list) or len(input_shape) < 2:
            raise self.shape_error(input_shape, "TimeDistributed needs an input of rank >= 3 (batch, time, ...)",
                                   hint="the wrapped layer is applied to every input[:, t]; add a time axis")
        if self.inner.multi_input:
            raise self.shape_error(input_shape, f"cannot wrap {self.inner.type}: it takes several inputs")
        return tuple(input_shape[1:])

    def output_shape(self, input_shape):
        inner_in = self._inner_shape(input_shape)
        self.inner.batch_size = None
        out = self.inner.output_shape(inner_in)
        if self.inner.num_outputs() > 1 or isinstance(out, list):
            raise self.shape_error(input_shape, f"cannot wrap {self.inner.type} with several outputs",
                                   hint="turn off return_state in the wrapped layer")
        return (input_shape[0],) + tuple(out)

    def param_specs(self, input_shape):
        return self.inner.param_specs(self._inner_shape(input_shape))

    def flops(self, input_shape, output_shape):
        inner_in = self._inner_shape(input_shape)
        return (input_shape[0] or 1) * self.inner.flops(inner_in, self.inner.output_shape(inner_in))

    def build(self, input_shape):
        super().build(input_shape)
        self.inner.build(self._inner_shape(input_shape))

    def init_state(self, batch_size, dtype):
        self.inner.state = self.state
        self.inner.init_state(None, dtype)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        self.inner.state = self.state
        x = np.asarray(x)
        B, T = x.shape[:2]
        y, cache = self.inner.forward(params, x.reshape((B * T,) + x.shape[2:]), training=training, rng=rng,
                                      mask=None, workspace=workspace)
        return y.reshape((B, T) + y.shape[1:]), (cache, x.shape)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        inner_cache, shape = cache
        B, T = shape[:2]
        dy = np.asarray(dy)
        # same weight names: the engine's buffers pass through
        dx, grads = self.inner.backward(params, dy.reshape((B * T,) + dy.shape[2:]), inner_cache, need_dx=need_dx,
                                        out=out, workspace=workspace)
        if dx is not None:
            dx = dx.reshape(shape)
        return dx, grads


# ---------------------------------------------------------------------------------------- Bidirectional

_RNN_TYPES = ("SimpleRNN", "GRU", "LSTM")


@register
class Bidirectional(Layer):
    """Runs a recurrent layer (`layer:` SimpleRNN, GRU or LSTM) forwards and a copy of it backwards over
    the same input (and mask) and merges the two outputs (merge_mode concat, sum, mul, ave, or null for
    two separate outputs). With return_sequences the backward output is turned back so step t of both
    refers to input step t, and masked steps output zeros (Keras 3). Weights: every forward weight
    ("forward/kernel", ...), then every backward weight ("backward/kernel", ...). With return_state the
    outputs are the merged output(s), then the forward states, then the backward states."""

    type = "Bidirectional"
    family = "wrappers"

    class Config(LayerConfig):
        layer: LayerSpec = Field(description="the recurrent layer to run both ways (SimpleRNN, GRU or LSTM mapping)")
        merge_mode: Literal["concat", "sum", "mul", "ave"] | None = Field(
            "concat", description="how the two directions are combined; null keeps them as two outputs")
        backward_layer: LayerSpec | None = Field(
            None, description="optional layer mapping for the backward direction (default: a copy of `layer` "
                              "with go_backwards flipped); must match return_sequences/return_state/stateful")

        @model_validator(mode="after")
        def _recurrent_inside(self):
            for what, cfg in (("layer", self.layer), ("backward_layer", self.backward_layer)):
                if cfg is not None and cfg.type not in _RNN_TYPES:
                    raise ValueError(f"Bidirectional wraps a recurrent layer (SimpleRNN, GRU or LSTM); "
                                     f"`{what}` is {cfg.type}")
            b, f = self.backward_layer, self.layer
            if b is not None:
                for key in ("return_sequences", "return_state", "stateful"):
                    if getattr(b, key) != getattr(f, key):
                        raise ValueError(f"backward_layer must have the same {key} as layer "
                                         f"({getattr(f, key)}), got {getattr(b, key)}")
                if b.go_backwards == f.go_backwards:
                    raise ValueError("backward_layer must process the other way: set go_backwards: "
                                     f"{not f.go_backwards} on it")
            return self

    examples = [
        Example({"type": "Bidirectional", "layer": {"type": "LSTM", "units": 32}}, (10, 8), output_shape=(64,),
                params=10496, gradcheck=False, note="reference figure"),
        Example({"type": "Bidirectional", "layer": {"type": "GRU", "units": 32}}, (10, 8), output_shape=(64,),
                params=8064, gradcheck=False, note="reference figure"),
        Example({"type": "Bidirectional", "merge_mode": "sum", "layer": {"type": "LSTM", "units": 32,
                                                                          "return_sequences": True}}, (10, 8),
                output_shape=(10, 32), params=10496, gradcheck=False, note="reference figure"),
        Example({"type": "Bidirectional", "layer": {"type": "LSTM", "units": 3, "return_sequences": True}}, (4, 2),
                output_shape=(4, 6), params=144, mask=True),
        Example({"type": "Bidirectional", "merge_mode": "sum", "layer": {"type": "GRU", "units": 3}}, (4, 2),
                output_shape=(3,), params=126, mask=True),
        Example({"type": "Bidirectional", "merge_mode": "mul",
                 "layer": {"type": "SimpleRNN", "units": 3, "return_sequences": True}}, (3, 2),
                output_shape=(3, 3), params=36),
        Example({"type": "Bidirectional", "merge_mode": "ave",
                 "layer": {"type": "GRU", "units": 2, "reset_after": False, "return_sequences": True}}, (3, 2),
                output_shape=(3, 2), params=60, mask=True),
        Example({"type": "Bidirectional", "merge_mode": None, "layer": {"type": "SimpleRNN", "units": 2}}, (3, 2),
                output_shape=[(2,), (2,)], params=20),
        Example({"type": "Bidirectional",
                 "layer": {"type": "LSTM", "units": 2, "return_state": True, "return_sequences": True},
                 "backward_layer": {"type": "LSTM", "units": 2, "return_state": True, "return_sequences": True,
                                    "go_backwards": True, "activation": "softsign"}}, (3, 2),
                output_shape=[(3, 4), (2,), (2,), (2,), (2,)], params=80),
        Example({"type": "Bidirectional", "layer": {"type": "GRU", "units": 2, "stateful": True}}, (3, 2),
                output_shape=(4,), params=72, batch_size=2),
    ]

    def __init__(self, config, name=None):
        super().__init__(config, name)
        from . import make_layer

        fwd_cfg = config.layer
        bwd_cfg = config.backward_layer or fwd_cfg.model_copy(update={"go_backwards": not fwd_cfg.go_backwards})
        # Keras 3: masked steps of a bidirectional sequence are zeros (fixed for the inner layers' lifetime)
        zero = bool(fwd_cfg.return_sequences)
        self.forward_layer = make_layer(fwd_cfg, f"forward_{fwd_cfg.name or self.name}", zero_output_for_mask=zero)
        self.backward_layer = make_layer(bwd_cfg, f"backward_{bwd_cfg.name or self.name}", zero_output_for_mask=zero)
        self._link_states()

    @property
    def reentrant(self) -> bool:
        return self.forward_layer.reentrant and self.backward_layer.reentrant

    @property
    def _layers(self):
        return (("forward", self.forward_layer), ("backward", self.backward_layer))

    def _link_states(self):
        """Keep the inner layers' carried state inside self.state (so it is saved and restored with ours)."""
        for key, layer in self._layers:
            if key in self.state:
                layer.state = self.state[key]
            else:
                self.state[key] = layer.state

    # ------------------------------------------------------------------ shape side
    def num_outputs(self) -> int:
        n = 2 if self.config.merge_mode is None else 1
        if self.config.layer.return_state:
            n += 2 * self.forward_layer.num_outputs() - 2
        return n

    def _inner(self, input_shape):
        outs = []
        for _, layer in self._layers:
            layer.batch_size = self.batch_size
            o = layer.output_shape(input_shape)
            outs.append(list(o) if isinstance(o, list) else [o])
        if outs[0][0] != outs[1][0]:
            raise self.shape_error(input_shape, f"the forward output {outs[0][0]} and the backward output "
                                                f"{outs[1][0]} differ", hint="give both layers the same units")
        return outs

    def output_shape(self, input_shape):
        (yf, *sf), (yb, *sb) = self._inner(input_shape)
        mode = self.config.merge_mode
        if mode is None:
            merged = [tuple(yf), tuple(yb)]
        elif mode == "concat":
            merged = [tuple(yf[:-1]) + (yf[-1] * 2,)]
        else:
            merged = [tuple(yf)]
        outs = merged + [tuple(s) for s in sf] + [tuple(s) for s in sb]
        return outs if len(outs) > 1 else outs[0]

    def param_specs(self, input_shape):
        return [dataclasses.replace(spec, name=f"{key}/{spec.name}")
                for key, layer in self._layers for spec in layer.param_specs(input_shape)]

    def flops(self, input_shape, output_shape):
        total = 0
        for _, layer in self._layers:
            total += layer.flops(input_shape, layer.output_shape(input_shape))
        return total

    def build(self, input_shape):
        super().build(input_shape)
        for _, layer in self._layers:
            layer.build(input_shape)

    def init_state(self, batch_size, dtype):
        self._link_states()
        for _, layer in self._layers:
            layer.init_state(batch_size, dtype)

    def reset_states(self):
        self._link_states()
        for _, layer in self._layers:
            layer.reset_states()

    def compute_mask(self, x, mask):
        seq = self.config.layer.return_sequences
        out = mask if seq else None
        n_merged = 2 if self.config.merge_mode is None else 1
        masks = [out] * n_merged + [None] * (self.num_outputs() - n_merged)
        return masks if len(masks) > 1 else masks[0]

    # ------------------------------------------------------------------ maths
    @staticmethod
    def _sub(params, key):
        p = key + "/"
        return {k[len(p):]: v for k, v in params.items() if k.startswith(p)}

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        self._link_states()
        seq = self.config.layer.return_sequences
        results, caches = [], []
        for key, layer in self._layers:
            y, cache = layer.forward(self._sub(params, key), x, training=training, rng=rng, mask=mask,
                                     workspace=workspace)
            ys = y if isinstance(y, list) else [y]
            caches.append(cache)
            results.append(ys)
        (yf, *sf), (yb, *sb) = results
        if seq:
            yb = yb[:, ::-1]  # the backward layer returns its sequence in processing order
        mode = self.config.merge_mode
        if mode is None:
            merged = [yf, np.ascontiguousarray(yb)]
        elif mode == "concat":
            merged = [np.concatenate([yf, yb], axis=-1)]
        elif mode == "sum":
            merged = [yf + yb]
        elif mode == "mul":
            merged = [yf * yb]
        else:
            merged = [(yf + yb) * yf.dtype.type(0.5)]
        outs = merged + sf + sb
        cache = (caches, yf, yb, len(sf))
        return (outs if len(outs) > 1 else outs[0]), cache

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        caches, yf, yb, n_states = cache
        dys = dy if isinstance(dy, list) else [dy]
        mode = self.config.merge_mode
        n_merged = 2 if mode is None else 1
        d = dys[:n_merged]
        d = [np.zeros_like(yf) if v is None else np.asarray(v) for v in d]
        if mode is None:
            dyf, dyb = d
        elif mode == "concat":
            u = yf.shape[-1]
            dyf, dyb = d[0][..., :u], d[0][..., u:]
        elif mode == "sum":
            dyf = dyb = d[0]
        elif mode == "mul":
            dyf, dyb = d[0] * yb, d[0] * yf
        else:
            dyf = dyb = d[0] * yf.dtype.type(0.5)
        if self.config.layer.return_sequences:
            dyb = dyb[:, ::-1]
        dsf = dys[n_merged:n_merged + n_states]
        dsb = dys[n_merged + n_states:n_merged + 2 * n_states]
        dx = None
        grads = {}
        for (key, layer), dyk, ds, c in zip(self._layers, (dyf, dyb), (dsf, dsb), caches, strict=True):
            g = [np.ascontiguousarray(dyk)] + list(ds) if n_states else np.ascontiguousarray(dyk)
            # the engine's gradient buffers of this direction's weights
            dxk, gk = layer.backward(self._sub(params, key), g, c, need_dx=need_dx, out=sub_buffers(out, key),
                                     workspace=workspace)
            if dxk is not None:
                dx = dxk if dx is None else dx + dxk
            grads.update({f"{key}/{k}": v for k, v in gk.items()})
        return dx, grads

