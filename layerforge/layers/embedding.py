"""Embedding: integer indices -> dense vectors (Keras 3 semantics, Keras 1 names and `dropout` accepted)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ._numpy import np
from .base import Example, Layer, LayerConfig, ParamSpec, fitting_buffer, register
from .fields import ConstraintSpec, InitializerSpec, RegularizerSpec


@register
class Embedding(Layer):
    """Turns integer indices in [0, input_dim) into vectors: ``embeddings[x]``; output shape = input
    shape + (output_dim,). With mask_zero, index 0 is padding and the output carries the mask
    ``x != 0`` (so input_dim must be vocabulary size + 1). Out-of-range indices are a data error.
    Keras 1 `dropout` (dropped in Keras 2) drops whole vocabulary rows in training."""

    type = "Embedding"
    family = "embedding"
    stochastic = True

    class Config(LayerConfig):
        input_dim: int = Field(gt=0, description="vocabulary size: indices must be in [0, input_dim)")
        output_dim: int = Field(gt=0, description="size of each embedding vector")
        embeddings_initializer: InitializerSpec = Field("random_uniform", description="initializer of the table "
                                                                                      "(Keras 1: init, 'uniform')")
        embeddings_regularizer: RegularizerSpec = Field(None, description="penalty on the table "
                                                                          "(Keras 1: W_regularizer)")
        activity_regularizer: RegularizerSpec = Field(None, description="penalty on the output")
        embeddings_constraint: ConstraintSpec = Field(None, description="constraint on the table "
                                                                        "(Keras 1: W_constraint)")
        mask_zero: bool = Field(False, description="index 0 is padding: the output carries the mask x != 0")
        input_length: int | None = Field(None, gt=0, description="length of the input sequences (Keras 1/2; "
                                                                 "on the first layer it sets the input shape)")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Keras 1 only: fraction of vocabulary rows dropped "
                                                                "(whole words) in training")
        seed: int | None = Field(None, description="per-layer seed for the row dropout; the model seed is used "
                                                   "when unset")

        keras1_renames: ClassVar[dict[str, str]] = {"init": "embeddings_initializer",
                                                    "W_regularizer": "embeddings_regularizer",
                                                    "W_constraint": "embeddings_constraint"}

        @classmethod
        def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
            # Keras 1 Embedding(input_length=n) set the model's input shape to (n,)
            if data.get("input_length") is not None and data.get("input_shape") is None \
                    and data.get("batch_input_shape") is None:
                data = {**data, "input_shape": [data["input_length"]]}
            return data

    examples = [
        Example({"type": "Embedding", "input_dim": 1000, "output_dim": 64, "input_length": 10}, (10,),
                output_shape=(10, 64), params=64000, int_input=1000, gradcheck=False, note="reference figure"),
        Example({"type": "Embedding", "input_dim": 101, "output_dim": 16, "mask_zero": True}, (None,),
                output_shape=(None, 16), params=1616, int_input=101, gradcheck=False, note="reference figure M7"),
        Example({"type": "Embedding", "input_dim": 7, "output_dim": 3}, (5,), output_shape=(5, 3), params=21,
                int_input=7),
        Example({"type": "Embedding", "input_dim": 6, "output_dim": 2, "input_length": 4, "dropout": 0.4}, (4,),
                output_shape=(4, 2), params=12, int_input=6),
        Example({"type": "Embedding", "input_dim": 5, "output_dim": 2}, (2, 3), output_shape=(2, 3, 2), params=10,
                int_input=5),
    ]

    def output_shape(self, input_shape):
        if isinstance(input_shape, list) or len(input_shape) < 1:
            raise self.shape_error(input_shape, "Embedding takes integer indices of shape (length,) or more axes",
                                   hint="feed (batch, sequence length) integer indices")
        n = self.config.input_length
        shape = tuple(input_shape)
        if n is not None:
            if shape[0] is not None and shape[0] != n:
                raise self.shape_error(input_shape, f"input_length is {n} but the sequences have length {shape[0]}",
                                       hint="make input_length match the data or remove it")
            shape = (n,) + shape[1:]
        return shape + (self.config.output_dim,)

    def param_specs(self, input_shape):
        c = self.config
        return [ParamSpec("embeddings", (c.input_dim, c.output_dim), c.embeddings_initializer,
                          regularizer=c.embeddings_regularizer, constraint=c.embeddings_constraint)]

    def flops(self, input_shape, output_shape):
        return 0

    def _indices(self, x) -> np.ndarray:
        from ..errors import DataError

        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.integer):
            if np.issubdtype(x.dtype, np.floating) and x.size and not np.all(np.isfinite(x)):
                raise DataError(f"Embedding layer '{self.name}' got non-finite indices")
            xi = x.astype(np.int64)
            if xi.size and np.any(xi != x):
                bad = np.argwhere(xi != x)[0]
                raise DataError(f"Embedding layer '{self.name}' needs integer indices; sample {bad[0]} has "
                                f"{x[tuple(bad)]!r}")
            x = xi
        n = self.config.input_dim
        if x.size:
            bad = (x < 0) | (x >= n)
            if bad.any():
                where = np.argwhere(bad)[0]
                value = int(x[tuple(where)])
                raise DataError(
                    f"Embedding layer '{self.name}': sample {int(where[0])} contains index {value}, outside the "
                    f"valid range 0..{n - 1} (input_dim={n}); "
                    + ("negative indices are not allowed" if value < 0 else
                       f"set input_dim to at least {value + 1} (the vocabulary size, +1 if 0 is padding)"))
        return x

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        idx = self._indices(x)
        table = params["embeddings"]
        y = np.take(table, idx, axis=0)
        scale = None
        rate = self.config.dropout
        if training and rate > 0:
            keep = rng.random(self.config.input_dim) >= rate
            scale = (keep / (1.0 - rate)).astype(table.dtype)
            y *= scale[idx][..., None]
        return y, (idx, scale, table.shape, table.dtype)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ..kernels import embedding as K

        idx, scale, shape, dtype = cache
        flat = np.ascontiguousarray(idx.reshape(-1))
        rows = np.ascontiguousarray(np.asarray(dy, dtype=dtype).reshape(flat.size, shape[1]))
        # the engine's gradient buffer when it provides one (``out``): no table-sized allocation per step
        grad = fitting_buffer(out, "embeddings", shape, dtype)
        if grad is not None:
            grad.fill(0)
        else:
            grad = np.zeros(shape, dtype)
        if scale is None:
            K.scatter_add_rows(flat, rows, grad)
        else:
            K.scatter_add_rows_scaled(flat, rows, scale, grad)
        return None, {"embeddings": grad}

    def compute_mask(self, x, mask):
        if not self.config.mask_zero:
            return None
        return np.asarray(x) != 0
