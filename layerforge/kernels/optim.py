"""Optimizer update kernels (Keras 3 update rules), one call per parameter.

Every kernel takes flat 1-D, C-contiguous arrays (the parameter, its gradient and its slots, all of
the parameter's dtype) and Python-float hyper-parameters, and updates the parameter and the slots in
place.  Unused optional slots are passed as empty arrays.  Arithmetic runs in float64 and is rounded
once when stored.
"""

import math

from numba import njit


@njit(cache=True)
def sgd(p, g, lr):
    for i in range(p.size):
        p[i] = p[i] - g[i] * lr


@njit(cache=True)
def sgd_momentum(p, g, m, lr, momentum, nesterov):
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * momentum - gi * lr
        m[i] = mi
        if nesterov:
            p[i] = p[i] + (mi * momentum - gi * lr)
        else:
            p[i] = p[i] + mi


@njit(cache=True)
def rmsprop(p, g, v, mom, avg, lr, rho, momentum, epsilon, centered, use_momentum):
    for i in range(p.size):
        gi = g[i]
        vi = rho * v[i] + (1.0 - rho) * gi * gi
        v[i] = vi
        if centered:
            ai = rho * avg[i] + (1.0 - rho) * gi
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


@njit(cache=True)
def adagrad(p, g, acc, lr, epsilon):
    for i in range(p.size):
        gi = g[i]
        a = acc[i] + gi * gi
        acc[i] = a
        p[i] = p[i] - lr * gi / math.sqrt(a + epsilon)


@njit(cache=True)
def adadelta(p, g, acc_grad, acc_delta, lr, rho, epsilon):
    for i in range(p.size):
        gi = g[i]
        ag = rho * acc_grad[i] + (1.0 - rho) * gi * gi
        acc_grad[i] = ag
        delta = -math.sqrt(acc_delta[i] + epsilon) * gi / math.sqrt(ag + epsilon)
        acc_delta[i] = rho * acc_delta[i] + (1.0 - rho) * delta * delta
        p[i] = p[i] + lr * delta


@njit(cache=True)
def adam(p, g, m, v, vhat, alpha, beta_1, beta_2, epsilon, amsgrad):
    """alpha = lr·sqrt(1 - beta_2^t) / (1 - beta_1^t)."""
    for i in range(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * (1.0 - beta_1)
        m[i] = mi
        vi = v[i] + (gi * gi - v[i]) * (1.0 - beta_2)
        v[i] = vi
        if amsgrad:
            vi = max(vhat[i], vi)
            vhat[i] = vi
        p[i] = p[i] - mi * alpha / (math.sqrt(vi) + epsilon)


@njit(cache=True)
def adamax(p, g, m, u, lr, beta_1, beta_2, epsilon, beta_1_power):
    for i in range(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * (1.0 - beta_1)
        m[i] = mi
        ui = max(beta_2 * u[i], abs(gi))
        u[i] = ui
        p[i] = p[i] - lr * mi / ((1.0 - beta_1_power) * (ui + epsilon))


@njit(cache=True)
def nadam(p, g, m, v, lr, beta_1, beta_2, epsilon, u_t, u_t_1, u_product_t, u_product_t_1, beta_2_power):
    for i in range(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * (1.0 - beta_1)
        m[i] = mi
        vi = v[i] + (gi * gi - v[i]) * (1.0 - beta_2)
        v[i] = vi
        m_hat = u_t_1 * mi / (1.0 - u_product_t_1) + (1.0 - u_t) * gi / (1.0 - u_product_t)
        v_hat = vi / (1.0 - beta_2_power)
        p[i] = p[i] - m_hat * lr / (math.sqrt(v_hat) + epsilon)
