"""Synchronised BatchNormalization (``--sync-batchnorm``): batch statistics over the global batch.

By default each rank normalises with the statistics of its own part of the batch and keeps its own moving
statistics (Horovod's default; rank 0's are saved). Synchronised, the mean and variance come from the whole
global batch (two small Allreduces per layer in the forward pass, one in the backward pass), as in Horovod's
SyncBatchNormalization, and a run on N ranks then trains exactly as one process with the same global batch.
"""

from __future__ import annotations

import numpy as np

from ..kernels import normalization as K
from ..layers.normalization import BatchNormalization


class SyncBatchNormalization(BatchNormalization):
    """BatchNormalization whose training statistics (and their gradient) span every rank's part of the batch.

    Not registered as a layer type: ``synchronise_batchnorm`` turns the BatchNormalization layers of a compiled
    model into this class (same config, weights and state), as the collaborator that holds the communicator."""

    parallel = None  # the DataParallel hooks: communicator, this rank's and the global batch size

    def _allreduce(self, *arrays: np.ndarray) -> list[np.ndarray]:
        MPI = self.parallel._mpi
        packed = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])
        self.parallel.comm.Allreduce(MPI.IN_PLACE, packed, op=MPI.SUM)
        out, off = [], 0
        for a in arrays:
            out.append(packed[off:off + np.size(a)].reshape(np.shape(a)))
            off += np.size(a)
        return out

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        c = self.config
        if not (bool(training) and c.trainable):
            return super().forward(params, x, training=training, rng=rng, mask=mask, workspace=workspace)
        perm, dims = self._layout(x.shape)
        x3 = self._to3(x, perm, dims)
        gamma, beta = self._affine(params, dims[1], x.dtype)
        w3 = None
        if mask is not None and mask.ndim == x.ndim - 1 and mask.shape == x.shape[:-1]:
            w = np.broadcast_to(mask.reshape(mask.shape + (1,)), x.shape).astype(x.dtype)
            w3 = self._to3(w, perm, dims)
        n_c = dims[1]
        # two passes as the kernel does: the global mean first, then the deviations from it
        total, _, count = K._sums(x3, w3, np.zeros(n_c), False)
        total, count = self._allreduce(total, count)
        safe = np.maximum(count, 1e-300)
        mean = np.where(count > 0, total / safe, 0.0)
        dev, dev_sq, _ = K._sums(x3, w3, mean, True)
        dev, dev_sq = self._allreduce(dev, dev_sq)
        d = dev / safe
        var = np.where(count > 0, np.maximum(dev_sq / safe - d * d, 0.0), 0.0)
        inv = 1.0 / np.sqrt(var + float(c.epsilon))
        scale = gamma * inv
        out3 = np.empty_like(x3)
        K.scale_shift(x3, scale.astype(x.dtype), (beta - mean * scale).astype(x.dtype), out3)
        mm, mv = self.state["moving_mean"], self.state["moving_variance"]
        m = c.momentum
        self.state["moving_mean"] = (mm * m + mean.reshape(mm.shape) * (1.0 - m)).astype(mm.dtype)
        self.state["moving_variance"] = (mv * m + var.reshape(mv.shape) * (1.0 - m)).astype(mv.dtype)
        y = self._from3(out3, x.shape, perm)
        share = self.parallel.local_batch / max(self.parallel.global_batch, 1)
        return y, (x3, w3, mean, inv, gamma, count, True, perm, x.shape, share)

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        if len(cache) != 10:  # inference-mode forward
            return super().backward(params, dy, cache, need_dx=need_dx, out=out, workspace=workspace)
        x3, w3, mean, inv, gamma, count, _, perm, shape, share = cache
        dy3 = self._to3(dy, perm, x3.shape).astype(x3.dtype, copy=False)
        # This rank's dy is the gradient of its own mean loss, i.e. (global / local batch) times the gradient of
        # the global mean loss: the sums are taken in global units (times share), and dx returned in local ones.
        n_outer, n_c, n_in = x3.shape
        chunks = K.n_chunks(n_outer)
        part_dy, part_dyx = np.zeros((chunks, n_c)), np.zeros((chunks, n_c))
        if n_in == 1:
            K._rows_grad_sums(K._rows(dy3), K._rows(x3), mean, part_dy, part_dyx)
        else:
            K._blocks_grad_sums(dy3, x3, mean, part_dy, part_dyx)
        d_beta, d_gamma = part_dy.sum(axis=0), part_dyx.sum(axis=0) * inv
        g_beta, g_gamma = self._allreduce(d_beta * share, d_gamma * share)
        safe = np.maximum(count, 1e-300)
        k0 = np.where(count > 0, g_beta / safe, 0.0) / share
        k1 = np.where(count > 0, g_gamma * inv / safe, 0.0) / share
        dt = x3.dtype
        gr, m = (np.asarray(gamma, dtype=np.float64) * inv).astype(dt), mean.astype(dt)
        dx3 = np.empty_like(x3)
        use_w = w3 is not None
        if n_in == 1:
            wv = K._rows(w3) if use_w else K._dummy(x3, True)
            K._rows_grad_input(K._rows(dy3), K._rows(x3), m, gr, k0.astype(dt), k1.astype(dt), wv, use_w,
                               K._rows(dx3))
        else:
            wv = w3 if use_w else K._dummy(x3, False)
            K._blocks_grad_input(dy3, x3, m, gr, k0.astype(dt), k1.astype(dt), wv, use_w, dx3)
        grads = {}
        if self.config.scale:
            grads["gamma"] = d_gamma.reshape(params["gamma"].shape).astype(params["gamma"].dtype)
        if self.config.center:
            grads["beta"] = d_beta.reshape(params["beta"].shape).astype(params["beta"].dtype)
        return self._from3(dx3, shape, perm), grads


def synchronise_batchnorm(model, parallel) -> int:
    """Make every BatchNormalization layer of ``model`` (a CompiledModel) synchronised; returns how many."""
    changed = 0
    for node in model.nodes:
        layer = node.layer
        if type(layer) is BatchNormalization:
            layer.__class__ = SyncBatchNormalization  # same object: config, state and build results kept
            layer.parallel = parallel
            changed += 1
    return changed
