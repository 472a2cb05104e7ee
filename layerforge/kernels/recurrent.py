"""Numba kernels for SimpleRNN, GRU and LSTM: the time loop of the forward pass and of BPTT, and the thread
helpers that run them on blocks of samples.

Layout: every sequence buffer is time-major and in *processing order* (already reversed for
``go_backwards``), so ``buf[t]`` is a contiguous ``(B, k*u)`` block that BLAS reads directly.
SimpleRNN and GRU get the input projection ``[x, 1] @ [kernel; bias]`` of all steps from one GEMM
done by the caller; LSTM runs one GEMM per step over ``[x_t, h_{t-1}, 1]`` (the kernel writes
h_{t-1} into that buffer), so that all its weight gradients come from one GEMM after BPTT, in the
order of the engine's gradient buffer (kernel, recurrent_kernel, bias).
Per step: one BLAS ?gemm (``_gemm``, called by address: see ``gemm_for``) and fused elementwise gate
loops. The backward kernels write the gate gradients of every step into one ``(T, B, k*u)`` buffer so
the caller gets ``dkernel``, ``drecurrent_kernel``, the bias and ``dx`` with one GEMM each afterwards.

Threads (``run_blocks``): the samples of a batch are independent, so the layer splits the batch into
one block per thread and each thread runs the *whole* pass of its block (input projection, time
loop, weight-gradient GEMMs) with the BLAS libraries held to one thread (``kernels.blocks.one_blas_thread``). A
pass then waits for the other threads once, not at each of the time steps' small GEMMs: a
multi-threaded BLAS call per step waits for a core at every step on a busy machine (the LSTM
benchmark trained at a third of its one-thread speed with two threads), and the worker threads of
one BLAS library slow the calls of the other. The kernels are ``nogil`` so the blocks run in
parallel. Measured on the shared 2-core machine, idle: an LSTM(128) training pass at batch 64 took
15.5 ms in one block, 9.0 ms in two.

Kernel variants (``_Variants``): each kernel exists as a "std" variant (sigmoid gates and tanh, closed
forms inline) and a generic one; each is compiled on first use only.

Speed notes: ``error_model="numpy"`` (no ZeroDivisionError branch) and loops that index with loop
counters only (4D views instead of signed offsets, whose wraparound checks block LLVM) are what
makes the gate loops vectorise; loops that touch many arrays are split in small ones to stay under
LLVM's runtime alias-check limit. Compile time: no array-to-slice assignment in a kernel (Numba's
shape-mismatch message for it compiles string formatting, ~2-4 s) and no helper called with
constant arguments (each distinct constant is compiled as its own specialisation).

Masks (Keras 3): at a masked step the states are carried unchanged and the output repeats the
previous output (zeros before the first valid step, or always zeros with ``zero_masked``).

Activations are passed as integer codes (``recurrent_code`` in the registry, layerforge/activations.py); their
derivatives are taken from the activation's output. ``fast`` (float32 only) swaps tanh/sigmoid
for a rational approximation accurate to a few float32 ulps that LLVM vectorises.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..activations import LEAKY_SLOPE, RECURRENT_CODES, SELU_ALPHA, SELU_SCALE
from .blocks import blas_controllers, run_blocks  # noqa: F401 - the recurrent layers (layers/recurrent/) call them as K.*

# activation codes and constants from the activation registry (layerforge/activations.py: recurrent_code)
LINEAR, TANH, SIGMOID, HARD_SIGMOID, HARD_SIGMOID_K1, RELU, RELU6, ELU, SELU, SOFTPLUS, SOFTSIGN, \
    EXPONENTIAL, LEAKY_RELU = (RECURRENT_CODES[n] for n in (
        "linear", "tanh", "sigmoid", "hard_sigmoid", "hard_sigmoid_keras1", "relu", "relu6", "elu", "selu",
        "softplus", "softsign", "exponential", "leaky_relu"))

_SELU_ALPHA = SELU_ALPHA
_SELU_SCALE = SELU_SCALE
_LEAKY = LEAKY_SLOPE


_F = np.float32
# error_model="numpy": no ZeroDivisionError branch in the loops, so LLVM vectorises them.
# nogil: the blocks of a batch run in parallel threads (run_blocks).
_OPTS = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract", "arcp"}}


# ======================================================================================== threads

# ======================================================================================== GEMM of the time loops

# The per-step products run through a BLAS ?gemm called by address (``_gemm``): the one of the newest OpenBLAS
# among the loaded libraries whose symbol names fix the integer width (numpy's bundled ``scipy_cblas_?gemm64_``,
# ILP64), else the Fortran ?gemm of ``scipy.linalg.cython_blas`` (what Numba's np.dot calls). Measured here: numpy's
# OpenBLAS 0.3.31 ran the LSTM's per-step products 8-25 % faster than scipy's 0.3.30 (the larger gain at 32 rows,
# the size of a thread's block).
GEMM_FORTRAN, GEMM_CBLAS64, GEMM_CBLAS32 = 0, 1, 2
_gemm_cache: dict = {}
_gemm_arch: dict = {}  # address -> OpenBLAS kernel architecture (lower case) as threadpoolctl reports it


def gemm_for(dtype) -> tuple[int, int]:
    """(address, kind) of the ?gemm for float32/float64 arrays that the kernels call (found once per dtype)."""
    dtype = np.dtype(dtype)
    key = dtype.char
    found = _gemm_cache.get(key)
    if found is None:
        found = _find_gemm(dtype)
        _gemm_cache[key] = found
    return found


def _find_gemm(dtype) -> tuple[int, int]:
    found = gemm_candidates(dtype)
    if len(found) > 1:
        return max(found[1:], key=lambda c: c[2])[:2]
    return found[0][:2] if found else gemm_candidates(dtype)[0][:2]


def gemm_candidates(dtype) -> list[tuple[int, int, tuple]]:
    """Every usable ?gemm as (address, kind, OpenBLAS version): scipy's Fortran one first, then the CBLAS ones of
    the loaded OpenBLAS libraries whose symbol names fix the integer width."""
    import ctypes

    from numba.extending import get_cython_function_address

    p = "s" if np.dtype(dtype) == np.float32 else "d"
    out = [(get_cython_function_address("scipy.linalg.cython_blas", p + "gemm"), GEMM_FORTRAN, ())]
    try:
        from threadpoolctl import threadpool_info

        infos = [d for d in threadpool_info() if d.get("user_api") == "blas" and d.get("internal_api") == "openblas"]
    except Exception:  # noqa: BLE001 - threadpoolctl missing: scipy's only
        infos = []
    for info in infos:
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        version = tuple(int(v) if v.isdigit() else 0 for v in str(info.get("version") or "0").split("."))
        for name, kind in ((f"scipy_cblas_{p}gemm64_", GEMM_CBLAS64), (f"cblas_{p}gemm64_", GEMM_CBLAS64),
                           (f"scipy_cblas_{p}gemm", GEMM_CBLAS32)):
            fn = getattr(lib, name, None)
            if fn is not None:
                address = ctypes.cast(fn, ctypes.c_void_p).value
                _gemm_arch[address] = str(info.get("architecture") or "").lower()
                out.append((address, kind, version))
                break
    return out


@intrinsic
def _gemm(typingctx, fn, kind, a, b, c):
    """c = a @ b for 2D float arrays with contiguous rows, through the ?gemm at address ``fn`` (see gemm_for)."""
    arrays = (a, b, c)
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in arrays):
        return None
    if not (a.dtype == b.dtype == c.dtype) or a.dtype not in (types.float32, types.float64):
        return None
    sig = types.void(fn, kind, a, b, c)

    def codegen(context, builder, signature, args):
        fl = ir.FloatType() if signature.args[2].dtype == types.float32 else ir.DoubleType()
        fp = fl.as_pointer()
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        A, B, C = (context.make_array(t)(context, builder, v) for t, v in zip(signature.args[2:], args[2:]))
        item = ir.Constant(i64, context.get_abi_sizeof(fl))
        m = builder.extract_value(A.shape, 0)
        k = builder.extract_value(A.shape, 1)
        n = builder.extract_value(B.shape, 1)
        one = ir.Constant(i64, 1)

        def ld(arr, cols):  # leading dimension: the row stride in elements, at least max(1, cols)
            v = builder.sdiv(builder.extract_value(arr.strides, 0), item)
            v = builder.select(builder.icmp_signed(">", v, cols), v, cols)
            return builder.select(builder.icmp_signed(">", v, one), v, one)

        lda, ldb, ldc = ld(A, k), ld(B, n), ld(C, n)
        alpha, beta = ir.Constant(fl, 1.0), ir.Constant(fl, 0.0)
        ptr = builder.inttoptr
        kind_v = args[1]
        with builder.if_else(builder.icmp_signed("==", kind_v, ir.Constant(kind_v.type, GEMM_FORTRAN))) as (fort, cb):
            with fort:  # column-major: C^T = B^T A^T -> ?gemm("N", "N", n, m, k, 1, B, ldb, A, lda, 0, C, ldc)
                i32p, fpp, i8p = i32.as_pointer(), fp, i8.as_pointer()
                fnty = ir.FunctionType(ir.VoidType(), [i8p, i8p, i32p, i32p, i32p, fpp, fp, i32p, fp, i32p, fpp, fp,
                                                       i32p])
                nchar = cgutils.alloca_once_value(builder, ir.Constant(i8, ord("N")))

                def i32slot(v):
                    return cgutils.alloca_once_value(builder, builder.trunc(v, i32))

                builder.call(ptr(args[0], fnty.as_pointer()),
                             [nchar, nchar, i32slot(n), i32slot(m), i32slot(k),
                              cgutils.alloca_once_value(builder, alpha), B.data, i32slot(ldb), A.data, i32slot(lda),
                              cgutils.alloca_once_value(builder, beta), C.data, i32slot(ldc)])
            with cb:  # CBLAS row-major (101), no transposes (111)
                is64 = builder.icmp_signed("==", kind_v, ir.Constant(kind_v.type, GEMM_CBLAS64))
                with builder.if_else(is64) as (w64, w32):
                    for block, it in ((w64, i64), (w32, i32)):
                        with block:
                            fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, it, it, it, fl, fp, it, fp, it, fl,
                                                                   fp, it])

                            def cast(v, it=it):
                                return v if it is i64 else builder.trunc(v, i32)

                            builder.call(ptr(args[0], fnty.as_pointer()),
                                         [ir.Constant(i32, 101), ir.Constant(i32, 111), ir.Constant(i32, 111),
                                          cast(m), cast(n), cast(k), alpha, A.data, cast(lda), B.data, cast(ldb), beta,
                                          C.data, cast(ldc)])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", **_OPTS)
def _gemm_cols(gfn, gkind, a, bc, c):
    """c = a @ b, with b given as its column blocks ``bc`` (nc, K, n), each contiguous (see ``gemm_blocks``)."""
    n = bc.shape[2]
    for q in range(bc.shape[0]):
        _gemm(gfn, gkind, a, bc[q], c[:, q * n:(q + 1) * n])


# OpenBLAS's AVX-512 builds (SkylakeX, Cooperlake, SapphireRapids kernels) run a row-major, untransposed
# cblas_sgemm with alpha 1 and beta 0 through a "direct" kernel without packing when it is small enough; that
# kernel reads B in place, so B in contiguous column blocks of about 48 KB (L1) that it reuses across the rows
# runs the per-step products much faster (measured here, one thread: 64x161 @ 161x512 in 64-column blocks 55 us
# against 76 us whole; 32 rows 28 against 42 us; 32x512 @ 512x128 in 32-column blocks 27 against 42 us).
_DIRECT_ARCHS = ("skylakex", "cooperlake", "sapphirerapids")


def block_width(rows: int, k: int, n: int, dtype) -> int:
    """Column-block width for a (rows, k) @ (k, n) per-step product: n itself (one block) unless the BLAS has the
    direct sgemm kernel (float32, CBLAS, an AVX-512 OpenBLAS kernel), then blocks of ~48 KB of B."""
    address, kind = gemm_for(dtype)
    if np.dtype(dtype) != np.float32 or kind == GEMM_FORTRAN or _gemm_arch.get(address) not in _DIRECT_ARCHS:
        return n
    w = 1 << (max(1, 12288 // max(k, 1)).bit_length() - 1)  # largest power of two with k*w*4 <= 48 KB
    if w < 32:
        w = 32 if rows <= 32 else n  # narrower blocks lose more than they gain (measured), except for few rows
    return w if w < n and n % w == 0 else n


def gemm_blocks(W, rows: int) -> np.ndarray:
    """W (k, n) as the contiguous column blocks (nc, k, w) the kernels' per-step products take (``block_width``)."""
    k, n = W.shape
    w = block_width(rows, k, n, W.dtype)
    return np.ascontiguousarray(W.reshape(k, n // w, w).transpose(1, 0, 2))


# ======================================================================================== activations

@njit(inline="always", **_OPTS)
def _tanh_fast(x):
    # Rational approximation of tanh (float32 accuracy) clamped to +-7.905; pure arithmetic: vectorisable.
    x = min(max(x, _F(-7.90531110763549805)), _F(7.90531110763549805))
    x2 = x * x
    p = x2 * _F(-2.76076847742355e-16) + _F(2.00018790482477e-13)
    p = x2 * p + _F(-8.60467152213735e-11)
    p = x2 * p + _F(5.12229709037114e-08)
    p = x2 * p + _F(1.48572235717979e-05)
    p = x2 * p + _F(6.37261928875436e-04)
    p = x2 * p + _F(4.89352455891786e-03)
    p = x * p
    q = x2 * _F(1.19825839466702e-06) + _F(1.18534705686654e-04)
    q = x2 * q + _F(2.26843463243900e-03)
    q = x2 * q + _F(4.89352518554385e-03)
    return min(max(p / q, _F(-1.0)), _F(1.0))


@njit(inline="always", **_OPTS)
def _sigmoid_fast(x):
    return _F(0.5) * _tanh_fast(_F(0.5) * x) + _F(0.5)


@njit(inline="always", **_OPTS)
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(**_OPTS)
def _act1(code, x, fast):
    """One activation value (the generic path; the branch on ``code`` is loop-invariant)."""
    if code == TANH:
        return _tanh_fast(x) if fast else math.tanh(x)
    if code == SIGMOID:
        return _sigmoid_fast(x) if fast else _sigmoid(x)
    if code == LINEAR:
        return x
    if code == HARD_SIGMOID:
        return min(max(x / 6.0 + 0.5, 0.0), 1.0)
    if code == HARD_SIGMOID_K1:
        return min(max(0.2 * x + 0.5, 0.0), 1.0)
    if code == RELU:
        return max(x, 0.0)
    if code == RELU6:
        return min(max(x, 0.0), 6.0)
    if code == ELU:
        return x if x > 0 else math.expm1(x)
    if code == SELU:
        return _SELU_SCALE * x if x > 0 else _SELU_SCALE * _SELU_ALPHA * math.expm1(x)
    if code == SOFTPLUS:
        return math.log1p(math.exp(-abs(x))) + max(x, 0.0)
    if code == SOFTSIGN:
        return x / (1.0 + abs(x))
    if code == EXPONENTIAL:
        return math.exp(x)
    return x if x >= 0 else _LEAKY * x


@njit(**_OPTS)
def _act_vec(code, w, fast):
    """Activation ``code`` in place on the contiguous 1D array ``w`` (tanh/sigmoid fast paths vectorise)."""
    n = w.shape[0]
    if code == LINEAR:
        return
    if code == TANH and fast:
        for k in range(n):
            w[k] = _tanh_fast(w[k])
    elif code == SIGMOID and fast:
        for k in range(n):
            w[k] = _sigmoid_fast(w[k])
    else:
        for k in range(n):
            w[k] = _act1(code, w[k], fast)


@njit(**_OPTS)
def _gate_act(code, src, dst, fast):
    """dst[:] = activation(src) for two contiguous 1D arrays of the same length."""
    n = src.shape[0]
    if code == TANH and fast:
        for j in range(n):
            dst[j] = _tanh_fast(src[j])
    elif code == SIGMOID and fast:
        for j in range(n):
            dst[j] = _sigmoid_fast(src[j])
    else:
        for j in range(n):
            dst[j] = _act1(code, src[j], fast)


@njit(inline="always", **_OPTS)
def _tanh_vec(w):
    """tanh in place on a contiguous 1D float32 array (the fast approximation; vectorises)."""
    for k in range(w.shape[0]):
        w[k] = _tanh_fast(w[k])


@njit(inline="always", **_OPTS)
def _sigmoid_vec(w):
    """sigmoid in place on a contiguous 1D float32 array (the fast approximation; vectorises)."""
    for k in range(w.shape[0]):
        w[k] = _sigmoid_fast(w[k])


@njit(**_OPTS)
def _dact(code, y):
    """Derivative of activation ``code`` expressed through its output ``y``."""
    if code == TANH:
        return 1.0 - y * y
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == LINEAR:
        return 1.0
    if code == HARD_SIGMOID:
        return 1.0 / 6.0 if 0.0 < y < 1.0 else 0.0
    if code == HARD_SIGMOID_K1:
        return 0.2 if 0.0 < y < 1.0 else 0.0
    if code == RELU:
        return 1.0 if y > 0 else 0.0
    if code == RELU6:
        return 1.0 if 0.0 < y < 6.0 else 0.0
    if code == ELU:
        return 1.0 if y > 0 else y + 1.0
    if code == SELU:
        return _SELU_SCALE if y > 0 else y + _SELU_SCALE * _SELU_ALPHA
    if code == SOFTPLUS:
        return -math.expm1(-y)
    if code == SOFTSIGN:
        a = 1.0 - abs(y)
        return a * a
    if code == EXPONENTIAL:
        return y
    if code == LEAKY_RELU:
        return 1.0 if y >= 0 else _LEAKY
    return 1.0


# ======================================================================================== shared step pieces

@njit(inline="always", **_OPTS)
def _copy_rows(src, dst):
    """dst[:, :] = src for two (B, u) arrays (a loop: slice assignment compiles a string-formatting error path)."""
    B, u = dst.shape
    for b in range(B):
        for j in range(u):
            dst[b, j] = src[b, j]


@njit(inline="always", **_OPTS)
def _masked_output(Y, t, b, u, zero_masked):
    for j in range(u):
        Y[t, b, j] = 0.0 if (zero_masked or t == 0) else Y[t - 1, b, j]


@njit(inline="always", **_OPTS)
def _recurrent_input(Hs, t, rmask, use_rmask, hd):
    """h_{t-1} as the recurrent GEMM sees it (times the recurrent dropout mask)."""
    if not use_rmask:
        return Hs[t]
    B, u = hd.shape
    for b in range(B):
        for j in range(u):
            hd[b, j] = Hs[t, b, j] * rmask[b, j]
    return hd


@njit(inline="always", **_OPTS)
def _pass_masked(dYr, car, zero_masked):
    """Backward through a masked step: its output was the previous output (or zeros)."""
    for j in range(dYr.shape[0]):
        car[j] = 0.0 if zero_masked else dYr[j] + car[j]


@njit(inline="always", **_OPTS)
def _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, direct, use_direct):
    """dh_{t-1} = (dgates @ U^T) * recurrent-dropout mask (+ the direct path); masked samples keep dh."""
    B, u = dh.shape
    for b in range(B):
        if (not use_mask) or mask[t, b]:
            dhr = dh[b]
            drr = drec[b]
            if use_rmask:
                rmr = rmask[b]
                for j in range(u):
                    dhr[j] = drr[j] * rmr[j]
            else:
                for j in range(u):
                    dhr[j] = drr[j]
            if use_direct:
                dir_ = direct[b]
                for j in range(u):
                    dhr[j] += dir_[j]


@njit(inline="always", **_OPTS)
def _emit(Y, Hs, t, b, mask, use_mask, zero_masked, extra, use_extra):
    """Mask bookkeeping after a step: masked samples keep their states and repeat the previous output."""
    if not use_mask:
        return
    hn = Hs[t + 1, b]
    u = hn.shape[0]
    if mask[t, b]:
        yr = Y[t, b]
        for j in range(u):
            yr[j] = hn[j]
    else:
        hp = Hs[t, b]
        for j in range(u):
            hn[j] = hp[j]
        if use_extra:
            en = extra[t + 1, b]
            ep = extra[t, b]
            for j in range(u):
                en[j] = ep[j]
        _masked_output(Y, t, b, u, zero_masked)


# ======================================================================================== variants

class _Variants:
    """A kernel compiled in two variants, chosen by the first argument of a call: ``std`` True for the usual
    activations (sigmoid gates and tanh; the forward kernels only in float32, with the fast approximations) whose
    closed forms are written inline, False for any other. ``std`` is a constant of each variant (a closure
    variable), so Numba prunes the other branch before typing and the generic activation code (``_act_vec``,
    ``_act1``, ``_dact``, ~1-2 s of compile per kernel) is compiled only when a layer uses other activations. Each
    variant is made and cached on its first use."""

    def __init__(self, make):
        self._make = make
        self._kernels = {}

    def __call__(self, std, *args):
        kernel = self._kernels.get(std)
        if kernel is None:
            kernel = self._kernels[bool(std)] = self._make(bool(std))
        return kernel(*args)


# ======================================================================================== SimpleRNN

def _make_simple_forward(std):
    @njit(**_OPTS)
    def simple_forward(gfn, gkind, U, h0, mask, use_mask, rmask, use_rmask, act, zero_masked, fast, Hs, Y):
        """Hs (T+1,B,u): on entry Hs[1:] holds the input projection (with bias); on exit the states.
        Y (T,B,u) outputs (masks only)."""
        T1, B, u = Hs.shape
        T = T1 - 1
        _copy_rows(h0, Hs[0])
        rec = np.empty((B, u), Hs.dtype)
        hd = np.empty((B, u), Hs.dtype)
        for t in range(T):
            _gemm_cols(gfn, gkind, _recurrent_input(Hs, t, rmask, use_rmask, hd), U, rec)
            for b in range(B):
                hn = Hs[t + 1, b]
                rr = rec[b]
                for j in range(u):
                    hn[j] += rr[j]
                if std:
                    _tanh_vec(hn)
                else:
                    _act_vec(act, hn, fast)
                _emit(Y, Hs, t, b, mask, use_mask, zero_masked, Hs, False)
    return simple_forward


simple_forward = _Variants(_make_simple_forward)


def _make_simple_backward(std):
    @njit(**_OPTS)
    def simple_backward(gfn, gkind, dY, dh_last, carry0, Hs, UT, mask, use_mask, rmask, use_rmask, act, zero_masked,
                        dG):
        """dG (T,B,u) receives d(pre-activation) of every step."""
        T, B, u = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
        dh = dh_last.copy()
        carry = carry0.copy()
        drec = np.empty((B, u), dY.dtype)
        for t in range(T - 1, -1, -1):
            td = t if dY.shape[0] == T else 0  # dY (1,B,u) of zeros when only the last output has a gradient
            for b in range(B):
                d = dG[t, b]
                dYr = dY[td, b]
                car = carry[b]
                if (not use_mask) or mask[t, b]:
                    dhr = dh[b]
                    hr = Hs[t + 1, b]
                    if std:
                        for j in range(u):
                            y = hr[j]
                            d[j] = (dhr[j] + dYr[j] + car[j]) * (_F(1.0) - y * y)
                            car[j] = 0.0
                    else:
                        for j in range(u):
                            d[j] = (dhr[j] + dYr[j] + car[j]) * _dact(act, hr[j])
                            car[j] = 0.0
                else:
                    _pass_masked(dYr, car, zero_masked)
                    for j in range(u):
                        d[j] = 0.0
            if t > 0:  # the gradient of the initial state is not needed: skip the last GEMM
                _gemm_cols(gfn, gkind, dG[t], UT, drec)
                _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, drec, False)
    return simple_backward


