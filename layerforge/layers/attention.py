"""Attention layers of Keras 2/3: MultiHeadAttention, Attention (Luong), AdditiveAttention (Bahdanau).

Keras 3 semantics and weight layout. All heads and all positions go through batched GEMMs at once (``np.matmul``
on arrays stacked as (batch, heads, positions, features), each a BLAS call) and one numerically stable softmax
over the keys, in place on the scores (kernels/layer_norm.py; its backward a fused Numba kernel): the maximum is
subtracted first, masked positions take -1e9 before the softmax and 0 after it, as Keras' masked Softmax does. No
Python loop over heads or time steps.

Inputs are listed as Keras calls them: ``inputs: [query, value]`` or ``[query, value, key]`` (key defaults to
value); MultiHeadAttention also takes a single input (self-attention: query = value = key). Keras masks of the
inputs (e.g. from ``Embedding(mask_zero=true)``) are used as Keras uses them, and the query's mask is the
output's mask.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, register
from .fields import ConstraintSpec, InitializerSpec, RegularizerSpec


def _split_inputs(x) -> tuple[Any, Any, Any, list[int]]:
    """(query, value, key, source) where source[i] is the input index feeding query/value/key."""
    xs = x if isinstance(x, list) else [x]
    if len(xs) == 1:
        return xs[0], xs[0], xs[0], [0, 0, 0]
    if len(xs) == 2:
        return xs[0], xs[1], xs[1], [0, 1, 1]
    return xs[0], xs[1], xs[2], [0, 1, 2]


def _sum_into(n_inputs: int, source: list[int], grads: list):
    """Input gradients from the query/value/key gradients (an input used twice gets the sum)."""
    out: list = [None] * n_inputs
    for i, g in zip(source, grads, strict=True):
        if g is None:
            continue
        out[i] = g if out[i] is None else out[i] + g
    return out


def _masks(mask, n: int):
    ms = mask if isinstance(mask, list) else [mask] * n
    return [None if m is None else np.asarray(m, dtype=bool) for m in ms]


def _keep_matrix(q_mask, v_mask, causal: bool, B: int, Tq: int, Tk: int):
    """(B, Tq, Tk) bool of the query/key pairs that may attend, or None when every pair may."""
    keep = None
    if q_mask is not None:
        keep = np.broadcast_to(q_mask[:, :, None], (B, Tq, Tk))
    if v_mask is not None:
        vm = np.broadcast_to(v_mask[:, None, :], (B, Tq, Tk))
        keep = vm if keep is None else keep & vm
    if causal:
        tri = np.tril(np.ones((Tq, Tk), dtype=bool))[None]
        keep = np.broadcast_to(tri, (B, Tq, Tk)) if keep is None else keep & tri
    return None if keep is None else np.ascontiguousarray(keep)


def _softmax(scores, keep):
    """Softmax of the last axis of scores (..., Tk), in place; keep (bool, broadcastable) marks what counts."""
    from ..kernels import layer_norm as K

    return K.softmax_(scores, keep)


def _softmax_grad(p, dp):
    from ..kernels import layer_norm as K

    Tk = p.shape[-1]
    return K.softmax_rows_grad(p.reshape(-1, Tk), dp.reshape(-1, Tk)).reshape(p.shape)


def _dropout_scale(shape, rate: float, rng, dtype):
    from ..kernels.elementwise import dropout

    if rng is None:
        raise ValueError("attention dropout in training needs an rng")
    key = int(rng.integers(0, 1 << 64, dtype=np.uint64))
    return dropout(np.ones(shape, dtype=dtype), rate, key)[1]


def _int_list(v, what: str):
    if v is None:
        return None
    vals = [v] if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(vals, (list, tuple)) or not vals or \
            not all(isinstance(a, int) and not isinstance(a, bool) for a in vals):
        raise ValueError(f"{what} is an integer or a list of integers, not {v!r}")
    return list(vals)


# ---------------------------------------------------------------------------------------------- MultiHeadAttention

@register
class MultiHeadAttention(Layer):
    """Multi-head attention (Keras 3 ``MultiHeadAttention``). Query, key and value are projected per head
    (``query/kernel (d_query, num_heads, key_dim)``, ``key/kernel (d_key, num_heads, key_dim)``, ``value/kernel
    (d_value, num_heads, value_dim)``, each with a ``(num_heads, dim)`` bias), the scores ``q . k / sqrt(key_dim)``
    go through a softmax over the key positions (with dropout on the probabilities in training), the per-head
    results are combined by ``attention_output/kernel (num_heads, value_dim, *output_shape)`` plus a bias. The
    output has the query's shape with the last axis ``output_shape`` (default: the query's feature size).
    ``attention_axes`` picks the axes attended over (default: every axis but the batch and the features); with
    several, the softmax runs over all of them jointly, as in Keras. Masks (on (batch, time, features) inputs):
    query mask x value mask (and the causal mask with ``use_causal_mask``) select the pairs that may attend;
    the query's mask passes to the output. ``return_attention_scores`` adds a second output, the attention
    probabilities (batch, num_heads, Tq, Tk) (refer to it as name:1)."""

    type = "MultiHeadAttention"
    family = "attention"
    multi_input = True
    stochastic = True

    class Config(LayerConfig):
        num_heads: int = Field(gt=0, description="number of attention heads")
        key_dim: int = Field(gt=0, description="size of each head for query and key")
        value_dim: int | None = Field(None, gt=0, description="size of each head for value; null: key_dim")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout rate on the attention probabilities "
                                                                "(training only)")
        use_bias: bool = Field(True, description="the dense projections have biases")
        output_shape: int | list[int] | None = Field(None, description="size(s) of the output's last axes; "
                                                                       "null: the query's feature size")
        attention_axes: int | list[int] | None = Field(
            None, description="axes attended over (count the batch axis); null: all but batch and features")
        use_causal_mask: bool = Field(False, description="a query position may only attend to key positions "
                                                         "up to its own (decoder self-attention); Keras' call "
                                                         "argument")
        return_attention_scores: bool = Field(False, description="also output the attention probabilities "
                                                                 "(second output, name:1); Keras' call argument")
        flash_attention: bool | None = Field(None, description="accepted for Keras compatibility; same maths")
        seed: int | None = Field(None, description="per-layer seed of the dropout; the model seed when unset")
        kernel_initializer: InitializerSpec = Field("glorot_uniform", description="initializer of the kernels")
        bias_initializer: InitializerSpec = Field("zeros", description="initializer of the biases")
        kernel_regularizer: RegularizerSpec = Field(None, description="penalty on the kernels")
        bias_regularizer: RegularizerSpec = Field(None, description="penalty on the biases")
        activity_regularizer: RegularizerSpec = Field(None, description="penalty on the output")
        kernel_constraint: ConstraintSpec = Field(None, description="constraint on the kernels")
        bias_constraint: ConstraintSpec = Field(None, description="constraint on the biases")
        keras1_exclude = frozenset({"dropout_W", "dropout_U"})  # a Keras 2/3 layer: no Keras 1 dropout names

        @field_validator("output_shape", "attention_axes", mode="before")
        @classmethod
        def _ints(cls, v, info):
            vals = _int_list(v, info.field_name)
            if vals is None:
                return None
            if info.field_name == "output_shape" and any(a < 1 for a in vals):
                raise ValueError(f"output_shape sizes must be >= 1, got {vals}")
            if info.field_name == "attention_axes" and 0 in vals:
                raise ValueError("attention_axes cannot include the batch axis 0")
            return v if isinstance(v, int) else list(vals)

    examples = [
        Example({"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 3}, [(4, 5)], output_shape=(4, 5),
                params=3 * (5 * 6 + 6) + 6 * 5 + 5,
                note="self-attention, one input"),
        Example({"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2, "value_dim": 3, "output_shape": 4},
                [(3, 5), (4, 6)], output_shape=(3, 4),
                params=(5 * 4 + 4) + (6 * 4 + 4) + (6 * 6 + 6) + (6 * 4 + 4)),
        Example({"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2}, [(4, 3), (4, 3), (4, 2)],
                output_shape=(4, 3), mask=True, params=(3 * 4 + 4) + (2 * 4 + 4) + (3 * 4 + 4) + (4 * 3 + 3),
                note="query, value, key with masks"),
        Example({"type": "MultiHeadAttention", "num_heads": 1, "key_dim": 2, "use_causal_mask": True,
                 "return_attention_scores": True, "use_bias": False}, [(3, 4), (3, 4)],
                output_shape=[(3, 4), (1, 3, 3)], params=8 + 8 + 8 + 8),
        Example({"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2, "attention_axes": [2]},
                [(2, 3, 4)], output_shape=(2, 3, 4), params=3 * (4 * 4 + 4) + 4 * 4 + 4,
                note="attention over axis 2 only"),
        Example({"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2, "attention_axes": [1, 2]},
                [(2, 3, 3)], output_shape=(2, 3, 3), params=3 * (3 * 4 + 4) + 4 * 3 + 3,
                note="joint softmax over two axes"),
        Example({"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2, "dropout": 0.3}, [(4, 3)],
                output_shape=(4, 3), params=3 * (3 * 4 + 4) + 4 * 3 + 3, note="dropout replayed"),
    ]

    def num_outputs(self) -> int:
        return 2 if self.config.return_attention_scores else 1

    # ------------------------------------------------------------------ shapes
    def _shapes(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if not 1 <= len(shapes) <= 3:
            raise self.shape_error(input_shape, "MultiHeadAttention takes [query], [query, value] or "
                                                "[query, value, key]")
        q = shapes[0]
        v = shapes[1] if len(shapes) > 1 else q
        k = shapes[2] if len(shapes) > 2 else v
        for s, what in ((q, "query"), (v, "value"), (k, "key")):
            if len(s) < 2:
                raise self.shape_error(input_shape, f"the {what} needs at least (positions, features)")
            if s[-1] is None:
                raise self.shape_error(input_shape, f"the {what}'s feature axis must have a known size")
        if len(v) != len(q) or len(k) != len(q):
            raise self.shape_error(input_shape, "query, value and key must have the same rank")
        if tuple(k[:-1]) != tuple(v[:-1]):
            raise self.shape_error(input_shape, "key and value must have the same shape except the last axis")
        return tuple(q), tuple(v), tuple(k)

    def _attention_axes(self, rank: int, input_shape=None) -> list[int]:
        """Positive attention axes of the batched inputs (rank counts the batch axis)."""
        axes = self.config.attention_axes
        if axes is None:
            return list(range(1, rank - 1))
        out = sorted({a + rank if a < 0 else a for a in ([axes] if isinstance(axes, int) else axes)})
        if any(not 1 <= a <= rank - 2 for a in out):
            raise self.shape_error(input_shape, f"attention_axes {axes} must name axes between the batch axis and "
                                                f"the feature axis of a {rank}D input (1 .. {rank - 2})")
        return out

    def _out_dims(self, q) -> tuple[int, ...]:
        o = self.config.output_shape
        if o is None:
            return (q[-1],)
        return (o,) if isinstance(o, int) else tuple(o)

    def output_shape(self, input_shape):
        q, v, k = self._shapes(input_shape)
        rank = len(q) + 1
        axes = self._attention_axes(rank, input_shape)
        others = [a for a in range(1, rank - 1) if a not in axes]
        if any(q[a - 1] != v[a - 1] for a in others):
            raise self.shape_error(input_shape, "query and value must agree on the axes not attended over")
        y = tuple(q[:-1]) + self._out_dims(q)
        if not self.config.return_attention_scores:
            return y
        scores = tuple(q[a - 1] for a in others) + (self.config.num_heads,) + tuple(q[a - 1] for a in axes) \
            + tuple(k[a - 1] for a in axes)
        return [y, scores]

    def param_specs(self, input_shape):
        q, v, k = self._shapes(input_shape)
        c = self.config
        H, K, V = c.num_heads, c.key_dim, c.value_dim or c.key_dim
        out = self._out_dims(q)
        specs = []

        def dense(name, kernel_shape, bias_shape, fan):
            specs.append(ParamSpec(f"{name}/kernel", kernel_shape, c.kernel_initializer,
                                   regularizer=c.kernel_regularizer, constraint=c.kernel_constraint, fan=fan))
            if c.use_bias:
                specs.append(ParamSpec(f"{name}/bias", bias_shape, c.bias_initializer,
                                       regularizer=c.bias_regularizer, constraint=c.bias_constraint))

        # fan as Keras computes it for these EinsumDense kernels (receptive field = the leading axes)
        dense("query", (q[-1], H, K), (H, K), (q[-1] * H, q[-1] * K))
        dense("key", (k[-1], H, K), (H, K), (k[-1] * H, k[-1] * K))
        dense("value", (v[-1], H, V), (H, V), (v[-1] * H, v[-1] * V))
        n_out = math.prod(out)
        dense("attention_output", (H, V) + out, out,
              (H * V, n_out) if len(out) == 1 else (H * V * math.prod(out[:-1]), out[-1] * H))
        return specs

    def flops(self, input_shape, output_shape):
        q, v, k = self._shapes(input_shape)
        c = self.config
        H, K, V = c.num_heads, c.key_dim, c.value_dim or c.key_dim
        tq = math.prod(d or 1 for d in q[:-1])
        tk = math.prod(d or 1 for d in k[:-1])
        rank = len(q) + 1
        axes = self._attention_axes(rank)
        per_group = math.prod(q[a - 1] or 1 for a in axes) * math.prod(k[a - 1] or 1 for a in axes)
        groups = tq // max(1, math.prod(q[a - 1] or 1 for a in axes))
        proj = tq * q[-1] * H * K + tk * (k[-1] * H * K + v[-1] * H * V) + tq * H * V * math.prod(self._out_dims(q))
        return proj + groups * per_group * H * (K + V)

    # ------------------------------------------------------------------ layout
    def _layout(self, shape):
        """(perm, grouped shape) that takes a projected (B, *dims, H, D) array to (B*others, H, T, D)."""
        rank = len(shape) - 1  # the batched input's rank
        axes = self._attention_axes(rank)
        others = [a for a in range(1, rank - 1) if a not in axes]
        perm = [0, *others, rank - 1, *axes, rank]
        groups = shape[0] * math.prod(shape[a] for a in others)
        T = math.prod(shape[a] for a in axes)
        return perm, (groups, shape[rank - 1], T, shape[rank])

    @staticmethod
    def _to_groups(a, perm, grouped):
        return np.ascontiguousarray(a.transpose(perm)).reshape(grouped)

    @staticmethod
    def _from_groups(g, perm, shape):
        moved = g.reshape(tuple(shape[i] for i in perm))
        return moved.transpose(np.argsort(perm))

    def _project(self, params, x, name, H, D):
        W = params[f"{name}/kernel"]
        p = x.reshape(-1, x.shape[-1]) @ W.reshape(W.shape[0], H * D)
        if self.config.use_bias:
            p += params[f"{name}/bias"].reshape(-1)
        return p.reshape(x.shape[:-1] + (H, D))

    # ------------------------------------------------------------------ maths
    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        c = self.config
        query, value, key, source = _split_inputs(x)
        n_inputs = len(x) if isinstance(x, list) else 1
        H, Kd, Vd = c.num_heads, c.key_dim, c.value_dim or c.key_dim
        dt = query.dtype
        Q = self._project(params, query, "query", H, Kd)
        Kp = self._project(params, key, "key", H, Kd)
        Vp = self._project(params, value, "value", H, Vd)
        q_perm, q_grouped = self._layout(Q.shape)
        k_perm, k_grouped = self._layout(Kp.shape)
        v_perm, v_grouped = self._layout(Vp.shape)
        scale = dt.type(1.0 / math.sqrt(Kd))
        Qg = self._to_groups(Q, q_perm, q_grouped) * scale
        Kg = self._to_groups(Kp, k_perm, k_grouped)
        Vg = self._to_groups(Vp, v_perm, v_grouped)
        scores = np.matmul(Qg, Kg.transpose(0, 1, 3, 2))  # (G, H, Tq, Tk)
        keep = self._keep(mask, n_inputs, source, query, key, scores.shape)
        P = _softmax(scores, keep)
        drop = None
        Pd = P
        if training and c.dropout > 0:
            drop = _dropout_scale(P.shape, c.dropout, rng, dt)
            Pd = P * drop
        Og = np.matmul(Pd, Vg)  # (G, H, Tq, Vd)
        O = self._from_groups(Og, q_perm, Q.shape[:-1] + (Vd,))  # (B, *dims, H, Vd)
        O2 = np.ascontiguousarray(O).reshape(-1, H * Vd)
        Wo = params["attention_output/kernel"]
        out_dims = Wo.shape[2:]
        y = O2 @ Wo.reshape(H * Vd, -1)
        if c.use_bias:
            y += params["attention_output/bias"].reshape(-1)
        y = y.reshape(query.shape[:-1] + tuple(out_dims))
        cache = (query, value, key, source, n_inputs, Qg, Kg, Vg, P, drop, Pd, O2, q_perm, k_perm, v_perm,
                 Q.shape, Kp.shape, Vp.shape)
        if c.return_attention_scores:
            return [y, self._scores_out(P, Q.shape, Kp.shape)], cache
        return y, cache

    def _scores_out(self, P, q_shape, k_shape):
        """The probabilities (G, H, Tq, Tk) in Keras' layout (B, *others, H, *q_axes, *k_axes)."""
        rank = len(q_shape) - 1
        axes = self._attention_axes(rank)
        others = [a for a in range(1, rank - 1) if a not in axes]
        shape = (q_shape[0], *(q_shape[a] for a in others), q_shape[rank - 1], *(q_shape[a] for a in axes),
                 *(k_shape[a] for a in axes))
        return P.reshape(shape)

    def _keep(self, mask, n_inputs, source, query, key, scores_shape):
        c = self.config
        masks = _masks(mask, n_inputs) if mask is not None else [None] * n_inputs
        q_mask, v_mask = masks[source[0]], masks[source[1]]
        if source[2] != source[1] and masks[source[2]] is not None:  # Keras: key mask ignored when key is value
            km = masks[source[2]]
            v_mask = km if v_mask is None else v_mask & km
        if q_mask is None and v_mask is None and not c.use_causal_mask:
            return None
        if query.ndim != 3 and (q_mask is not None or v_mask is not None):
            raise ValueError(f"MultiHeadAttention '{self.name}': masks are supported on (batch, time, features) "
                             f"inputs; got a query of shape {query.shape}")
        if c.use_causal_mask and self.config.attention_axes is not None and query.ndim != 3:
            raise ValueError(f"MultiHeadAttention '{self.name}': use_causal_mask needs (batch, time, features) "
                             "inputs")
        B, Tq, Tk = query.shape[0], scores_shape[2], scores_shape[3]
        keep = _keep_matrix(q_mask, v_mask, c.use_causal_mask, B, Tq, Tk)
        return keep.reshape(B, 1, Tq, Tk)

    def compute_mask(self, x, mask):
        q_mask = mask[0] if isinstance(mask, list) else mask
        return [q_mask, None] if self.config.return_attention_scores else q_mask

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        c = self.config
        (query, value, key, source, n_inputs, Qg, Kg, Vg, P, drop, Pd, O2, q_perm, k_perm, v_perm,
         q_shape, k_shape, v_shape) = cache
        d_scores = None
        if c.return_attention_scores:
            dy, d_scores = dy[0], dy[1]
        H, Kd, Vd = c.num_heads, c.key_dim, c.value_dim or c.key_dim
        dt = Qg.dtype
        Wo = params["attention_output/kernel"]
        dy2 = np.asarray(dy, dtype=dt).reshape(O2.shape[0], -1)
        grads = {"attention_output/kernel": (O2.T @ dy2).reshape(Wo.shape)}
        if c.use_bias:
            grads["attention_output/bias"] = dy2.sum(axis=0).reshape(params["attention_output/bias"].shape)
        dO = (dy2 @ Wo.reshape(H * Vd, -1).T).reshape(q_shape[:-1] + (Vd,))
        dOg = self._to_groups(dO, q_perm, Pd.shape[:3] + (Vd,))
        dPd = np.matmul(dOg, Vg.transpose(0, 1, 3, 2))
        dVg = np.matmul(Pd.transpose(0, 1, 3, 2), dOg)
        dP = dPd * drop if drop is not None else dPd
        if d_scores is not None and np.any(d_scores):
            dP = dP + np.asarray(d_scores, dtype=dt).reshape(P.shape)
        dS = _softmax_grad(P, dP)
        scale = dt.type(1.0 / math.sqrt(Kd))
        dQg = np.matmul(dS, Kg) * scale
        dKg = np.matmul(dS.transpose(0, 1, 3, 2), Qg)  # Qg already holds the scale
        dQ = self._from_groups(dQg, q_perm, q_shape)
        dK = self._from_groups(dKg, k_perm, k_shape)
        dV = self._from_groups(dVg, v_perm, v_shape)
        d_inputs = []
        for name, inp, d, D in (("query", query, dQ, Kd), ("value", value, dV, Vd), ("key", key, dK, Kd)):
            W = params[f"{name}/kernel"]
            d2 = np.ascontiguousarray(d).reshape(-1, H * D)
            x2 = inp.reshape(-1, inp.shape[-1])
            grads[f"{name}/kernel"] = (x2.T @ d2).reshape(W.shape)
            if c.use_bias:
                grads[f"{name}/bias"] = d2.sum(axis=0).reshape(H, D)
            d_inputs.append((d2 @ W.reshape(W.shape[0], H * D).T).reshape(inp.shape) if need_dx
                            else None)
        # source lists the input of query, value, key; d_inputs is in that order
        dx = _sum_into(n_inputs, source, d_inputs)
        return dx, grads


