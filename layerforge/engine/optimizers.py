"""Optimizers (Keras 3 update rules) and learning-rate schedules.

``make_optimizer(spec)`` takes a spec normalised by ``config.training.normalize_optimizer``
(``{"type": "adam", "learning_rate": 0.001 or {schedule}, ...}``).  ``Optimizer.step(params, grads)``
updates the parameters in place; the per-parameter update runs in the Numba kernels of
``layerforge.kernels.optim`` (imported on the first step, not at import time).

One step, as Keras 3 ``Optimizer.apply``:

1. the learning rate is ``lr_t = base(iterations) / (1 + decay · iterations)`` where ``base`` is the
   constant rate or the schedule evaluated at the iteration count (starting at 0) and ``decay`` is
   the Keras 1 argument (0 by default);
2. the gradients are clipped: ``global_clipnorm`` (all gradients scaled by
   ``clip / max(global_norm, clip)``), then ``clipnorm`` (each gradient by its own norm), then
   ``clipvalue`` (elementwise).  Keras 3 accepts only one of them; Keras 1 applied clipnorm and
   clipvalue both, so several are applied in that order;
3. decoupled weight decay (``weight_decay``; AdamW default 0.004): ``p -= p · weight_decay · lr_t``;
4. the optimizer's update with ``lr_t``;
5. ``iterations += 1``.

Constraints are not the optimizer's business: the engine applies them after ``step``.
Slots are created lazily per parameter index, with the parameter's dtype (on the packed path, where the
engine keeps all weights in one flat buffer, every slot is one flat array and the per-parameter slots are
views into it, so one kernel call updates everything).  ``state_dict`` /
``load_state_dict`` round-trip the iteration count, the learning rate and every slot exactly.

Nadam: Keras 3 uses the momentum schedule ``u_t = beta_1 (1 - 0.5 · 0.96^t)``; when the Keras 1
argument ``schedule_decay`` is given, ``0.96^(t · schedule_decay)`` is used instead (Keras 1/2).
"""

from __future__ import annotations

import math

import numpy as np

from ..layers.packed import in_place, packed_buffer, tile

# --------------------------------------------------------------------------- schedules


class Schedule:
    """A learning-rate schedule: ``schedule(step) -> float`` (Keras 3 formulas)."""

    name = ""

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.__dict__})"


def _positive_steps(name: str, decay_steps) -> float:
    if not isinstance(decay_steps, (int, float)) or isinstance(decay_steps, bool) or decay_steps <= 0:
        raise ValueError(f"learning-rate schedule {name!r}: decay_steps must be > 0, not {decay_steps!r}")
    return float(decay_steps)


class _RateDecay(Schedule):
    """Schedules of ``initial_learning_rate``, ``decay_rate`` and the progress ``step / decay_steps``
    (rounded down with ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = _positive_steps(self.name, decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def _progress(self, step):
        p = step / self.decay_steps
        return math.floor(p) if self.staircase else p


class ExponentialDecay(_RateDecay):
    name = "exponential_decay"

    def __call__(self, step):
        return self.initial_learning_rate * self.decay_rate ** self._progress(step)


class InverseTimeDecay(_RateDecay):
    name = "inverse_time_decay"

    def __call__(self, step):
        return self.initial_learning_rate / (1.0 + self.decay_rate * self._progress(step))


class PiecewiseConstantDecay(Schedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <= boundaries[i], ..."""

    name = "piecewise_constant"

    def __init__(self, boundaries, values):
        self.boundaries = [float(b) for b in boundaries]
        self.values = [float(v) for v in values]
        if len(self.boundaries) != len(self.values) - 1:
            raise ValueError(f"learning-rate schedule 'piecewise_constant' needs one more value than boundaries; "
                             f"got {len(self.boundaries)} boundaries and {len(self.values)} values")
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:], strict=False)):
            raise ValueError(f"learning-rate schedule 'piecewise_constant': boundaries must increase, "
                             f"got {list(boundaries)}")

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values, strict=False):
            if step <= b:
                return v
        return self.values[-1]