simple_backward = _Variants(_make_simple_backward)


# ======================================================================================== LSTM

def _make_lstm_forward(std):
    @njit(**_OPTS)
    def lstm_forward(gfn, gkind, XH, WU, x0, h0, c0, mask, use_mask, rmask, use_rmask, ract, act, zero_masked, fast,
                     G, Hs, Cs, TC, Y):
        """Gate blocks i|f|c|o. XH (T,B,K): columns [x0:x0+u] are filled here with h_{t-1} (times the recurrent
        dropout mask), the others hold the inputs (and a ones column for the bias), so one GEMM per step
        ``XH[t] @ WU`` (WU: the matching rows of kernel, recurrent_kernel and bias) gives every pre-activation, and
        the weight gradients are one GEMM over all steps afterwards. G (T,B,4u) gate activations (or (1,B,4u): not
        kept, inference); Hs/Cs (T+1,B,u); TC (T,B,u) act(c_t) (or (1,B,u) with G); Y (T,B,u) outputs (masks only).
        The gate loops index 4D views with loop counters only (no signed offsets) so LLVM vectorises them."""
        T = XH.shape[0]
        B, G4 = G.shape[1], G.shape[2]
        u = G4 // 4
        Gq = G.reshape(G.shape[0], B, 4, u)
        keep = G.shape[0] == T  # else one step's gates are overwritten at every step (nothing kept for backward)
        _copy_rows(h0, Hs[0])
        _copy_rows(c0, Cs[0])
        rec = np.empty((B, G4), G.dtype)
        recq = rec.reshape(B, 4, u)
        for b in range(B):
            if T > 0:
                xh = XH[0, b, x0:x0 + u]
                for j in range(u):
                    xh[j] = h0[b, j] * rmask[b, j] if use_rmask else h0[b, j]
        for t in range(T):
            _gemm_cols(gfn, gkind, XH[t], WU, rec)
            tg = t if keep else 0
            for b in range(B):
                if std:
                    for j in range(u):
                        Gq[tg, b, 0, j] = _sigmoid_fast(recq[b, 0, j])
                    for j in range(u):
                        Gq[tg, b, 1, j] = _sigmoid_fast(recq[b, 1, j])
                    for j in range(u):
                        Gq[tg, b, 2, j] = _tanh_fast(recq[b, 2, j])
                    for j in range(u):
                        Gq[tg, b, 3, j] = _sigmoid_fast(recq[b, 3, j])
                    for j in range(u):
                        Cs[t + 1, b, j] = Gq[tg, b, 1, j] * Cs[t, b, j] + Gq[tg, b, 0, j] * Gq[tg, b, 2, j]
                    for j in range(u):
                        TC[tg, b, j] = _tanh_fast(Cs[t + 1, b, j])
                else:
                    for k in range(4):
                        _gate_act(act if k == 2 else ract, recq[b, k], Gq[tg, b, k], fast)
                    for j in range(u):
                        Cs[t + 1, b, j] = Gq[tg, b, 1, j] * Cs[t, b, j] + Gq[tg, b, 0, j] * Gq[tg, b, 2, j]
                    _gate_act(act, Cs[t + 1, b], TC[tg, b], fast)
                for j in range(u):
                    Hs[t + 1, b, j] = Gq[tg, b, 3, j] * TC[tg, b, j]
                _emit(Y, Hs, t, b, mask, use_mask, zero_masked, Cs, True)
                if t + 1 < T:
                    xh = XH[t + 1, b, x0:x0 + u]
                    if use_rmask:
                        for j in range(u):
                            xh[j] = Hs[t + 1, b, j] * rmask[b, j]
                    else:
                        for j in range(u):
                            xh[j] = Hs[t + 1, b, j]
    return lstm_forward