# ---------------------------------------------------------------------------------------------- Attention

class _ScoreAttention(Layer):
    """Shared call logic of Attention and AdditiveAttention: scores -> masked softmax -> dropout -> @ value."""

    family = "attention"
    multi_input = True
    stochastic = True

    def num_outputs(self) -> int:
        return 2 if self.config.return_attention_scores else 1

    def _shapes(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(shapes) not in (2, 3):
            raise self.shape_error(input_shape, f"{self.type} takes [query, value] or [query, value, key]",
                                   hint="list two or three inputs")
        q, v = shapes[0], shapes[1]
        k = shapes[2] if len(shapes) == 3 else v
        if any(len(s) != 2 for s in (q, v, k)):
            raise self.shape_error(input_shape, "query, value and key are (time steps, features)")
        if q[-1] is None or k[-1] != q[-1]:
            raise self.shape_error(input_shape, "query and key must have the same known feature size")
        if k[0] != v[0]:
            raise self.shape_error(input_shape, "key and value must have the same number of time steps")
        return tuple(q), tuple(v), tuple(k)

    def output_shape(self, input_shape):
        q, v, k = self._shapes(input_shape)
        y = (q[0], v[-1])
        return [y, (q[0], k[0])] if self.config.return_attention_scores else y

    def flops(self, input_shape, output_shape):
        q, v, k = self._shapes(input_shape)
        return (q[0] or 1) * (k[0] or 1) * (q[-1] + v[-1])

    def compute_mask(self, x, mask):
        q_mask = mask[0] if isinstance(mask, list) else None
        return [q_mask, None] if self.config.return_attention_scores else q_mask

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        c = self.config
        q, v = x[0], x[1]
        k = x[2] if len(x) > 2 else v
        scores, score_cache = self._scores(params, q, k)
        masks = _masks(mask, len(x)) if mask is not None else [None] * len(x)
        q_mask, v_mask = masks[0], masks[1]
        keep = _keep_matrix(None, v_mask, c.use_causal_mask, q.shape[0], q.shape[1], k.shape[1])
        P = _softmax(scores, keep)
        drop = None
        Pd = P
        if training and c.dropout > 0:
            drop = _dropout_scale(P.shape, c.dropout, rng, q.dtype)
            Pd = P * drop
        y = np.matmul(Pd, v)
        qkeep = None
        if q_mask is not None:
            qkeep = q_mask[:, :, None]
            y = np.where(qkeep, y, q.dtype.type(0))
        cache = (x, score_cache, P, drop, Pd, qkeep)
        return ([y, P] if c.return_attention_scores else y), cache

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        c = self.config
        x, score_cache, P, drop, Pd, qkeep = cache
        d_scores_out = None
        if c.return_attention_scores:
            dy, d_scores_out = dy
        v = x[1]
        if qkeep is not None:
            dy = np.where(qkeep, dy, 0)
        dt = P.dtype
        dy = np.asarray(dy, dtype=dt)
        dPd = np.matmul(dy, v.transpose(0, 2, 1))
        dv = np.matmul(Pd.transpose(0, 2, 1), dy)
        dP = dPd * drop if drop is not None else dPd
        if d_scores_out is not None:
            dP = dP + d_scores_out
        dS = _softmax_grad(P, dP)
        dq, dk, grads = self._scores_backward(params, dS, score_cache)
        if len(x) > 2:
            return [dq, dv, dk], grads
        return [dq, dv + dk], grads


@register
class Attention(_ScoreAttention):
    """Dot-product (Luong) attention (Keras 3 ``Attention``): scores ``query @ key^T`` (times a learned scalar
    ``scale`` with ``use_scale``), or with ``score_mode: concat`` ``concat_score_weight * sum(tanh(scale * (q +
    k)))``; softmax over the key steps (value mask and causal mask: -1e9 before it), dropout on the
    probabilities in training, then ``@ value``; output steps where the query is masked are 0. Inputs ``[query,
    value]`` or ``[query, value, key]``, each (steps, features). ``return_attention_scores`` adds the
    probabilities (Tq, Tv) as a second output."""

    type = "Attention"

    class Config(LayerConfig):
        use_scale: bool = Field(False, description="learn a scalar that multiplies the scores (weight `scale`)")
        score_mode: str = Field("dot", description="dot (q . k) or concat (sum of tanh(q + k))")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout rate on the attention probabilities")
        use_causal_mask: bool = Field(False, description="query step i attends only to key steps <= i")
        return_attention_scores: bool = Field(False, description="also output the attention probabilities "
                                                                 "(name:1)")
        seed: int | None = Field(None, description="per-layer seed of the dropout")
        causal: bool | None = Field(None, description="Keras 2.x name of use_causal_mask")
        keras1_exclude = frozenset({"dropout_W", "dropout_U"})

        @model_validator(mode="after")
        def _modes(self):
            if self.score_mode not in ("dot", "concat"):
                raise ValueError(f"score_mode must be dot or concat, not {self.score_mode!r}")
            if self.causal is not None:
                self.use_causal_mask = self.use_causal_mask or self.causal
                self.causal = None
            return self

    examples = [
        Example({"type": "Attention"}, [(4, 3), (5, 3)], output_shape=(4, 3), params=0),
        Example({"type": "Attention", "use_scale": True, "return_attention_scores": True}, [(4, 3), (4, 2), (4, 3)],
                output_shape=[(4, 2), (4, 4)], params=1, mask=True),
        Example({"type": "Attention", "score_mode": "concat", "use_scale": True, "use_causal_mask": True},
                [(3, 2), (3, 2)], output_shape=(3, 2), params=2),
        Example({"type": "Attention", "dropout": 0.4, "score_mode": "concat"}, [(3, 2), (4, 2)],
                output_shape=(3, 2), params=1),
    ]

    def param_specs(self, input_shape):
        self._shapes(input_shape)
        specs = []
        if self.config.use_scale:
            specs.append(ParamSpec("scale", (), "ones"))
        if self.config.score_mode == "concat":
            specs.append(ParamSpec("concat_score_weight", (), "ones"))
        return specs

    def _scores(self, params, q, k):
        c = self.config
        s = params["scale"] if c.use_scale else None
        if c.score_mode == "dot":
            raw = np.matmul(q, k.transpose(0, 2, 1))
            return (raw * s if s is not None else raw), (q, k, raw, None)
        u = q[:, :, None, :] + k[:, None, :, :]
        if s is not None:
            u = u * s
        t = np.tanh(u)
        tsum = t.sum(axis=-1)
        return params["concat_score_weight"] * tsum, (q, k, tsum, t)

    def _scores_backward(self, params, dS, score_cache):
        c = self.config
        q, k, raw, t = score_cache
        grads = {}
        s = params["scale"] if c.use_scale else None
        if c.score_mode == "dot":
            if s is not None:
                grads["scale"] = np.asarray((dS * raw).sum(), dtype=s.dtype).reshape(s.shape)
                dS = dS * s
            return np.matmul(dS, k), np.matmul(dS.transpose(0, 2, 1), q), grads
        w = params["concat_score_weight"]
        grads["concat_score_weight"] = np.asarray((dS * raw).sum(), dtype=w.dtype).reshape(w.shape)
        du = (dS * w)[..., None] * (1 - t * t)
        if s is not None:
            grads["scale"] = np.asarray((du * (q[:, :, None, :] + k[:, None, :, :])).sum(),
                                        dtype=s.dtype).reshape(s.shape)
            du = du * s
        return du.sum(axis=2), du.sum(axis=1), grads


@register
class AdditiveAttention(_ScoreAttention):
    """Additive (Bahdanau) attention (Keras 3 ``AdditiveAttention``): scores ``sum(scale * tanh(q + k))`` over
    the features, with a learned ``scale`` of shape (features,) (``use_scale``, glorot_uniform); then as
    Attention: masked softmax over the key steps, dropout, ``@ value``, masked query steps 0."""

    type = "AdditiveAttention"

    class Config(LayerConfig):
        use_scale: bool = Field(True, description="learn a per-feature scale of the tanh terms (weight `scale`)")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout rate on the attention probabilities")
        use_causal_mask: bool = Field(False, description="query step i attends only to key steps <= i")
        return_attention_scores: bool = Field(False, description="also output the attention probabilities "
                                                                 "(name:1)")
        seed: int | None = Field(None, description="per-layer seed of the dropout")
        causal: bool | None = Field(None, description="Keras 2.x name of use_causal_mask")
        keras1_exclude = frozenset({"dropout_W", "dropout_U"})

        @model_validator(mode="after")
        def _causal(self):
            if self.causal is not None:
                self.use_causal_mask = self.use_causal_mask or self.causal
                self.causal = None
            return self

    examples = [
        Example({"type": "AdditiveAttention"}, [(4, 3), (5, 3)], output_shape=(4, 3), params=3),
        Example({"type": "AdditiveAttention", "use_scale": False, "return_attention_scores": True},
                [(4, 3), (4, 2), (4, 3)], output_shape=[(4, 2), (4, 4)], params=0, mask=True),
        Example({"type": "AdditiveAttention", "dropout": 0.3, "use_causal_mask": True}, [(3, 2), (3, 2)],
                output_shape=(3, 2), params=2),
    ]

    def param_specs(self, input_shape):
        q, _, _ = self._shapes(input_shape)
        return [ParamSpec("scale", (q[-1],), "glorot_uniform", fan=(q[-1], q[-1]))] if self.config.use_scale else []

    def _scores(self, params, q, k):
        t = np.tanh(q[:, :, None, :] + k[:, None, :, :])  # (B, Tq, Tk, D)
        if self.config.use_scale:
            return (t * params["scale"]).sum(axis=-1), t
        return t.sum(axis=-1), t

    def _scores_backward(self, params, dS, t):
        grads = {}
        if self.config.use_scale:
            grads["scale"] = np.einsum("bij,bijd->d", dS, t).astype(params["scale"].dtype)
            du = dS[..., None] * params["scale"] * (1 - t * t)
        else:
            du = dS[..., None] * (1 - t * t)
        return du.sum(axis=2), du.sum(axis=1), grads
