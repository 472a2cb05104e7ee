"""Optimizer update kernels (Keras 3 update rules).

Every kernel takes flat 1-D, C-contiguous arrays (the parameter, its gradient and its slots, all of
the parameter's dtype) and Python-float hyper-parameters, and updates the parameter and the slots in
place.  Unused optional slots are passed as empty arrays.  The scalars (learning rate and the
coefficients derived from the hyper-parameters, computed once per step in Python floats) are passed
in the parameter's dtype, so the arithmetic runs in that dtype as Keras does: float32 for float32
weights (twice the SIMD width of float64, and the square root and division dominate), float64 for
float64 weights.  The rules are elementwise with the same scalars for every weight, so the engine
calls each kernel ONCE per step over all the model's weights packed in one flat buffer.

Each rule is written once for one element (``_adam`` ...) and driven two ways: ``adam`` runs a plain
loop, ``adam_parallel`` splits the elements across the Numba threads; ``kernel(name, n)`` picks the
parallel one for very large arrays only (see PARALLEL_MIN).
``error_model="numpy"`` drops Python's ZeroDivisionError check from the loops (a zero divisor gives
inf/NaN as in numpy), and the drivers branch on the boolean options outside the loop (passing the
constant into the inlined element rule): both let LLVM vectorise the loops. Neither the packing nor the threads change a
result bit: every element is computed the same way.
"""

import math

from numba import njit, prange

from .blocks import one_launch_at_a_time
from .schedule import numba_threads

_ELEM = {"cache": True, "error_model": "numpy", "inline": "always"}
_SERIAL = {"cache": True, "error_model": "numpy"}
_PARALLEL = {"cache": True, "error_model": "numpy", "parallel": True}

# Elements from which the parallel driver is used. A step is memory-bound (a few hundred microseconds per million
# float32 weights on one core) and a parallel launch costs ~30 us, so small models stay serial. (With OpenMP
# threads, or OpenBLAS threads left spinning, a parallel region next to the GEMMs used to slow them 10-40x; the
# engine now runs Numba's workqueue layer and a short OpenBLAS thread timeout, see layerforge/__init__.py.)
# Measured on 2 cores: mnist_cnn's Adam step over 1.2M weights 1.94 -> 1.45 ms; the MLP's 269k no faster.
PARALLEL_MIN = 1 << 20


def kernel(name: str, n: int):
    """The update kernel ``name`` for ``n`` elements: the parallel driver when it pays."""
    if n >= PARALLEL_MIN and numba_threads(n) > 1:  # not inside a parallel region, more than one thread
        return globals()[name + "_parallel"]
    return globals()[name]


# ----------------------------------------------------------------------------- sgd

@njit(**_ELEM)
def _sgd(i, p, g, lr):
    p[i] = p[i] - g[i] * lr


@njit(**_SERIAL)
def sgd(p, g, lr):
    for i in range(p.size):
        _sgd(i, p, g, lr)


@one_launch_at_a_time
@njit(**_PARALLEL)
def sgd_parallel(p, g, lr):
    for i in prange(p.size):
        _sgd(i, p, g, lr)


@njit(**_ELEM)
def _sgd_momentum(i, p, g, m, lr, momentum, nesterov):
    gi = g[i]
    mi = m[i] * momentum - gi * lr
    m[i] = mi
    if nesterov:
        p[i] = p[i] + (mi * momentum - gi * lr)
    else:
        p[i] = p[i] + mi


@njit(**_SERIAL)
def sgd_momentum(p, g, m, lr, momentum, nesterov):
    if nesterov:
        for i in range(p.size):
            _sgd_momentum(i, p, g, m, lr, momentum, True)
    else:
        for i in range(p.size):
            _sgd_momentum(i, p, g, m, lr, momentum, False)


