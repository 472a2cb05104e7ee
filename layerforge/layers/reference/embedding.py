"""Reference of Embedding: ``y = embeddings[x]`` (a row per index; Keras 1 ``dropout`` zeroes whole vocabulary
rows and scales the others by 1/(1-rate)). The fast path's backward is a Numba scatter-add of the output gradient
rows into the table gradient; here it is ``np.add.at``."""

from __future__ import annotations

import numpy as np


def embedding_forward(params, x, config, *, row_scale=None):
    """``row_scale``: the per-row dropout factor (keep / (1 - rate), shape (input_dim,)) when training with
    dropout, else None."""
    y = params["embeddings"][x]
    return y if row_scale is None else y * row_scale[x][..., None]


def embedding_backward(params, x, dy, config, *, row_scale=None):
    """Integer inputs have no gradient: dx is None."""
    if row_scale is not None:
        dy = dy * row_scale[x][..., None]
    grad = np.zeros_like(params["embeddings"])
    np.add.at(grad, x.reshape(-1), dy.reshape(-1, grad.shape[1]))  # repeated indices add up
    return None, {"embeddings": grad}