class PolynomialDecay(Schedule):
    name = "polynomial_decay"

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False):
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = _positive_steps(self.name, decay_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.power = float(power)
        self.cycle = bool(cycle)

    def __call__(self, step):
        step = float(step)
        decay_steps = self.decay_steps
        if self.cycle:
            multiplier = 1.0 if step == 0 else math.ceil(step / decay_steps)
            decay_steps = decay_steps * multiplier
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        return (self.initial_learning_rate - self.end_learning_rate) * (1.0 - p) ** self.power + self.end_learning_rate


class CosineDecay(Schedule):
    """Optional linear warmup from initial_learning_rate to warmup_target, then cosine decay to alpha·target."""

    name = "cosine_decay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = _positive_steps(self.name, decay_steps)
        self.alpha = float(alpha)
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        self.warmup_steps = float(warmup_steps)

    def _decay(self, step, decay_from):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = float(step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            frac = step / self.warmup_steps
            return (self.warmup_target - self.initial_learning_rate) * frac + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)


SCHEDULE_CLASSES: dict[str, type[Schedule]] = {cls.name: cls for cls in (
    ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, PolynomialDecay, CosineDecay)}


def make_schedule(spec: dict) -> Schedule:
    """Build a schedule from ``{"type": name, **args}`` (config.training.SCHEDULES)."""
    args = dict(spec)
    name = args.pop("type")
    if name not in SCHEDULE_CLASSES:
        raise ValueError(f"unknown learning-rate schedule {name!r} (known: {', '.join(SCHEDULE_CLASSES)})")
    missing = [k for k in ("initial_learning_rate", "decay_steps", "decay_rate", "boundaries", "values")
               if k in _required(name) and args.get(k) is None]
    if missing:
        raise ValueError(f"learning-rate schedule {name!r} needs {', '.join(missing)}")
    args = {k: v for k, v in args.items() if v is not None or k == "warmup_target"}
    return SCHEDULE_CLASSES[name](**args)


def _required(name: str) -> tuple[str, ...]:
    return {"exponential_decay": ("initial_learning_rate", "decay_steps", "decay_rate"),
            "inverse_time_decay": ("initial_learning_rate", "decay_steps", "decay_rate"),
            "piecewise_constant": ("boundaries", "values"),
            "polynomial_decay": ("initial_learning_rate", "decay_steps"),
            "cosine_decay": ("initial_learning_rate", "decay_steps")}[name]


# --------------------------------------------------------------------------- base optimizer


_FLAT = -1  # the parameter index ``_update``/``_slot`` get on the packed path (all weights in one buffer)


def _flat(p: np.ndarray) -> tuple[np.ndarray, bool]:
    """A flat view of p (or a copy when p is not contiguous, flagged True to write back)."""
    if p.flags.c_contiguous:
        return p.reshape(-1), False
    return np.ascontiguousarray(p).reshape(-1), True


class Optimizer:
    """Base class: learning rate / schedule, clipping, decoupled weight decay, slots, state."""

    name = ""
    default_learning_rate = 0.001
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate=None, clipnorm=None, clipvalue=None, global_clipnorm=None, decay=0.0,
                 weight_decay=None):
        lr = self.default_learning_rate if learning_rate is None else learning_rate
        self._schedule: Schedule | None = None
        self._lr = 0.0
        if isinstance(lr, dict):
            self._schedule = make_schedule(lr)
        elif isinstance(lr, Schedule):
            self._schedule = lr
        else:
            self._lr = float(lr)
        for k, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if v is not None and not float(v) > 0:
                raise ValueError(f"{k} must be a number > 0, not {v!r}")
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.clipvalue = None if clipvalue is None else float(clipvalue)
        self.global_clipnorm = None if global_clipnorm is None else float(global_clipnorm)
        self.decay = float(decay or 0.0)
        if self.decay < 0:
            raise ValueError(f"decay must be >= 0, not {decay!r}")
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.iterations = 0
        self._slots: dict[str, list[np.ndarray | None]] = {n: [] for n in self.slot_names}
        # packed path: one flat array per slot name; ``_slots[name][i]`` are views into it
        self._flat_slots: dict[str, np.ndarray] = {}
        self._flat_views: dict[str, list[np.ndarray]] = {}
        self._grad_scratch: np.ndarray | None = None
        self._packed_cache: tuple[list, np.ndarray | None] | None = None
        self._grads_in_place: tuple[list, np.ndarray | None] = ([], None)

    def __repr__(self):
        lr = self._schedule if self._schedule is not None else self._lr
        return f"{type(self).__name__}(learning_rate={lr!r}, iterations={self.iterations})"

    # ------------------------------------------------------------------ learning rate
    @property
    def learning_rate(self) -> float:
        """The base rate at the current iteration (the schedule's value when one is active)."""
        if self._schedule is not None:
            try:
                return float(self._schedule(self.iterations))
            except OverflowError:  # e.g. decay_rate 1e300 ** (step / decay_steps): the rate is unbounded
                return math.inf  # the step then makes the loss non-finite: a failed run (exit 1), not a crash
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        value = float(value)
        if not value >= 0 or math.isinf(value):
            raise ValueError(f"learning rate must be a finite number >= 0, not {value!r}")
        self._schedule = None  # a schedule becomes the constant it is set to
        self._lr = value

    @property
    def schedule(self) -> Schedule | None:
        return self._schedule

    def current_lr(self) -> float:
        """The rate the next step uses: base rate (schedule) divided by 1 + decay·iterations."""
        lr = self.learning_rate
        if self.decay:
            lr = lr / (1.0 + self.decay * self.iterations)
        return lr

    # ------------------------------------------------------------------ slots
    def _slot(self, name: str, i: int, p: np.ndarray, init: float = 0.0) -> np.ndarray:
        if i == _FLAT:
            return self._flat_slots[name]
        slots = self._slots[name]
        while len(slots) <= i:
            slots.append(None)
        s = slots[i]
        if s is None:
            s = np.full(p.size, init, dtype=p.dtype)
            slots[i] = s
        elif s.size != p.size:
            raise ValueError(f"optimizer slot {name}/{i} has {s.size} elements but the parameter has {p.size}; "
                             "the optimizer state does not belong to these parameters")
        elif s.dtype != p.dtype:
            s = np.ascontiguousarray(s, dtype=p.dtype).reshape(-1)
            slots[i] = s
        return s

    def _slot_init(self, name: str) -> float:
        """The value a new slot starts from."""
        return 0.0

    def _pack_slots(self, params: list[np.ndarray], dtype) -> None:
        """Make every slot one flat array laid out like the packed parameters (kept when already so)."""
        total = sum(p.size for p in params)
        for name in self.slot_names:
            views = self._slots[name]
            flat = self._flat_slots.get(name)
            known = self._flat_views.get(name, [])
            if (flat is not None and flat.dtype == dtype and flat.size == total and len(views) >= len(params)
                    and len(known) == len(params) and all(v is k for v, k in zip(views, known, strict=False))):
                continue
            flat = np.empty(total, dtype=dtype)
            new_views = tile(flat, [(p.size,) for p in params])
            for i, (p, view) in enumerate(zip(params, new_views, strict=True)):
                old = views[i] if i < len(views) else None
                if old is None:
                    view[...] = self._slot_init(name)
                elif old.size != p.size:
                    raise ValueError(f"optimizer slot {name}/{i} has {old.size} elements but the parameter has "
                                     f"{p.size}; the optimizer state does not belong to these parameters")
                else:
                    view[...] = old.reshape(-1)
            self._flat_slots[name] = flat
            self._flat_views[name] = new_views
            self._slots[name] = new_views + list(views[len(params):])

    def _packed_params(self, params: list[np.ndarray]) -> np.ndarray | None:
        """``packed_buffer(params)``, remembered for the same parameter objects (a view never moves)."""
        cached = self._packed_cache
        if cached is not None and len(cached[0]) == len(params) and all(
                a is b for a, b in zip(cached[0], params, strict=False)):
            return cached[1]
        base = packed_buffer(params)
        self._packed_cache = (list(params), base)
        self._grads_in_place = ([], None)
        return base

    def _packed_grads(self, params: list[np.ndarray], grads: list[np.ndarray], total: int, dtype,
                      grad_buffer: np.ndarray | None) -> np.ndarray:
        """The gradients as one flat array laid out like the packed parameters.

        ``grad_buffer`` (the engine's) is used when given: gradients the layers already wrote into their place
        in it stay there, the others are copied in. Without it a scratch array of the optimizer's is filled.
        """
        target = grad_buffer
        if target is None or target.size != total or target.dtype != dtype or not target.flags.c_contiguous:
            if self._grad_scratch is None or self._grad_scratch.size != total or self._grad_scratch.dtype != dtype:
                self._grad_scratch = np.empty(total, dtype=dtype)
            target = self._grad_scratch
        known, known_target = self._grads_in_place
        if known_target is not target or len(known) != len(grads):
            known = [None] * len(grads)
        off = 0
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            n = p.size
            if g is not known[i]:
                if in_place(g, target, off):
                    known[i] = g  # already in place (and stays there: a view never moves)
                else:
                    target[off:off + n] = g.reshape(-1)
            off += n
        self._grads_in_place = (known, target)
        return target

    def slot(self, name: str, i: int) -> np.ndarray | None:
        """The flat slot array ``name`` of parameter ``i`` (None before its first step)."""
        slots = self._slots.get(name, [])
        return slots[i] if i < len(slots) else None

    # ------------------------------------------------------------------ clipping
    def _clip(self, grads: list) -> list:
        out = list(grads)
        if self.global_clipnorm is not None:
            sq = sum(float(np.sum(np.square(g, dtype=np.float64))) for g in out if g is not None)
            norm = math.sqrt(sq)
            if norm > self.global_clipnorm:
                scale = self.global_clipnorm / norm
                out = [None if g is None else g * g.dtype.type(scale) for g in out]
        if self.clipnorm is not None:
            clipped = []
            for g in out:
                if g is not None:
                    norm = math.sqrt(float(np.sum(np.square(g, dtype=np.float64))))
                    if norm > self.clipnorm:
                        g = g * g.dtype.type(self.clipnorm / norm)
                clipped.append(g)
            out = clipped
        if self.clipvalue is not None:
            v = self.clipvalue
            out = [None if g is None else np.clip(g, -v, v) for g in out]
        return out

    # ------------------------------------------------------------------ step
    def _before_step(self) -> None:
        """Per-step (not per-parameter) work before the updates."""

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def step(self, params: list[np.ndarray], grads: list[np.ndarray | None], *,
             grad_buffer: np.ndarray | None = None) -> None:
        """Update ``params`` in place from ``grads`` (a None gradient leaves its parameter alone).

        When ``params`` exactly tile one flat buffer (``packed_buffer``; the engine packs its weights so) and every
        gradient is given, the whole step is one kernel call over that buffer; ``grad_buffer`` is then an optional
        flat array of the same size the gradients may already sit in (see ``_packed_grads``). The results are the
        same either way.
        """
        if len(params) != len(grads):
            raise ValueError(f"step got {len(params)} parameters and {len(grads)} gradients")
        prepared = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if g is None:
                prepared.append(None)
                continue
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"parameter {i} must be a floating-point numpy array, not {type(p).__name__}"
                                f"{'' if not isinstance(p, np.ndarray) else ' of ' + str(p.dtype)}")
            if not isinstance(g, np.ndarray):
                g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"gradient {i} has shape {g.shape} but its parameter has shape {p.shape}")
            prepared.append(g if g.dtype == p.dtype else g.astype(p.dtype))
        prepared = self._clip(prepared)
        lr = self.current_lr()
        self._before_step()
        packed = self._packed_params(params) if all(g is not None for g in prepared) else None
        if packed is not None:  # all weights in one buffer: one kernel call for the whole step
            grads_flat = self._packed_grads(params, prepared, packed.size, packed.dtype, grad_buffer)
            self._pack_slots(params, packed.dtype)
            if self.weight_decay:
                packed -= packed * packed.dtype.type(self.weight_decay * lr)
            self._update(_FLAT, packed, grads_flat, lr)
            self.iterations += 1
            return
        for i, (p, g) in enumerate(zip(params, prepared, strict=True)):
            if g is None:
                continue
            flat, copied = _flat(p)
            gflat = np.ascontiguousarray(g).reshape(-1)
            if self.weight_decay:
                flat -= flat * flat.dtype.type(self.weight_decay * lr)
            self._update(i, flat, gflat, lr)
            if copied:
                p[...] = flat.reshape(p.shape)
        self.iterations += 1

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict[str, np.ndarray]:
        return {}

    def _load_extra_state(self, d: dict) -> None:
        pass

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every piece of state as numpy arrays (safetensors-friendly), copies."""
        d = {"iterations": np.array([self.iterations], dtype=np.int64),
             "learning_rate": np.array([self._lr], dtype=np.float64),
             "schedule_active": np.array([1 if self._schedule is not None else 0], dtype=np.int64)}
        for name, slots in self._slots.items():
            for i, s in enumerate(slots):
                if s is not None:
                    d[f"{name}/{i}"] = s.copy()
        d.update(self._extra_state())
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore what ``state_dict`` gave (slots keep their saved dtype until the next step)."""
        d = dict(d)
        try:
            iterations = int(np.asarray(d.pop("iterations")).reshape(-1)[0])
            lr = float(np.asarray(d.pop("learning_rate")).reshape(-1)[0])
            active = int(np.asarray(d.pop("schedule_active", np.array([0]))).reshape(-1)[0])
        except KeyError as e:
            raise ValueError(f"optimizer state has no {e.args[0]!r} entry") from None
        self._load_extra_state(d)
        slots: dict[str, list] = {n: [] for n in self.slot_names}
        for key, value in d.items():
            name, _, idx = key.rpartition("/")
            if name not in slots or not idx.isdigit():
                raise ValueError(f"optimizer state entry {key!r} does not belong to a {self.name} optimizer "
                                 f"(its slots are {', '.join(self.slot_names) or 'none'})")
            i = int(idx)
            lst = slots[name]
            while len(lst) <= i:
                lst.append(None)
            lst[i] = np.array(value, copy=True).reshape(-1)
        self.iterations = iterations
        if not active:  # a constant rate (possibly set by a callback over a schedule)
            self._schedule = None
            self._lr = lr
        # saved with an active schedule: keep this optimizer's own schedule (from the same config)
        self._slots = slots