@one_launch_at_a_time
@njit(**_PARALLEL)
def sgd_momentum_parallel(p, g, m, lr, momentum, nesterov):
    if nesterov:
        for i in prange(p.size):
            _sgd_momentum(i, p, g, m, lr, momentum, True)
    else:
        for i in prange(p.size):
            _sgd_momentum(i, p, g, m, lr, momentum, False)


# ----------------------------------------------------------------------------- rmsprop

@njit(**_ELEM)
def _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, centered, use_momentum):
    gi = g[i]
    vi = rho * v[i] + one_minus_rho * gi * gi
    v[i] = vi
    if centered:
        ai = rho * avg[i] + one_minus_rho * gi
        avg[i] = ai
        denom = vi - ai * ai + epsilon
    else:
        denom = vi + epsilon
    inc = lr * gi / math.sqrt(denom)
    if use_momentum:
        mi = momentum * mom[i] + inc
        mom[i] = mi
        p[i] = p[i] - mi
    else:
        p[i] = p[i] - inc


@njit(**_SERIAL)
def rmsprop(p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, centered, use_momentum):
    n = p.size
    if centered and use_momentum:
        for i in range(n):
            _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, True, True)
    elif centered:
        for i in range(n):
            _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, True, False)
    elif use_momentum:
        for i in range(n):
            _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, False, True)
    else:
        for i in range(n):
            _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, False, False)


@one_launch_at_a_time
@njit(**_PARALLEL)
def rmsprop_parallel(p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, centered, use_momentum):
    n = p.size
    if centered and use_momentum:
        for i in prange(n):
            _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, True, True)
    elif centered:
        for i in prange(n):
            _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, True, False)
    elif use_momentum:
        for i in prange(n):
            _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, False, True)
    else:
        for i in prange(n):
            _rmsprop(i, p, g, v, mom, avg, lr, rho, one_minus_rho, momentum, epsilon, False, False)


# ----------------------------------------------------------------------------- adagrad

@njit(**_ELEM)
def _adagrad(i, p, g, acc, lr, epsilon):
    gi = g[i]
    a = acc[i] + gi * gi
    acc[i] = a
    p[i] = p[i] - lr * gi / math.sqrt(a + epsilon)


@njit(**_SERIAL)
def adagrad(p, g, acc, lr, epsilon):
    for i in range(p.size):
        _adagrad(i, p, g, acc, lr, epsilon)


@one_launch_at_a_time
@njit(**_PARALLEL)
def adagrad_parallel(p, g, acc, lr, epsilon):
    for i in prange(p.size):
        _adagrad(i, p, g, acc, lr, epsilon)


# ----------------------------------------------------------------------------- adadelta

@njit(**_ELEM)
def _adadelta(i, p, g, acc_grad, acc_delta, lr, rho, one_minus_rho, epsilon):
    gi = g[i]
    ag = rho * acc_grad[i] + one_minus_rho * gi * gi
    acc_grad[i] = ag
    delta = -math.sqrt(acc_delta[i] + epsilon) * gi / math.sqrt(ag + epsilon)
    acc_delta[i] = rho * acc_delta[i] + one_minus_rho * delta * delta
    p[i] = p[i] + lr * delta


@njit(**_SERIAL)
def adadelta(p, g, acc_grad, acc_delta, lr, rho, one_minus_rho, epsilon):
    for i in range(p.size):
        _adadelta(i, p, g, acc_grad, acc_delta, lr, rho, one_minus_rho, epsilon)


@one_launch_at_a_time
@njit(**_PARALLEL)
def adadelta_parallel(p, g, acc_grad, acc_delta, lr, rho, one_minus_rho, epsilon):
    for i in prange(p.size):
        _adadelta(i, p, g, acc_grad, acc_delta, lr, rho, one_minus_rho, epsilon)


# ----------------------------------------------------------------------------- adam