lstm_forward = _Variants(_make_lstm_forward)


def _make_lstm_backward(std):
    @njit(**_OPTS)
    def lstm_backward(gfn, gkind, dY, dh_last, dc_last, carry0, G, Cs, TC, UT, mask, use_mask, rmask, use_rmask, ract,
                      act, zero_masked, dG):
        """dG (T,B,4u) receives d(gate pre-activations)."""
        T, B, G4 = G.shape
        u = G4 // 4
        Gq = G.reshape(T, B, 4, u)
        dGq = dG.reshape(T, B, 4, u)
        dh = dh_last.copy()
        dc = dc_last.copy()
        carry = carry0.copy()
        drec = np.empty((B, u), G.dtype)
        dht = np.empty((B, u), G.dtype)
        for t in range(T - 1, -1, -1):
            td = t if dY.shape[0] == T else 0  # dY (1,B,u) of zeros when only the last output has a gradient
            for b in range(B):
                if (not use_mask) or mask[t, b]:
                    for j in range(u):
                        dht[b, j] = dh[b, j] + dY[td, b, j] + carry[b, j]
                    if use_mask:
                        for j in range(u):
                            carry[b, j] = 0.0
                    if std:
                        for j in range(u):
                            o = Gq[t, b, 3, j]
                            dGq[t, b, 3, j] = dht[b, j] * TC[t, b, j] * (o - o * o)
                        for j in range(u):
                            tc = TC[t, b, j]
                            dc[b, j] += dht[b, j] * Gq[t, b, 3, j] * (_F(1.0) - tc * tc)
                        for j in range(u):
                            i = Gq[t, b, 0, j]
                            dGq[t, b, 0, j] = dc[b, j] * Gq[t, b, 2, j] * (i - i * i)
                        for j in range(u):
                            f = Gq[t, b, 1, j]
                            dGq[t, b, 1, j] = dc[b, j] * Cs[t, b, j] * (f - f * f)
                        for j in range(u):
                            c = Gq[t, b, 2, j]
                            dGq[t, b, 2, j] = dc[b, j] * Gq[t, b, 0, j] * (_F(1.0) - c * c)
                        for j in range(u):
                            dc[b, j] *= Gq[t, b, 1, j]
                    else:
                        for j in range(u):
                            o = Gq[t, b, 3, j]
                            tc = TC[t, b, j]
                            i = Gq[t, b, 0, j]
                            f = Gq[t, b, 1, j]
                            c = Gq[t, b, 2, j]
                            d = dht[b, j]
                            dGq[t, b, 3, j] = d * tc * _dact(ract, o)
                            dct = dc[b, j] + d * o * _dact(act, tc)
                            dGq[t, b, 0, j] = dct * c * _dact(ract, i)
                            dGq[t, b, 1, j] = dct * Cs[t, b, j] * _dact(ract, f)
                            dGq[t, b, 2, j] = dct * i * _dact(act, c)
                            dc[b, j] = dct * f
                else:
                    _pass_masked(dY[td, b], carry[b], zero_masked)
                    for k in range(4):
                        for j in range(u):
                            dGq[t, b, k, j] = 0.0
            if t > 0:  # the gradient of the initial state is not needed: skip the last GEMM
                _gemm_cols(gfn, gkind, dG[t], UT, drec)
                _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, drec, False)
    return lstm_backward


