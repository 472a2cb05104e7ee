"""MPI through mpi4py: the communicator and the hooks the fit loop calls (``Trainer.parallel``)."""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import ConfigError, Problem

INSTALL_HINT = ('pip install "layerforge[mpi]" (mpi4py with the MPICH wheel), then run under '
                "`mpirun -n 2 layerforge train CONFIG --distributed`")


def world():
    """COMM_WORLD, or a clear error when mpi4py (or the MPI library under it) is missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ConfigError(problems=[Problem(message=f"--distributed needs mpi4py, which cannot be imported ({exc})",
                                            hint=INSTALL_HINT)]) from None
    return MPI.COMM_WORLD


def ranks_on_this_host(comm) -> int:
    """How many ranks share this machine (they share its cores)."""
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return local.Get_size()
    finally:
        local.Free()


class DataParallel:
    """The fit loop's data-parallel hooks (see ``Trainer.parallel``).

    A global batch of B indices is split into ``size`` contiguous parts (sizes differ by at most one); each rank
    computes the mean gradient over its part, scales it by part/B and one in-place Allreduce(SUM) of the packed
    buffer gives the mean over the global batch: the gradient one process computes with batch B, up to float32
    rounding. Every rank draws the same shuffling order (the trainer's generator, used for nothing else here);
    dropout and noise draw from a stream per rank and epoch, so a run repeats exactly and resumes exactly.
    """

    def __init__(self, comm, trainer, *, seed: int):
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.trainer = trainer
        self.seed = int(seed)
        self.global_batch = 0
        self.local_batch = 0
        self.allreduce_seconds = 0.0  # time inside the gradient Allreduce (for the benchmark figures)
        self.steps = 0
        self._seeded_epoch = None
        if trainer.model.graph.batch_size:
            raise ConfigError(problems=[Problem(
                message="--distributed cannot train a model with a fixed batch size (stateful layers)",
                path="batch_size", hint="remove the top-level batch_size, or train in one process")])

    # ------------------------------------------------------------------ hooks
    def shard(self, idx: np.ndarray):
        """This rank's contiguous part of the global batch ``idx``; None (every rank alike) when the batch is
        smaller than the number of ranks, which would leave a rank without samples."""
        if self._seeded_epoch != self.trainer.epoch:
            self._seed_layers(self.trainer.epoch)
        n = len(idx)
        if n < self.size:
            return None
        self.global_batch = n
        lo, hi = (n * self.rank) // self.size, (n * (self.rank + 1)) // self.size
        self.local_batch = hi - lo
        return idx[lo:hi]

    def reduce_gradients(self, flat: np.ndarray, batch: int) -> bool:
        """Average the packed gradients over the global batch, in place; returns whether they are finite (the
        same answer on every rank, so a rank never stops alone while the others wait in the next Allreduce)."""
        if self.size > 1:
            flat *= flat.dtype.type(batch / self.global_batch)
            started = time.perf_counter()
            self.comm.Allreduce(self._mpi.IN_PLACE, flat, op=self._mpi.SUM)
            self.allreduce_seconds += time.perf_counter() - started
        self.steps += 1
        return math.isfinite(float(np.add.reduce(flat, dtype=np.float64))) if flat.size else True

    def reduce_logs(self, logs: dict, seen: int) -> dict:
        """The epoch's logs averaged over the ranks (Horovod's MetricAverageCallback): training values weighted
        by each rank's sample count, validation values (every rank evaluates the whole validation set, with its
        own BatchNormalization statistics) equally. Every rank then takes the same callback decisions."""
        if self.size == 1:
            return logs
        keys = [k for k, v in logs.items() if isinstance(v, (int, float))]
        weights = np.array([1.0 if k.startswith("val_") else float(seen) for k in keys] + [float(seen)])
        values = np.array([float(logs[k]) for k in keys] + [1.0]) * weights
        self.comm.Allreduce(self._mpi.IN_PLACE, values, op=self._mpi.SUM)
        total_seen = values[-1]
        out = dict(logs)
        for k, v in zip(keys, values[:-1]):
            out[k] = float(v / (self.size if k.startswith("val_") else max(total_seen, 1.0)))
        return out

    # ------------------------------------------------------------------ set-up
    def _seed_layers(self, epoch: int) -> None:
        """A generator per rank, epoch and layer for dropout and noise (a layer's own `seed:` replaces the
        model's), so ranks draw different masks and a resumed epoch draws the ones it drew first."""
        model = self.trainer.model
        for k, node in enumerate(model.nodes):
            own = getattr(node.layer.config, "seed", None)
            base = self.seed if own is None else int(own)
            model.layer_rngs[node.name] = np.random.default_rng([base % 2**63, self.rank, epoch, k])
        self._seeded_epoch = epoch

    def broadcast_weights(self) -> None:
        """Rank 0's weights (trainable and not) to every rank: identical starting points, whatever each did."""
        model = self.trainer.model
        if self.size == 1:
            return
        if model.flat_params is not None:
            self.comm.Bcast(model.flat_params, root=0)
        for name, spec, arr in model.weight_items():
            if model.packed is not None and spec.trainable and model.packed.holds(arr):
                continue
            buf = np.ascontiguousarray(arr)
            self.comm.Bcast(buf, root=0)
            model.set_weight(name, spec, buf)

    def check_identical(self) -> float:
        """Largest difference between this rank's trainable weights and rank 0's (0.0 when in step)."""
        model = self.trainer.model
        if self.size == 1 or model.flat_params is None:
            return 0.0
        ref = model.flat_params.copy()
        self.comm.Bcast(ref, root=0)
        diff = float(np.max(np.abs(ref - model.flat_params))) if ref.size else 0.0
        return float(self.comm.allreduce(diff, op=self._mpi.MAX))