@njit(**_ELEM)
def _adam(i, p, g, m, v, vhat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, amsgrad):
    gi = g[i]
    mi = m[i] + (gi - m[i]) * one_minus_beta_1
    m[i] = mi
    vi = v[i] + (gi * gi - v[i]) * one_minus_beta_2
    v[i] = vi
    if amsgrad:
        vi = max(vhat[i], vi)
        vhat[i] = vi
    p[i] = p[i] - mi * alpha / (math.sqrt(vi) + epsilon)


@njit(**_SERIAL)
def adam(p, g, m, v, vhat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, amsgrad):
    """alpha = lr·sqrt(1 - beta_2^t) / (1 - beta_1^t)."""
    if amsgrad:
        for i in range(p.size):
            _adam(i, p, g, m, v, vhat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, True)
    else:
        for i in range(p.size):
            _adam(i, p, g, m, v, vhat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, False)


@one_launch_at_a_time
@njit(**_PARALLEL)
def adam_parallel(p, g, m, v, vhat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, amsgrad):
    if amsgrad:
        for i in prange(p.size):
            _adam(i, p, g, m, v, vhat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, True)
    else:
        for i in prange(p.size):
            _adam(i, p, g, m, v, vhat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, False)


# ----------------------------------------------------------------------------- adamax

@njit(**_ELEM)
def _adamax(i, p, g, m, u, lr, one_minus_beta_1, beta_2, epsilon, one_minus_beta_1_power):
    gi = g[i]
    mi = m[i] + (gi - m[i]) * one_minus_beta_1
    m[i] = mi
    ui = max(beta_2 * u[i], abs(gi))
    u[i] = ui
    p[i] = p[i] - lr * mi / (one_minus_beta_1_power * (ui + epsilon))


@njit(**_SERIAL)
def adamax(p, g, m, u, lr, one_minus_beta_1, beta_2, epsilon, one_minus_beta_1_power):
    for i in range(p.size):
        _adamax(i, p, g, m, u, lr, one_minus_beta_1, beta_2, epsilon, one_minus_beta_1_power)


@one_launch_at_a_time
@njit(**_PARALLEL)
def adamax_parallel(p, g, m, u, lr, one_minus_beta_1, beta_2, epsilon, one_minus_beta_1_power):
    for i in prange(p.size):
        _adamax(i, p, g, m, u, lr, one_minus_beta_1, beta_2, epsilon, one_minus_beta_1_power)


# ----------------------------------------------------------------------------- nadam

@njit(**_ELEM)
def _nadam(i, p, g, m, v, lr, one_minus_beta_1, one_minus_beta_2, epsilon, u_t_1, one_minus_u_t, d_t_1, d_t, d_v):
    """d_t_1 = 1 - u_product_t_1, d_t = 1 - u_product_t, d_v = 1 - beta_2^t."""
    gi = g[i]
    mi = m[i] + (gi - m[i]) * one_minus_beta_1
    m[i] = mi
    vi = v[i] + (gi * gi - v[i]) * one_minus_beta_2
    v[i] = vi
    m_hat = u_t_1 * mi / d_t_1 + one_minus_u_t * gi / d_t
    v_hat = vi / d_v
    p[i] = p[i] - m_hat * lr / (math.sqrt(v_hat) + epsilon)


@njit(**_SERIAL)
def nadam(p, g, m, v, lr, one_minus_beta_1, one_minus_beta_2, epsilon, u_t_1, one_minus_u_t, d_t_1, d_t, d_v):
    for i in range(p.size):
        _nadam(i, p, g, m, v, lr, one_minus_beta_1, one_minus_beta_2, epsilon, u_t_1, one_minus_u_t, d_t_1, d_t, d_v)


@one_launch_at_a_time
@njit(**_PARALLEL)
def nadam_parallel(p, g, m, v, lr, one_minus_beta_1, one_minus_beta_2, epsilon, u_t_1, one_minus_u_t, d_t_1, d_t,
                   d_v):
    for i in prange(p.size):
        _nadam(i, p, g, m, v, lr, one_minus_beta_1, one_minus_beta_2, epsilon, u_t_1, one_minus_u_t, d_t_1, d_t, d_v)