lstm_backward = _Variants(_make_lstm_backward)


# ======================================================================================== GRU

def _make_gru_forward_after(std):
    @njit(**_OPTS)
    def gru_forward_after(gfn, gkind, U, brec, h0, mask, use_mask, rmask, use_rmask, ract, act, zero_masked, fast, G,
                          RH, Hs, Y):
        """reset_after=True (Keras 3). Blocks z|r|h. G (T,B,3u): on entry the input projection (with the input
        bias), on exit z, r, hh; RH (T,B,u) = h_{t-1} @ U_h + b_h."""
        T, B, G3 = G.shape
        u = G3 // 3
        _copy_rows(h0, Hs[0])
        rec = np.empty((B, G3), G.dtype)
        hd = np.empty((B, u), G.dtype)
        b_h = brec[2 * u:]
        for t in range(T):
            _gemm_cols(gfn, gkind, _recurrent_input(Hs, t, rmask, use_rmask, hd), U, rec)
            for b in range(B):
                g = G[t, b]
                rr = rec[b]
                for k in range(2 * u):
                    g[k] += rr[k] + brec[k]
                if std:
                    _sigmoid_vec(g[:2 * u])
                else:
                    _act_vec(ract, g[:2 * u], fast)
                gr = g[u:2 * u]
                gh = g[2 * u:]
                rrh = rr[2 * u:]
                rh = RH[t, b]
                for j in range(u):
                    rh[j] = rrh[j] + b_h[j]
                for j in range(u):
                    gh[j] += gr[j] * rh[j]
                if std:
                    _tanh_vec(gh)
                else:
                    _act_vec(act, gh, fast)
                hp = Hs[t, b]
                hn = Hs[t + 1, b]
                for j in range(u):
                    z = g[j]
                    hn[j] = z * hp[j] + (_F(1.0) - z) * gh[j]
                _emit(Y, Hs, t, b, mask, use_mask, zero_masked, Hs, False)
    return gru_forward_after