# --------------------------------------------------------------------------- optimizers


def _kernels():
    from ..kernels import optim

    return optim


_EMPTY: dict = {}


def _empty(dtype) -> np.ndarray:
    e = _EMPTY.get(dtype)
    if e is None:
        e = _EMPTY[dtype] = np.empty(0, dtype=dtype)
    return e


class SGD(Optimizer):
    name = "sgd"
    default_learning_rate = 0.01

    def __init__(self, momentum=0.0, nesterov=False, **common):
        momentum = float(momentum)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"sgd: momentum must be between 0 and 1, not {momentum!r}")
        self.slot_names = ("momentum",) if momentum != 0 else ()
        super().__init__(**common)
        self.momentum = momentum
        self.nesterov = bool(nesterov)

    def _update(self, i, p, g, lr):
        K, f = _kernels(), p.dtype.type
        if self.momentum != 0:
            K.kernel("sgd_momentum", p.size)(p, g, self._slot("momentum", i, p), f(lr), f(self.momentum),
                                             self.nesterov)
        else:
            K.kernel("sgd", p.size)(p, g, f(lr))


class RMSprop(Optimizer):
    name = "rmsprop"

    def __init__(self, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **common):
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)
        self.centered = bool(centered)
        self.slot_names = ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + (
            ("average_gradient",) if self.centered else ())
        super().__init__(**common)

    def _update(self, i, p, g, lr):
        use_mom = self.momentum > 0
        mom = self._slot("momentum", i, p) if use_mom else _empty(p.dtype)
        avg = self._slot("average_gradient", i, p) if self.centered else _empty(p.dtype)
        f = p.dtype.type
        _kernels().kernel("rmsprop", p.size)(p, g, self._slot("velocity", i, p), mom, avg, f(lr), f(self.rho),
                                             f(1.0 - self.rho), f(self.momentum), f(self.epsilon), self.centered,
                                             use_mom)


