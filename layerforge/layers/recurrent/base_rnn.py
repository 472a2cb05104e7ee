"""What the recurrent layers share: the config, activations allowed in the fused time loops, masks,
carried state (stateful layers), go_backwards and return_sequences, and the split of a batch into row blocks.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from ...activations import RECURRENT_CODES
from .._numpy import np
from ..base import Layer, LayerConfig, ParamSpec, fitting_buffer
from ..fields import ActivationName, ConstraintSpec, InitializerSpec, RegularizerSpec
from ..packed import tile

# activation name -> code understood by the recurrent kernels (derivatives are taken from the output): the
# registry's recurrent_code (layerforge/activations.py)
ACTIVATION_CODES = RECURRENT_CODES


_CONSUME_LESS = {"cpu": 0, "mem": 1, "gpu": 2}


def _check_activation(value: str, what: str) -> str:
    if value not in ACTIVATION_CODES:
        raise ValueError(f"{what} {value!r} is not available in recurrent layers "
                         f"(available: {', '.join(sorted(ACTIVATION_CODES))})")
    return value


class _InitWithForgetBias(dict):
    """LSTM bias initializer with ``unit_forget_bias``: the forget-gate block starts at one (Keras).

    A mapping equal to the plain bias initializer spec (so anything that reads the spec as data
    sees the user's ``bias_initializer``) that is also callable ``(shape, rng, dtype, fan) -> array``.
    """

    def __init__(self, spec, units: int):
        super().__init__({"type": spec} if isinstance(spec, str) else dict(spec))
        self.spec = spec
        self.units = units

    def __call__(self, shape, rng, dtype="float32", fan=None):
        from ..initializers import initialize

        u = self.units
        out = np.concatenate([initialize(self.spec, (u,), rng, dtype), np.ones(u, dtype=dtype),
                              initialize(self.spec, (2 * u,), rng, dtype)])
        return out.astype(dtype, copy=False)


class RNNConfig(LayerConfig):
    """Parameters shared by SimpleRNN, GRU and LSTM."""

    units: int = Field(gt=0, description="size of the output and of the state (Keras 1: output_dim)")
    activation: ActivationName = Field("tanh", description="activation of the candidate state and output")
    use_bias: bool = Field(True, description="add bias vectors (Keras 1: bias)")
    kernel_initializer: InitializerSpec = Field("glorot_uniform", description="initializer of the input kernel "
                                                                              "(Keras 1: init)")
    recurrent_initializer: InitializerSpec = Field("orthogonal", description="initializer of the recurrent kernel "
                                                                             "(Keras 1: inner_init)")
    bias_initializer: InitializerSpec = Field("zeros", description="bias initializer")
    kernel_regularizer: RegularizerSpec = Field(None, description="penalty on the kernel (Keras 1: W_regularizer)")
    recurrent_regularizer: RegularizerSpec = Field(None, description="penalty on the recurrent kernel "
                                                                     "(Keras 1: U_regularizer)")
    bias_regularizer: RegularizerSpec = Field(None, description="penalty on the bias (Keras 1: b_regularizer)")
    activity_regularizer: RegularizerSpec = Field(None, description="penalty on the output")
    kernel_constraint: ConstraintSpec = Field(None, description="constraint on the kernel (Keras 1: W_constraint)")
    recurrent_constraint: ConstraintSpec = Field(None, description="constraint on the recurrent kernel "
                                                                   "(Keras 1: U_constraint)")
    bias_constraint: ConstraintSpec = Field(None, description="constraint on the bias (Keras 1: b_constraint)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of the input features dropped in training; "
                                                            "one mask per sequence (Keras 1: dropout_W)")
    recurrent_dropout: float = Field(0.0, ge=0.0, lt=1.0,
                                     description="fraction of the recurrent state dropped before the recurrent "
                                                 "kernel in training; one mask per sequence (Keras 1: dropout_U)")
    seed: int | None = Field(None, description="per-layer seed for the dropout masks; the model seed is used "
                                               "when unset")
    return_sequences: bool = Field(False, description="output the whole sequence (B, T, units) instead of the "
                                                      "last output (B, units)")
    return_state: bool = Field(False, description="also output the final state(s): [output, h] (LSTM: "
                                                  "[output, h, c]); refer to them as name:1, name:2")
    go_backwards: bool = Field(False, description="process the sequence from the end; with return_sequences the "
                                                  "output is in processing order (reversed), as Keras")
    stateful: bool = Field(False, description="carry the final state of a batch into the next batch (needs a "
                                              "fixed batch size: top-level batch_size or batch_input_shape)")
    unroll: bool = Field(False, description="accepted for Keras compatibility; same maths")
    implementation: int = Field(2, ge=0, le=2, description="accepted for Keras compatibility (Keras 1: "
                                                           "consume_less cpu/mem/gpu = 0/1/2); same maths")

    accepts_input_dim: ClassVar[str | None] = "sequence"
    # `inner_activation` goes to a marker key so `upgrade` knows the user wrote the Keras 1 name:
    # Keras 1's `hard_sigmoid` is 0.2x+0.5, Keras 3's is x/6+0.5.
    keras1_renames: ClassVar[dict[str, str]] = {"inner_activation": "_keras1_inner_activation",
                                                "consume_less": "implementation"}

    @model_validator(mode="after")
    def _supported_activations(self):
        _check_activation(self.activation, "activation")
        if "recurrent_activation" in type(self).model_fields:
            _check_activation(self.recurrent_activation, "recurrent_activation")
        return self

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        if "_keras1_inner_activation" in data:
            value = data.pop("_keras1_inner_activation")
            if "recurrent_activation" in data:
                raise ValueError("'inner_activation' (Keras 1) and 'recurrent_activation' mean the same "
                                 "parameter; give only one")
            if "recurrent_activation" not in cls.model_fields:
                raise ValueError(f"{data.get('type')} has no inner_activation")
            if isinstance(value, str) and value.lower() == "hard_sigmoid":
                value = "hard_sigmoid_keras1"  # Keras 1 slope 0.2
            data["recurrent_activation"] = value
        impl = data.get("implementation")
        if isinstance(impl, str):
            if impl.lower() not in _CONSUME_LESS:
                raise ValueError(f"consume_less must be cpu, mem or gpu, not {impl!r}")
            data["implementation"] = _CONSUME_LESS[impl.lower()]
        return data


class _GatedConfig(RNNConfig):
    recurrent_activation: ActivationName = Field(
        "sigmoid", description="activation of the gates (Keras 3 default sigmoid; Keras 1 default was hard_sigmoid "
                               "0.2x+0.5, written `hard_sigmoid_keras1`; `hard_sigmoid` is Keras 3's x/6+0.5; "
                               "Keras 1 `inner_activation: hard_sigmoid` maps to hard_sigmoid_keras1)")


class _RNNBase(Layer):
    """Shared shape logic and glue for the three recurrent layers."""

    family = "recurrent"
    n_gates: ClassVar[int] = 1
    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(self, config, name=None, *, zero_output_for_mask: bool = False):
        super().__init__(config, name)
        # Keras 3 Bidirectional with return_sequences zeroes the output at masked steps: the wrapper says so when
        # it builds its inner layers; never changed afterwards.
        self.zero_output_for_mask = bool(zero_output_for_mask)

    @property
    def reentrant(self) -> bool:
        return not self.config.stateful  # carried state: batches follow each other in order

    # ------------------------------------------------------------------ shape side
    def num_outputs(self) -> int:
        return 1 + len(self.state_names) if self.config.return_state else 1

    def _check_input(self, input_shape):
        if isinstance(input_shape, list) or len(input_shape) != 2:
            raise self.shape_error(input_shape, "a recurrent layer takes (time steps, features)",
                                   hint="flatten extra axes with Reshape or TimeDistributed, or add a time axis")
        if input_shape[-1] is None:
            raise self.shape_error(input_shape, "the feature axis must have a known size")
        if self.config.stateful and not self.batch_size:
            raise self.shape_error(input_shape, "stateful=true needs a fixed batch size",
                                   hint="set `batch_size: N` at the top level or `batch_input_shape: [N, T, F]` on "
                                        "the first layer")

    def output_shape(self, input_shape):
        self._check_input(input_shape)
        u = self.config.units
        y = (input_shape[0], u) if self.config.return_sequences else (u,)
        if self.config.return_state:
            return [y] + [(u,)] * len(self.state_names)
        return y

    def _bias_spec(self, k: int):
        c = self.config
        return ParamSpec("bias", (k * c.units,), c.bias_initializer, regularizer=c.bias_regularizer,
                         constraint=c.bias_constraint)

    def param_specs(self, input_shape):
        c = self.config
        k, u, n_in = self.n_gates, c.units, input_shape[-1]
        specs = [ParamSpec("kernel", (n_in, k * u), c.kernel_initializer, regularizer=c.kernel_regularizer,
                           constraint=c.kernel_constraint),
                 ParamSpec("recurrent_kernel", (u, k * u), c.recurrent_initializer,
                           regularizer=c.recurrent_regularizer, constraint=c.recurrent_constraint)]
        if c.use_bias:
            specs.append(self._bias_spec(k))
        return specs

    def flops(self, input_shape, output_shape):
        steps = input_shape[0] or 1
        k, u = self.n_gates, self.config.units
        return steps * (input_shape[-1] * k * u + u * k * u)

    def compute_mask(self, x, mask):
        out = mask if self.config.return_sequences else None
        if self.config.return_state:
            return [out] + [None] * len(self.state_names)
        return out

    # ------------------------------------------------------------------ state
    def init_state(self, batch_size, dtype) -> None:
        self.state = {k: v for k, v in self.state.items() if k not in self.state_names}
        if self.config.stateful and batch_size:
            for s in self.state_names:
                self.state[s] = np.zeros((batch_size, self.config.units), dtype=dtype)

    def reset_states(self) -> None:
        """Zero the carried state of a stateful layer (Keras `reset_states()`)."""
        for s in self.state_names:
            if s in self.state:
                self.state[s] = np.zeros_like(self.state[s])

    def _initial_states(self, batch: int, dtype):
        if not self.config.stateful:
            return [np.zeros((batch, self.config.units), dtype) for _ in self.state_names]
        from ...errors import DataError

        if self.state_names[0] not in self.state:
            self.init_state(batch, dtype)
        states = [self.state[s] for s in self.state_names]
        if states[0].shape[0] != batch:
            raise DataError(f"{self.type} layer '{self.name}' is stateful with batch size {states[0].shape[0]} "
                            f"but got a batch of {batch} samples; every batch must have exactly "
                            f"{states[0].shape[0]} samples (make the number of samples a multiple of the batch size)")
        return [np.ascontiguousarray(s, dtype=dtype) for s in states]

    # ------------------------------------------------------------------ glue
    # A pass runs in blocks of samples, one per thread (``_blocks``): each block runs its whole pass (inputs laid
    # out time-major, input projection, the kernel's time loop, the weight-gradient GEMMs) in its own thread with
    # BLAS held to one thread (``kernels.blocks.run_blocks``); the blocks' weight gradients are summed. Random
    # draws (dropout masks) happen once for the whole batch before the split, so results do not depend on the
    # thread count (up to the rounding of the summed gradients).

    def forward(self, params, x, *, training=False, rng=None, mask=None, workspace=None):
        from ...kernels.schedule import n_threads

        run = self._begin(x, training, rng, mask)
        run["ws"] = workspace
        B, T, u, dt = run["B"], run["T"], self.config.units, run["dt"]
        blocks = self._blocks(B, T, run["F"])
        passes = blocks
        if not training and len(blocks) > 1 and n_threads(len(blocks)) <= 1:
            # An inference pass whose blocks would run one after another (one thread, or a predict batch on its own
            # thread) runs as one block: the per-step products on all rows at once are faster (measured here: the
            # LSTM benchmark's time loop 3.7 ms per batch of 64 against 2 x 2.0 ms in two blocks of 32). The
            # samples are independent, so the outputs are the same; a later backward reruns the forward in the
            # blocks the work gives (see backward), so gradients do not depend on this.
            passes = [(0, B)]
        run["rows"] = max(b1 - b0 for b0, b1 in passes)  # the row count the per-step products are tuned for
        self._forward_weights(params, run)
        y = np.empty((B, T, u) if self.config.return_sequences else (B, u), dt)
        finals = [np.empty((B, u), dt) for _ in self.state_names]
        cache = {"run": run, "blocks": passes}
        self._run_forward(cache, y, finals)
        if self.config.stateful:
            for s, v in zip(self.state_names, finals, strict=True):
                self.state[s] = v.copy()
        if not training:  # no backward expected: the work buffers go back to the workspace now (see _take)
            self._release(cache)
            cache["blocks"] = blocks
        return ([y] + finals if self.config.return_state else y), cache

    def backward(self, params, dy, cache, *, need_dx=True, out=None, workspace=None):
        from ...kernels import recurrent as K

        if cache["run"]["ws"] is None:
            cache["run"]["ws"] = workspace  # buffers taken from now on go back to the backward pass's workspace
        if cache.get("released"):  # its buffers were reused since (inference forward, or a second backward)
            cache["run"]["keep"] = True
            B, T, u, dt = cache["run"]["B"], cache["run"]["T"], self.config.units, cache["run"]["dt"]
            rows = max(b1 - b0 for b0, b1 in cache["blocks"])
            if rows != cache["run"]["rows"]:  # the inference pass ran as one block (see forward)
                cache["run"]["rows"] = rows
                self._forward_weights(params, cache["run"])
            self._run_forward(cache, np.empty((B, T, u) if self.config.return_sequences else (B, u), dt),
                              [np.empty((B, u), dt) for _ in self.state_names])
        run, blocks, caches = cache["run"], cache["blocks"], cache["caches"]
        dt = run["dt"]
        dys = [None if v is None else np.asarray(v) for v in (dy if isinstance(dy, list) else [dy])]
        weights = self._backward_weights(params, dt, run["rows"])
        dx = np.empty((run["B"], run["T"], run["F"]), dt) if need_dx else None
        targets = self._grad_targets(params, dt, out)

        def work(k):
            b0, b1 = blocks[k]
            g = targets if k == 0 else self._scratch_grads(params, dt)
            self._backward_block(run, weights, caches[k], k, b0, b1,
                                 [None if v is None else v[b0:b1] for v in dys], g, dx)
            return g

        parts = K.run_blocks(work, len(blocks))
        self._release(cache)
        for part in parts[1:]:
            for name, a in targets.items():
                a += part[name]
        return dx, targets

    def _run_forward(self, cache, y, finals) -> None:
        from ...kernels import recurrent as K

        run, blocks = cache["run"], cache["blocks"]

        def work(k):
            b0, b1 = blocks[k]
            return self._forward_block(run, k, b0, b1, y, finals)

        cache["caches"] = K.run_blocks(work, len(blocks))
        cache["released"] = False

    # Work buffers (a few MB per pass) are kept between passes in the caller's workspace, per layer, block and
    # buffer name: taken by forward/backward, given back when the backward pass is done (or at the end of an
    # inference forward). Fresh buffers of that size cost page faults on every pass (measured: ~3 ms of a 17 ms
    # LSTM training step) and serialise the threads. Up to two shapes are kept per buffer: training and inference
    # passes need different shapes of some buffers (all steps' gates against one step's), and alternating them
    # (validation, predict between epochs) must not reallocate; inputs of ever new lengths must not grow it either.
    _POOL_SHAPES = 2

    def _pool(self, run, k: int, name: str):
        from ...kernels.workspace import pool_of

        return pool_of(run["ws"], (id(self), k, name), self._POOL_SHAPES)

    def _take(self, run, k: int, name: str, shape, dt) -> np.ndarray:
        if run["ws"] is None:
            return np.empty(shape, dt)
        return self._pool(run, k, name).take(shape, dt)

    def _release(self, cache) -> None:
        run = cache["run"]
        if run["ws"] is not None:
            for k, c in enumerate(cache.get("caches", ())):
                for name, a in c.get("buffers", {}).items():
                    self._pool(run, k, name).give(a)
        # a later backward on this cache runs the forward again: its buffers may be reused by now, and an inference
        # forward keeps only one step's gates
        cache["released"] = True

    def _blocks(self, B: int, T: int, F: int) -> list[tuple[int, int]]:
        """Contiguous blocks of samples, one per thread when the batch is large enough to pay for it."""
        from ...kernels import recurrent as K
        from ...kernels.schedule import max_blocks

        k, u = self.n_gates, self.config.units
        work = B * max(T, 1) * k * u * (F + u + 30)  # GEMM multiply-adds per pass, plus ~30 per gate value
        n = FORCE_BLOCKS or min(max_blocks(), B // MIN_BLOCK_ROWS, work // MIN_BLOCK_WORK)  # not the threads
        if not FORCE_BLOCKS and not K.blas_controllers():  # BLAS threads cannot be held to one: no parallel calls
            n = 1
        n = max(1, min(int(n), B))
        return [(B * i // n, B * (i + 1) // n) for i in range(n)]

    def _begin(self, x, training, rng, mask) -> dict:
        """What every block of a pass shares: the input, dtype and sizes, the dropout masks (drawn once for the
        batch), the time-major mask in processing order and the initial states."""
        c = self.config
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"{self.type} '{self.name}' expects (batch, time, features), got shape {x.shape}")
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        B, T, F = x.shape
        dmask = rmask = None
        if training and c.dropout > 0:
            dmask = ((rng.random((B, F)) >= c.dropout) / (1.0 - c.dropout)).astype(dt)
        if training and c.recurrent_dropout > 0:
            rmask = ((rng.random((B, c.units)) >= c.recurrent_dropout) / (1.0 - c.recurrent_dropout)).astype(dt)
        m = None
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            if m.shape != (B, T):
                raise ValueError(f"{self.type} '{self.name}': mask shape {m.shape} does not match the input "
                                 f"(batch, time) = {(B, T)}")
            m = np.ascontiguousarray((m[:, ::-1] if c.go_backwards else m).T)
        return {"x": x, "dt": dt, "B": B, "T": T, "F": F, "dmask": dmask, "rmask": rmask, "m": m,
                "states": self._initial_states(B, dt), "keep": training}

    def _block_inputs(self, run, k: int, b0: int, b1: int, hcols: int = 0):
        """(xe, mask, rmask) of samples b0:b1. xe (T, Bk, F + hcols (+1)): time-major in processing order, columns
        [x * dropout mask, ``hcols`` columns left for the kernel, 1 (carries the input bias through the GEMM)];
        mask (T, Bk) and rmask (Bk, u) or None."""
        c = self.config
        T, F, dt = run["T"], run["F"], run["dt"]
        xb = run["x"][b0:b1]
        xe = self._take(run, k, "xe", (T, b1 - b0, F + hcols + (1 if c.use_bias else 0)), dt)
        xe[:, :, :F] = (xb[:, ::-1] if c.go_backwards else xb).transpose(1, 0, 2)
        if c.use_bias:
            xe[:, :, F + hcols] = 1
        if run["dmask"] is not None:
            xe[:, :, :F] *= run["dmask"][None, b0:b1]
        m = None if run["m"] is None else np.ascontiguousarray(run["m"][:, b0:b1])
        rmask = None if run["rmask"] is None else run["rmask"][b0:b1]
        return xe, m, rmask

    def _write_outputs(self, run, b0: int, b1: int, seq, block_finals, y, finals) -> None:
        """Put a block's outputs (seq (T, Bk, u) in processing order) and final states into the batch arrays."""
        from ...kernels import recurrent as K

        T = run["T"]
        if self.config.return_sequences:
            K.to_batch_major(seq, False, y[b0:b1])
        elif T:
            y[b0:b1] = seq[T - 1]
        else:
            y[b0:b1] = 0
        for f, v in zip(finals, block_finals, strict=True):
            f[b0:b1] = v

    def _split_dy(self, dys, T: int, B: int, u: int, masked: bool, dt):
        """(dY in processing order, [d final states], initial output carry) of a block for the backward kernels.

        Without return_sequences only the last output has a gradient: dY is a (1, B, u) zero block and that
        gradient enters as the final state's gradient (no mask: the last output is h_T) or as the output
        carry (masks: the last output may repeat an earlier one)."""
        d0 = dys[0]
        dstates = []
        for k in range(len(self.state_names)):
            v = dys[1 + k] if self.config.return_state and len(dys) > 1 + k else None
            dstates.append(np.zeros((B, u), dt) if v is None else np.array(v, dtype=dt))
        carry0 = np.zeros((B, u), dt)
        if self.config.return_sequences:
            dY = np.ascontiguousarray(np.asarray(d0, dtype=dt).transpose(1, 0, 2)) if d0 is not None \
                else np.zeros((1, B, u), dt)
        else:
            dY = np.zeros((1, B, u), dt)
            if d0 is not None:
                if masked:
                    carry0[...] = d0
                else:
                    dstates[0] += d0
        return dY, dstates, carry0

    @staticmethod
    def _grad_targets(params, dt, out) -> dict:
        """The arrays the (first block's) weight gradients go to: the engine's gradient buffers (``out``) where
        they fit, else new arrays."""
        targets = {}
        for name, p in params.items():
            buf = fitting_buffer(out, name, np.shape(p), dt)
            targets[name] = buf if buf is not None else np.empty(np.shape(p), dt)
        return targets

    @staticmethod
    def _scratch_grads(params, dt) -> dict:
        """Gradient arrays of a further block: views into one buffer, back to back in the order of ``params``."""
        shapes = [np.shape(p) for p in params.values()]
        views = tile(np.empty(sum(int(np.prod(sh, dtype=np.int64)) for sh in shapes), dt), shapes)
        return dict(zip(params, views, strict=True))

    def _kernel_grads(self, xe, dX2, g) -> np.ndarray | None:
        """Kernel gradient into g["kernel"] from one GEMM [x, 1]^T dX2; returns the input-bias gradient (the ones
        column's row) or None without a bias."""
        xe2 = xe.reshape(-1, xe.shape[2])
        if not self.config.use_bias:
            np.matmul(xe2.T, dX2, out=g["kernel"])
            return None
        dWb = xe2.T @ dX2
        F = g["kernel"].shape[0]
        g["kernel"][...] = dWb[:F]
        return dWb[F]

    def _input_grad(self, run, dX2, W, b0: int, b1: int, dx) -> None:
        """dx[b0:b1] (batch-major, input order) from the input-side gate gradients dX2 (T*Bk, k*u)."""
        from ...kernels import recurrent as K

        if dx is None:  # nothing upstream trains (the engine says so): skip dx
            return
        T, F = run["T"], run["F"]
        dxt = (dX2 @ W.T).reshape(T, b1 - b0, F)
        if run["dmask"] is not None:
            dxt *= run["dmask"][None, b0:b1]
        K.to_batch_major(dxt, self.config.go_backwards, dx[b0:b1])

    @staticmethod
    def _hprev(Hs, rmask):
        """h_{t-1} of every step as the recurrent GEMM saw it, flattened to (T*B, u)."""
        T1, B, u = Hs.shape
        if rmask is not None:
            return (Hs[:T1 - 1] * rmask[None]).reshape((T1 - 1) * B, u)
        return Hs[:T1 - 1].reshape((T1 - 1) * B, u)

    @staticmethod
    def _dummies(dt, m, rmask):
        mm = m if m is not None else np.ones((1, 1), dtype=bool)
        rm = rmask if rmask is not None else np.ones((1, 1), dtype=dt)
        return mm, rm

    def _codes(self):
        c = self.config
        return ACTIVATION_CODES[getattr(c, "recurrent_activation", "sigmoid")], ACTIVATION_CODES[c.activation]

    def _head(self, dt, forward: bool) -> tuple:
        """The first kernel arguments: the variant (True for the usual activations, sigmoid gates and tanh: closed
        forms inline and the generic activation code not compiled; forward only in float32, as it uses the fast
        tanh/sigmoid approximations) and the BLAS ?gemm of the time loop (address, kind)."""
        from ...kernels import recurrent as K

        ract, act = self._codes()
        usual = act == ACTIVATION_CODES["tanh"] and (self.n_gates == 1 or ract == ACTIVATION_CODES["sigmoid"])
        return (usual and (dt == np.float32 or not forward), *K.gemm_for(dt))

    @staticmethod
    def _with_bias_row(params, bias_row, dt):
        """[kernel; input bias] (F(+1), k*u) for the input projection GEMM."""
        W = np.asarray(params["kernel"], dtype=dt)
        if bias_row is None:
            return np.ascontiguousarray(W)
        return np.concatenate([W, np.asarray(bias_row, dtype=dt)[None]], axis=0)


def _blocks_of(W, dt, rows: int) -> np.ndarray:
    """A weight matrix of a per-step product as the column blocks the kernels take (kernels.recurrent.gemm_blocks)."""
    from ...kernels import recurrent as K

    return K.gemm_blocks(np.asarray(W, dtype=dt), rows)


# Blocks of samples (threads): at least MIN_BLOCK_ROWS samples and MIN_BLOCK_WORK units of work per block, so a
# block's work outweighs the hand-off to a thread (measured on 2 cores: an LSTM pass of 9.6M units was faster in one
# block, a GRU pass of 12M in two). FORCE_BLOCKS (tests) forces a count.
MIN_BLOCK_ROWS = 4


MIN_BLOCK_WORK = 6_000_000


FORCE_BLOCKS: int | None = None