gru_forward_after = _Variants(_make_gru_forward_after)


def _make_gru_backward_after(std):
    @njit(**_OPTS)
    def gru_backward_after(gfn, gkind, dY, dh_last, carry0, G, RH, Hs, UT, mask, use_mask, rmask, use_rmask, ract, act,
                           zero_masked, dX, dR):
        """dX (T,B,3u) = d(input pre-activations); dR (T,B,3u) = d(recurrent pre-activations)."""
        T, B, G3 = G.shape
        u = G3 // 3
        Gq = G.reshape(T, B, 3, u)
        dXq = dX.reshape(T, B, 3, u)
        dRq = dR.reshape(T, B, 3, u)
        dh = dh_last.copy()
        carry = carry0.copy()
        drec = np.empty((B, u), G.dtype)
        direct = np.empty((B, u), G.dtype)  # dh_{t-1} through z * h_{t-1}
        dht = np.empty((B, u), G.dtype)
        for t in range(T - 1, -1, -1):
            td = t if dY.shape[0] == T else 0  # dY (1,B,u) of zeros when only the last output has a gradient
            for b in range(B):
                if (not use_mask) or mask[t, b]:
                    for j in range(u):
                        dht[b, j] = dh[b, j] + dY[td, b, j] + carry[b, j]
                    if use_mask:
                        for j in range(u):
                            carry[b, j] = 0.0
                    if std:
                        for j in range(u):
                            z = Gq[t, b, 0, j]
                            dXq[t, b, 0, j] = dht[b, j] * (Hs[t, b, j] - Gq[t, b, 2, j]) * (z - z * z)
                        for j in range(u):
                            hh = Gq[t, b, 2, j]
                            dXq[t, b, 2, j] = dht[b, j] * (_F(1.0) - Gq[t, b, 0, j]) * (_F(1.0) - hh * hh)
                        for j in range(u):
                            r = Gq[t, b, 1, j]
                            dXq[t, b, 1, j] = dXq[t, b, 2, j] * RH[t, b, j] * (r - r * r)
                    else:
                        for j in range(u):
                            z = Gq[t, b, 0, j]
                            hh = Gq[t, b, 2, j]
                            dXq[t, b, 0, j] = dht[b, j] * (Hs[t, b, j] - hh) * _dact(ract, z)
                            dah = dht[b, j] * (_F(1.0) - z) * _dact(act, hh)
                            dXq[t, b, 2, j] = dah
                            dXq[t, b, 1, j] = dah * RH[t, b, j] * _dact(ract, Gq[t, b, 1, j])
                    for k in range(2):
                        for j in range(u):
                            dRq[t, b, k, j] = dXq[t, b, k, j]
                    for j in range(u):
                        dRq[t, b, 2, j] = dXq[t, b, 2, j] * Gq[t, b, 1, j]
                    for j in range(u):
                        direct[b, j] = dht[b, j] * Gq[t, b, 0, j]
                else:
                    _pass_masked(dY[td, b], carry[b], zero_masked)
                    for k in range(3):
                        for j in range(u):
                            dXq[t, b, k, j] = 0.0
                            dRq[t, b, k, j] = 0.0
            if t > 0:  # the gradient of the initial state is not needed: skip the last GEMM
                _gemm_cols(gfn, gkind, dR[t], UT, drec)
                _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, direct, True)
    return gru_backward_after