class Adagrad(Optimizer):
    name = "adagrad"
    slot_names = ("accumulator",)

    def __init__(self, initial_accumulator_value=0.1, epsilon=1e-7, **common):
        super().__init__(**common)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def _slot_init(self, name):
        return self.initial_accumulator_value

    def _update(self, i, p, g, lr):
        acc = self._slot("accumulator", i, p, init=self.initial_accumulator_value)
        f = p.dtype.type
        _kernels().kernel("adagrad", p.size)(p, g, acc, f(lr), f(self.epsilon))


class Adadelta(Optimizer):
    name = "adadelta"
    slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, rho=0.95, epsilon=1e-7, **common):
        super().__init__(**common)
        self.rho, self.epsilon = float(rho), float(epsilon)

    def _update(self, i, p, g, lr):
        f = p.dtype.type
        _kernels().kernel("adadelta", p.size)(p, g, self._slot("accumulated_grad", i, p),
                                              self._slot("accumulated_delta_var", i, p), f(lr), f(self.rho),
                                              f(1.0 - self.rho), f(self.epsilon))


class Adam(Optimizer):
    name = "adam"

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **common):
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.amsgrad = bool(amsgrad)
        self.slot_names = ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())
        super().__init__(**common)

    def _update(self, i, p, g, lr):
        t = self.iterations + 1
        alpha = lr * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
        vhat = self._slot("velocity_hat", i, p) if self.amsgrad else _empty(p.dtype)
        f = p.dtype.type
        _kernels().kernel("adam", p.size)(p, g, self._slot("momentum", i, p), self._slot("velocity", i, p), vhat,
                                          f(alpha), f(1.0 - self.beta_1), f(1.0 - self.beta_2), f(self.epsilon),
                                          self.amsgrad)


