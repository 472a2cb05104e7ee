"""Merge: the Keras 1 layer joining several inputs (sum, mul, ave, max, min, subtract, concat, dot, cos), with the
Keras 2/3 merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot) as aliases."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from ..errors import did_you_mean
from ._numpy import np
from .base import Example, Layer, LayerConfig, elements, register

MODES = ("sum", "mul", "ave", "max", "min", "subtract", "concat", "dot", "cos")
ELEMENTWISE = ("sum", "mul", "ave", "max", "min", "subtract")
MODE_SYNONYMS = {"add": "sum", "multiply": "mul", "average": "ave", "avg": "ave", "maximum": "max",
                 "minimum": "min", "sub": "subtract", "concatenate": "concat", "cosine": "cos"}
EPSILON = 1e-7  # Keras K.epsilon(), the floor of the cos denominator

# Keras 1 Merge arguments that only make sense with a Python callable `mode`, or that wire a Sequential graph.
REJECTED = {
    "output_shape": "`output_shape` only applies to a callable mode; a custom merge is a Lambda layer on a list of "
                    "inputs (give the Lambda its output_shape)",
    "output_mask": "`output_mask` only applies to a callable mode; a custom merge is a Lambda layer on a list of "
                   "inputs",
    "arguments": "`arguments` only applies to a callable mode; a custom merge is a Lambda layer on a list of inputs",
    "layers": "list the merged layers in `inputs:` (by name) instead of Keras 1's `layers`",
    "node_indices": "pick an output of a multi-output layer in `inputs:` with `name:k` instead of `node_indices`",
    "tensor_indices": "pick an output of a multi-output layer in `inputs:` with `name:k` instead of `tensor_indices`",
}


def _mode(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}; a custom (callable) merge is a "
                         "Lambda layer on a list of inputs")
    name = value.lower()
    name = MODE_SYNONYMS.get(name, name)
    if name not in MODES:
        near = did_you_mean(value, list(MODES) + list(MODE_SYNONYMS))
        near = MODE_SYNONYMS.get(near, near) if near else None
        raise ValueError(f"unknown merge mode {value!r}" + (f"; did you mean {near!r}?" if near else "")
                         + f" (known: {', '.join(MODES)}; a custom merge is a Lambda layer on a list of inputs)")
    return name


MergeMode = Annotated[Literal[MODES], BeforeValidator(_mode)]


def _same(a, b) -> bool:
    return a is None or b is None or a == b



@register
class Merge(Layer):
    """Joins two or more inputs (Keras 1 semantics; the Keras 2/3 merge layers are aliases with a fixed mode:
    Add=sum, Subtract=subtract, Multiply=mul, Average=ave, Maximum=max, Minimum=min, Concatenate=concat
    (`axis` = concat_axis), Dot=dot (`axes` = dot_axes, `normalize: true` = cos)). sum/mul/ave/max/min/subtract
    need identical shapes (no broadcasting, stricter than Keras 3); subtract, dot and cos take exactly two inputs.
    concat joins along concat_axis (the batch axis counts: 1 is the first non-batch axis, -1 the last). dot
    contracts axis a1 of the first input with a2 of the second (batch-wise); the result keeps the remaining axes
    of the first input, then of the second, and is (B, 1) when none remain. cos divides each dot product by
    max(|x| |y|, 1e-7), the norms taken along the contracted axes. Masks: AND of the inputs' masks for the
    elementwise modes; concat concatenates them (a missing mask = all true) and ANDs over the last axis (Keras 1;
    Keras 3 Concatenate takes the OR there); dot/cos drop the mask. No weights."""

    type = "Merge"
    family = "merge"
    multi_input = True
    aliases = {"Add": {"mode": "sum"}, "Subtract": {"mode": "subtract"}, "Multiply": {"mode": "mul"},
               "Average": {"mode": "ave"}, "Maximum": {"mode": "max"}, "Minimum": {"mode": "min"},
               "Concatenate": {"mode": "concat"}, "Dot": {"mode": "dot"}}

    class Config(LayerConfig):
        mode: MergeMode = Field("sum", description="sum, mul, ave, max, min, subtract, concat, dot or cos "
                                                   "(a custom function is a Lambda layer instead)")
        concat_axis: int = Field(-1, description="concat: the axis to join along, counting the batch axis (1 = first "
                                                 "non-batch axis; negative from the end); Keras 3: axis")
        dot_axes: int | tuple[int, int] = Field(
            -1, description="dot/cos: the axes contracted, counting the batch axis; an int a means (a, a), a "
                            "negative one is resolved per input from its last axis; or a pair [a1, a2]; Keras 3: axes")
        keras1_renames = {"axis": "concat_axis", "axes": "dot_axes"}  # Keras 2/3 Concatenate / Dot names

        @field_validator("concat_axis")
        @classmethod
        def _not_batch(cls, v):
            if v == 0:
                raise ValueError("concat_axis 0 is the batch axis; use 1 for the first non-batch axis or -1 for the "
                                 "last")
            return v

        @field_validator("dot_axes")
        @classmethod
        def _dot_not_batch(cls, v):
            if (v == 0) if isinstance(v, int) else (0 in v):
                raise ValueError(f"dot_axes {v!r} names the batch axis (0); axes count the batch axis, so the first "
                                 "feature axis is 1")
            return v

        @classmethod
        def upgrade(cls, data):
            for key, why in REJECTED.items():
                if key in data:
                    raise ValueError(f"Merge does not take `{key}`: {why}")
            if "normalize" in data:  # Keras 2/3 Dot(normalize=True) is Keras 1 mode 'cos'
                normalize = data.pop("normalize")
                if not isinstance(normalize, bool):
                    raise ValueError(f"normalize must be true or false, not {normalize!r}")
                mode = data.get("mode", "sum")
                mode = mode.lower() if isinstance(mode, str) else mode
                if normalize:
                    if mode not in ("dot", "cos"):
                        raise ValueError(f"normalize: true applies to Dot (mode dot) only, not mode {mode!r}")
                    data["mode"] = "cos"
            return data

    examples = [
        # reference figures (§11.5): two (32,) branches
        Example({"type": "Merge", "mode": "concat"}, [(32,), (32,)], output_shape=(64,), params=0,
                note="reference figure"),
        Example({"type": "Merge", "mode": "sum"}, [(32,), (32,)], output_shape=(32,), params=0),
        Example({"type": "Merge", "mode": "mul"}, [(32,), (32,)], output_shape=(32,), params=0),
        Example({"type": "Merge", "mode": "ave"}, [(32,), (32,)], output_shape=(32,), params=0),
        Example({"type": "Merge", "mode": "max"}, [(32,), (32,)], output_shape=(32,), params=0),
        Example({"type": "Merge", "mode": "dot", "dot_axes": 1}, [(32,), (32,)], output_shape=(1,), params=0),
        Example({"type": "Merge", "mode": "cos"}, [(32,), (32,)], output_shape=(1,), params=0),
        # aliases, 3D inputs, masks, options
        Example({"type": "Add"}, [(4, 3), (4, 3), (4, 3)], output_shape=(4, 3), params=0, mask=True),
        Example({"type": "Subtract"}, [(4, 3), (4, 3)], output_shape=(4, 3), params=0, mask=True),
        Example({"type": "Multiply"}, [(3, 2), (3, 2), (3, 2)], output_shape=(3, 2), params=0, mask=True),
        Example({"type": "Average"}, [(5,), (5,), (5,)], output_shape=(5,), params=0),
        Example({"type": "Maximum"}, [(4, 3), (4, 3)], output_shape=(4, 3), params=0, mask=True),
        Example({"type": "Minimum"}, [(2, 3), (2, 3), (2, 3)], output_shape=(2, 3), params=0),
        Example({"type": "Concatenate"}, [(4, 3), (4, 2)], output_shape=(4, 5), params=0, mask=True),
        Example({"type": "Concatenate", "axis": 1}, [(2, 3), (4, 3)], output_shape=(6, 3), params=0),
        Example({"type": "Merge", "mode": "concat", "concat_axis": -2}, [(2, 2, 3), (2, 1, 3)],
                output_shape=(2, 3, 3), params=0),
        Example({"type": "Dot", "axes": [2, 2]}, [(3, 4), (5, 4)], output_shape=(3, 5), params=0, mask=True),
        Example({"type": "Dot", "axes": [1, 2]}, [(3, 4), (2, 3)], output_shape=(4, 2), params=0),
        Example({"type": "Dot", "axes": -1, "normalize": True}, [(4,), (4,)], output_shape=(1,), params=0),
        Example({"type": "Merge", "mode": "cos", "dot_axes": [2, 1]}, [(3, 4), (4, 2)], output_shape=(3, 2),
                params=0, mask=True),
        Example({"type": "Merge", "mode": "dot", "dot_axes": [1, 1]}, [(3,), (3, 2)], output_shape=(2,), params=0),
    ]

    # ------------------------------------------------------------------ shapes
    def _shapes(self, input_shape) -> list[tuple]:
        if not isinstance(input_shape, (list, tuple)) or not input_shape \
                or not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise self.shape_error(input_shape if isinstance(input_shape, (list, tuple)) else (input_shape,),
                                   "a merge takes a list of inputs", hint="list two or more layers in `inputs:`")
        shapes = [tuple(s) for s in input_shape]
        mode = self.config.mode
        if len(shapes) < 2:
            raise self.shape_error(shapes, f"mode {mode} needs at least 2 inputs, got {len(shapes)}",
                                   hint="list two or more layers in `inputs:`")
        if mode in ("subtract", "dot", "cos") and len(shapes) != 2:
            raise self.shape_error(shapes, f"mode {mode} takes exactly 2 inputs, got {len(shapes)}",
                                   hint="merge the others first, or use sum / concat")
        return shapes

    def _concat_axis(self, shapes) -> int:
        """The concat axis as an index into the non-batch shape."""
        rank = len(shapes[0])
        axis = self.config.concat_axis
        full = axis if axis >= 0 else axis + rank + 1
        if not 1 <= full <= rank:
            raise self.shape_error(shapes, f"concat_axis {axis} does not exist for inputs with {rank + 1} axes "
                                           "(batch included)",
                                   hint=f"use 1..{rank} or -1..-{rank}; the batch axis (0) cannot be joined")
        return full - 1

    def _dot_axes(self, shapes) -> tuple[int, int]:
        """The contracted axes as indices into each non-batch shape."""
        axes = self.config.dot_axes
        pair = (axes, axes) if isinstance(axes, int) else tuple(axes)
        out = []
        for a, shape in zip(pair, shapes, strict=True):
            ndim = len(shape) + 1
            full = a % ndim if a < 0 else a
            if not 1 <= full < ndim:
                raise self.shape_error(shapes, f"dot_axes {axes!r}: axis {a} does not exist for an input with {ndim} "
                                               "axes (batch included)",
                                       hint=f"axes count the batch axis: use 1..{ndim - 1} or -1")
            out.append(full - 1)
        return out[0], out[1]

    def output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        mode = self.config.mode
        ranks = {len(s) for s in shapes}
        if mode in ELEMENTWISE:
            if len(ranks) > 1 or not all(_same(a, b) for s in shapes[1:] for a, b in zip(shapes[0], s, strict=True)):
                raise self.shape_error(
                    shapes, f"mode {mode} needs identical input shapes (no broadcasting, unlike Keras 3)",
                    hint="make the shapes equal (e.g. with a Dense or Reshape on one branch), or use concat")
            return tuple(next((d for d in dims if d is not None), None) for dims in zip(*shapes, strict=True))
        if mode == "concat":
            if len(ranks) > 1:
                raise self.shape_error(shapes, "concat needs inputs of the same rank",
                                       hint="Reshape or Flatten the inputs to a common rank")
            ax = self._concat_axis(shapes)
            out = []
            for i, dims in enumerate(zip(*shapes, strict=True)):
                if i == ax:
                    out.append(None if any(d is None for d in dims) else sum(dims))
                    continue
                known = {d for d in dims if d is not None}
                if len(known) > 1:
                    raise self.shape_error(
                        shapes, f"concat along axis {self.config.concat_axis} needs equal sizes on every other axis; "
                                f"axis {i + 1} differs",
                        hint="choose the concat_axis on which the shapes differ, or make the other sizes equal")
                out.append(known.pop() if known else None)
            return tuple(out)
        # dot / cos
        a1, a2 = self._dot_axes(shapes)
        s1, s2 = shapes
        if not _same(s1[a1], s2[a2]):
            raise self.shape_error(
                shapes, f"{mode} contracts axis {a1 + 1} of the first input (size {s1[a1]}) with axis {a2 + 1} of the "
                        f"second (size {s2[a2]}); the sizes must be equal",
                hint="set dot_axes to a pair of axes of equal size, counting the batch axis as 0")
        out = s1[:a1] + s1[a1 + 1:] + s2[:a2] + s2[a2 + 1:]
        return out if out else (1,)

    def flops(self, input_shape, output_shape):
        shapes = [tuple(s) for s in input_shape]
        mode = self.config.mode
        n = len(shapes)
        if mode in ("sum", "mul", "max", "min", "subtract"):
            return (n - 1) * elements(shapes[0])
        if mode == "ave":
            return n * elements(shapes[0])
        if mode == "concat":
            return 0
        a1, a2 = self._dot_axes(shapes)
        k = shapes[0][a1] or shapes[1][a2] or 1
        products = elements(output_shape) * k
        if mode == "cos":
            products += elements(shapes[0]) + elements(shapes[1]) + elements(output_shape)
        return products

    # ------------------------------------------------------------------ maths
    def _as_matrices(self, x, y):
        """(B, P, K) and (B, K, Q) views of the two inputs for a batched matmul."""
        a1, a2 = self._dot_axes([x.shape[1:], y.shape[1:]])
        if x.shape[a1 + 1] != y.shape[a2 + 1]:
            raise self.shape_error([tuple(x.shape[1:]), tuple(y.shape[1:])],
                                   f"contracted sizes differ: {x.shape[a1 + 1]} vs {y.shape[a2 + 1]}")
        xm = np.moveaxis(x, a1 + 1, -1)
        ym = np.moveaxis(y, a2 + 1, 1)
        xr, yr = xm.shape[1:-1], ym.shape[2:]
        b, k = x.shape[0], x.shape[a1 + 1]
        xm = xm.reshape(b, math.prod(xr), k)
        ym = ym.reshape(b, k, math.prod(yr))
        out_shape = (b,) + tuple(xr) + tuple(yr)
        if len(out_shape) == 1:
            out_shape = (b, 1)
        return xm, ym, (a1, a2, xr, yr, out_shape)

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        mode = self.config.mode
        xs = list(x)
        if mode == "sum":
            y = xs[0] + xs[1]
            for v in xs[2:]:
                y += v
            return y, len(xs)
        if mode == "subtract":
            return xs[0] - xs[1], None
        if mode == "ave":
            y = xs[0] + xs[1]
            for v in xs[2:]:
                y += v
            y *= 1.0 / len(xs)
            return y, len(xs)
        if mode == "mul":
            y = xs[0] * xs[1]
            for v in xs[2:]:
                y *= v
            return y, xs
        if mode in ("max", "min"):
            stacked = np.stack(xs)
            idx = stacked.argmax(axis=0) if mode == "max" else stacked.argmin(axis=0)
            y = np.take_along_axis(stacked, idx[None], axis=0)[0]
            return y, (idx, len(xs))
        if mode == "concat":
            ax = self._concat_axis([v.shape[1:] for v in xs]) + 1
            return np.concatenate(xs, axis=ax), (ax, [v.shape[ax] for v in xs])
        xm, ym, info = self._as_matrices(xs[0], xs[1])
        d = xm @ ym
        if mode == "dot":
            return d.reshape(info[-1]), (xm, ym, info)
        eps = xm.dtype.type(EPSILON)
        nx = np.sqrt((xm * xm).sum(axis=-1))  # (B, P)
        ny = np.sqrt((ym * ym).sum(axis=1))  # (B, Q)
        norm = nx[:, :, None] * ny[:, None, :]
        active = norm > eps
        norm = np.where(active, norm, eps)
        c = d / norm
        return c.reshape(info[-1]), (xm, ym, info, nx, ny, norm, active, c)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        mode = self.config.mode
        if mode == "sum":
            return [dy] + [dy.copy() for _ in range(cache - 1)], {}
        if mode == "subtract":
            return [dy, -dy], {}
        if mode == "ave":
            g = dy * (1.0 / cache)
            return [g] + [g.copy() for _ in range(cache - 1)], {}
        if mode == "mul":
            xs = cache
            n = len(xs)
            # prefix/suffix products: no division, exact with zeros
            prefix = [None] * n
            acc = None
            for i in range(n):
                prefix[i] = acc
                acc = xs[i] if acc is None else acc * xs[i]
            dxs = [None] * n
            acc = None
            for i in range(n - 1, -1, -1):
                others = prefix[i] if acc is None else (acc if prefix[i] is None else prefix[i] * acc)
                dxs[i] = dy * others
                acc = xs[i] if acc is None else acc * xs[i]
            return dxs, {}
        if mode in ("max", "min"):
            idx, n = cache
            return [dy * (idx == i) for i in range(n)], {}
        if mode == "concat":
            ax, sizes = cache
            return np.split(dy, np.cumsum(sizes)[:-1], axis=ax), {}
        if mode == "dot":
            xm, ym, info = cache
            g = dy.reshape(xm.shape[0], xm.shape[1], ym.shape[2])
            dxm = g @ ym.transpose(0, 2, 1)
            dym = xm.transpose(0, 2, 1) @ g
        else:  # cos
            xm, ym, info, nx, ny, norm, active, c = cache
            g = dy.reshape(c.shape)
            gn = g / norm
            r = np.where(active, g * c, 0)
            nx2 = np.where(nx > 0, nx * nx, 1)
            ny2 = np.where(ny > 0, ny * ny, 1)
            dxm = gn @ ym.transpose(0, 2, 1) - xm * (r.sum(axis=2) / nx2)[:, :, None]
            dym = xm.transpose(0, 2, 1) @ gn - ym * (r.sum(axis=1) / ny2)[:, None, :]
        a1, a2, xr, yr, _ = info
        b, k = xm.shape[0], xm.shape[2]
        dx = np.moveaxis(dxm.reshape((b,) + tuple(xr) + (k,)), -1, a1 + 1)
        dyy = np.moveaxis(dym.reshape((b, k) + tuple(yr)), 1, a2 + 1)
        return [dx, dyy], {}

    def compute_mask(self, x, mask):
        mode = self.config.mode
        if mask is None or mode in ("dot", "cos"):
            return None
        masks = list(mask)
        if all(m is None for m in masks):
            return None
        if mode in ELEMENTWISE:
            out = None
            for m in masks:
                if m is not None:
                    out = m.copy() if out is None else out & m
            return out
        # concat (Keras 3): expand every mask to its input's shape (missing = all true), join,
        # then ANY over the trailing axes
        xs = list(x)
        mask_ndim = max(m.ndim for m in masks if m is not None)
        full = []
        for v, m in zip(xs, masks, strict=True):
            if m is None:
                full.append(np.ones(v.shape, dtype=bool))
            else:
                full.append(np.broadcast_to(m.reshape(m.shape + (1,) * (v.ndim - m.ndim)), v.shape))
        ax = self._concat_axis([v.shape[1:] for v in xs]) + 1
        joined = np.concatenate(full, axis=ax)
        return joined.any(axis=tuple(range(mask_ndim, joined.ndim))) if joined.ndim > mask_ndim else joined