gru_backward_after = _Variants(_make_gru_backward_after)


def _make_gru_forward_before(std):
    @njit(**_OPTS)
    def gru_forward_before(gfn, gkind, Uzr, Uh, h0, mask, use_mask, rmask, use_rmask, ract, act, zero_masked, fast, G,
                           RHD, Hs, Y):
        """reset_after=False (Keras 1). G (T,B,3u): on entry the input projection (with bias), on exit z, r, hh;
        RHD (T,B,u) = r * h_{t-1} (after dropout)."""
        T, B, G3 = G.shape
        u = G3 // 3
        _copy_rows(h0, Hs[0])
        rec = np.empty((B, 2 * u), G.dtype)
        rech = np.empty((B, u), G.dtype)
        hd = np.empty((B, u), G.dtype)
        for t in range(T):
            hin = _recurrent_input(Hs, t, rmask, use_rmask, hd)
            _gemm_cols(gfn, gkind, hin, Uzr, rec)
            for b in range(B):
                g = G[t, b]
                rr = rec[b]
                for k in range(2 * u):
                    g[k] += rr[k]
                if std:
                    _sigmoid_vec(g[:2 * u])
                else:
                    _act_vec(ract, g[:2 * u], fast)
                gr = g[u:2 * u]
                rhd = RHD[t, b]
                hr = hin[b]
                for j in range(u):
                    rhd[j] = gr[j] * hr[j]
            _gemm_cols(gfn, gkind, RHD[t], Uh, rech)
            for b in range(B):
                g = G[t, b]
                gh = g[2 * u:]
                rch = rech[b]
                for j in range(u):
                    gh[j] += rch[j]
                if std:
                    _tanh_vec(gh)
                else:
                    _act_vec(act, gh, fast)
                hp = Hs[t, b]
                hn = Hs[t + 1, b]
                for j in range(u):
                    z = g[j]
                    hn[j] = z * hp[j] + (_F(1.0) - z) * gh[j]
                _emit(Y, Hs, t, b, mask, use_mask, zero_masked, Hs, False)
    return gru_forward_before