class AdamW(Adam):
    name = "adamw"

    def __init__(self, weight_decay=0.004, **kw):
        super().__init__(weight_decay=0.004 if weight_decay is None else weight_decay, **kw)


class Adamax(Optimizer):
    name = "adamax"
    slot_names = ("momentum", "norm")

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **common):
        super().__init__(**common)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _update(self, i, p, g, lr):
        b1p = self.beta_1 ** (self.iterations + 1)
        f = p.dtype.type
        _kernels().kernel("adamax", p.size)(p, g, self._slot("momentum", i, p), self._slot("norm", i, p), f(lr),
                                            f(1.0 - self.beta_1), f(self.beta_2), f(self.epsilon), f(1.0 - b1p))


class Nadam(Optimizer):
    name = "nadam"
    slot_names = ("momentum", "velocity")

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7, schedule_decay=None, **common):
        super().__init__(**common)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.schedule_decay = None if schedule_decay is None else float(schedule_decay)
        self.u_product = 1.0

    def _u(self, step: int) -> float:
        exponent = step if self.schedule_decay is None else step * self.schedule_decay
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** exponent)

    def _before_step(self):
        self.u_product = self.u_product * self._u(self.iterations + 1)

    def _update(self, i, p, g, lr):
        t = self.iterations + 1
        u_t, u_t_1 = self._u(t), self._u(t + 1)
        f = p.dtype.type
        _kernels().kernel("nadam", p.size)(p, g, self._slot("momentum", i, p), self._slot("velocity", i, p), f(lr),
                                           f(1.0 - self.beta_1), f(1.0 - self.beta_2), f(self.epsilon), f(u_t_1),
                                           f(1.0 - u_t), f(1.0 - self.u_product * u_t_1), f(1.0 - self.u_product),
                                           f(1.0 - self.beta_2 ** t))

    def _extra_state(self):
        return {"u_product": np.array([self.u_product], dtype=np.float64)}

    def _load_extra_state(self, d):
        if "u_product" in d:
            self.u_product = float(np.asarray(d.pop("u_product")).reshape(-1)[0])


OPTIMIZER_CLASSES: dict[str, type[Optimizer]] = {cls.name: cls for cls in (
    SGD, RMSprop, Adagrad, Adadelta, Adam, AdamW, Adamax, Nadam)}


def make_optimizer(spec) -> Optimizer:
    """Build an optimizer from a normalised spec (a bare name or unnormalised mapping is normalised first)."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str) or "lr" in spec or spec.get("type") not in OPTIMIZER_CLASSES:
        from ..config.training import normalize_optimizer

        spec = normalize_optimizer(spec)
    args = dict(spec)
    name = args.pop("type")
    return OPTIMIZER_CLASSES[name](**args)