gru_forward_before = _Variants(_make_gru_forward_before)


def _make_gru_backward_before(std):
    @njit(**_OPTS)
    def gru_backward_before(gfn, gkind, dY, dh_last, carry0, G, Hs, UzrT, UhT, mask, use_mask, rmask, use_rmask, ract,
                            act, zero_masked, dX):
        """dX (T,B,3u) = d(pre-activations) [dz, dr, dh~]."""
        T, B, G3 = G.shape
        u = G3 // 3
        dh = dh_last.copy()
        carry = carry0.copy()
        drh = np.empty((B, u), G.dtype)
        drec = np.empty((B, u), G.dtype)
        direct = np.empty((B, u), G.dtype)
        dxh = np.empty((B, u), G.dtype)
        dzr = np.empty((B, 2 * u), G.dtype)
        for t in range(T - 1, -1, -1):
            td = t if dY.shape[0] == T else 0  # dY (1,B,u) of zeros when only the last output has a gradient
            for b in range(B):
                g = G[t, b]
                dx = dX[t, b]
                dYr = dY[td, b]
                car = carry[b]
                if (not use_mask) or mask[t, b]:
                    hp = Hs[t, b]
                    dhr = dh[b]
                    for j in range(u):
                        dht = dhr[j] + dYr[j] + car[j]
                        car[j] = 0.0
                        z = g[j]
                        hh = g[2 * u + j]
                        if std:
                            dx[j] = dht * (hp[j] - hh) * (z - z * z)
                            dah = dht * (_F(1.0) - z) * (_F(1.0) - hh * hh)
                        else:
                            dx[j] = dht * (hp[j] - hh) * _dact(ract, z)
                            dah = dht * (_F(1.0) - z) * _dact(act, hh)
                        dx[2 * u + j] = dah
                        dxh[b, j] = dah
                        direct[b, j] = dht * z
                else:
                    _pass_masked(dYr, car, zero_masked)
                    for j in range(u):
                        dxh[b, j] = 0.0
                    for k in range(G3):
                        dx[k] = 0.0
            _gemm_cols(gfn, gkind, dxh, UhT, drh)  # d(r * h_{t-1})
            for b in range(B):
                dx = dX[t, b]
                if (not use_mask) or mask[t, b]:
                    g = G[t, b]
                    for j in range(u):
                        hin = Hs[t, b, j] * rmask[b, j] if use_rmask else Hs[t, b, j]
                        r = g[u + j]
                        if std:
                            dr = r - r * r
                        else:
                            dr = _dact(ract, r)
                        dx[u + j] = drh[b, j] * hin * dr
                for k in range(2 * u):
                    dzr[b, k] = dx[k]
            if t > 0:  # the gradient of the initial state is not needed: skip the last GEMM
                _gemm_cols(gfn, gkind, dzr, UzrT, drec)
                for b in range(B):
                    g = G[t, b]
                    for j in range(u):
                        drec[b, j] += drh[b, j] * g[u + j]
                _new_dh(dh, drec, mask, use_mask, t, rmask, use_rmask, direct, True)
    return gru_backward_before


gru_backward_before = _Variants(_make_gru_backward_before)


# ======================================================================================== helpers

@njit(**_OPTS)
def to_batch_major(x, reverse, out):
    """(T,B,F) -> (B,T,F), optionally reversing time."""
    T, B, F = x.shape
    for b in range(B):
        for t in range(T):
            src = T - 1 - t if reverse else t
            o = out[b, t]
            xr = x[src, b]
            for f in range(F):
                o[f] = xr[f]
