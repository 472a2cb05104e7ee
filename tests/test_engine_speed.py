"""The engine's fast paths give the plain results: Dense's fused epilogues against numpy, the packed optimizer
step against the per-parameter one (bit for bit), the packed weights of a compiled model."""

from __future__ import annotations

import numpy as np
import pytest

from layerforge.activations import activate, activate_backward
from layerforge.engine.optimizers import make_optimizer, packed_buffer
from layerforge.testing import build_layer

ACTIVATIONS = ["linear", "relu", "tanh", "sigmoid", "softmax"]


def _reference(x, kernel, bias, activation, dy):
    z = x @ kernel + (bias if bias is not None else 0)
    y = activate(activation, z)
    dz = activate_backward(activation, z, y, dy)
    x2, dz2 = x.reshape(-1, x.shape[-1]), dz.reshape(-1, dz.shape[-1])
    return y, dz @ kernel.T, x2.T @ dz2, dz2.sum(axis=0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", [(5,), (3, 5)])
def test_dense_fused_paths_match_numpy(activation, use_bias, dtype, rtol, shape):
    b = build_layer({"type": "Dense", "units": 4, "activation": activation, "use_bias": use_bias}, shape,
                    dtype=dtype, seed=1)
    layer, params = b.layer, b.params
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7,) + shape).astype(dtype)
    dy = rng.standard_normal((7,) + shape[:-1] + (4,)).astype(dtype)
    y, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, dy, cache)
    ry, rdx, rk, rb = _reference(x, params["kernel"], params.get("bias"), activation, dy)
    assert y.dtype == dtype and dx.dtype == dtype and grads["kernel"].dtype == dtype
    np.testing.assert_allclose(y, ry, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dx, rdx, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(grads["kernel"], rk, rtol=rtol, atol=rtol)
    if use_bias:
        np.testing.assert_allclose(grads["bias"], rb, rtol=rtol, atol=rtol)
    else:
        assert "bias" not in grads


def test_dense_keeps_nan_and_writes_into_engine_buffers():
    b = build_layer({"type": "Dense", "units": 3, "activation": "relu"}, (4,), dtype=np.float32, seed=0)
    layer, params = b.layer, b.params
    x = np.ones((2, 4), np.float32)
    x[0, 0] = np.nan
    y, cache = layer.forward(params, x)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    x[0, 0] = 1.0
    y, cache = layer.forward(params, x)
    out = {"kernel": np.full((4, 3), 7.0, np.float32), "bias": np.full(3, 7.0, np.float32)}
    dx, grads = layer.backward(params, np.ones((2, 3), np.float32), cache, need_dx=False, out=out)
    assert dx is None
    assert grads["kernel"] is out["kernel"] and grads["bias"] is out["bias"]
    dz = (y > 0).astype(np.float32)
    np.testing.assert_allclose(out["kernel"], x.T @ dz)
    np.testing.assert_allclose(out["bias"], dz.sum(axis=0))


SPECS = [{"type": "adam"}, {"type": "adam", "amsgrad": True}, {"type": "adamw"}, {"type": "sgd", "momentum": 0.9},
         {"type": "sgd", "momentum": 0.9, "nesterov": True}, {"type": "sgd"}, {"type": "rmsprop"},
         {"type": "rmsprop", "centered": True, "momentum": 0.5}, {"type": "adagrad"}, {"type": "adadelta"},
         {"type": "adamax"}, {"type": "nadam"}, {"type": "adam", "global_clipnorm": 0.5}]


@pytest.mark.parametrize("spec", SPECS, ids=[str(s) for s in SPECS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_step_equals_per_parameter_step(spec, dtype):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (2, 2, 3)]
    values = [rng.standard_normal(s).astype(dtype) for s in shapes]
    flat = np.concatenate([v.reshape(-1) for v in values])
    packed, off = [], 0
    for v in values:
        packed.append(flat[off:off + v.size].reshape(v.shape))
        off += v.size
    assert packed_buffer(packed) is flat and packed_buffer(values) is None
    separate = [v.copy() for v in values]
    a, b = make_optimizer(dict(spec)), make_optimizer(dict(spec))
    for step in range(4):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        a.step(packed, grads)
        b.step(separate, [g.copy() for g in grads])
        if step == 1:  # a state round trip in between leaves the packed path exact
            state = a.state_dict()
            a = make_optimizer(dict(spec))
            a.load_state_dict(state)
    for p, q in zip(packed, separate, strict=True):
        np.testing.assert_array_equal(p, q)
    for name in a.slot_names:
        for i in range(len(shapes)):
            np.testing.assert_array_equal(a.slot(name, i), b.slot(name, i))


def test_compiled_model_keeps_weights_packed():
    import layerforge

    model = layerforge.Model.from_yaml({"input_shape": [4], "layers": [
        {"type": "Dense", "units": 3, "activation": "relu"}, {"type": "Dense", "units": 2, "activation": "softmax"}],
        "training": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam"}}, seed=0)
    cm = model.compiled
    arrays = [cm.params[n][p] for n, p in cm.trainable_pairs()]
    assert packed_buffer(arrays) is cm.flat_params
    before = model.get_weights()
    model.set_weights(before)
    assert packed_buffer([cm.params[n][p] for n, p in cm.trainable_pairs()]) is cm.flat_params
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    y = np.arange(8) % 2
    model.fit(x, y, epochs=2, batch_size=4)
    after = model.get_weights()
    assert any(not np.array_equal(a, b) for k in before for a, b in zip(before[k], after[k], strict=True))
    assert packed_buffer([cm.params[n][p] for n, p in cm.trainable_pairs()]) is cm.flat_params


def test_import_sets_a_short_openblas_thread_timeout_unless_the_user_chose_one():
    import os
    import subprocess
    import sys

    code = "import layerforge, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OPENBLAS_THREAD_TIMEOUT": "20"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "20"


def test_parallel_kernels_from_two_threads_take_turns():
    # Numba's workqueue layer aborts the process when two threads launch parallel kernels at once; predict runs
    # batches on several threads, so every parallel kernel is wrapped in one lock (kernels.blocks). In a child
    # process, so that a regression fails this test instead of killing the test run.
    import subprocess
    import sys

    code = """
import threading, numba, numpy as np
import layerforge.kernels
from layerforge.kernels import normalization as N
numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
x = np.random.randn(20, 2048, 1).astype(np.float32); out = np.empty_like(x)
scale, shift = np.ones(2048, np.float32), np.zeros(2048, np.float32)
def work():
    for _ in range(2000):
        N.scale_shift(x, scale, shift, out)
threads = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in threads]; [t.join() for t in threads]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_keep_freed_memory_tunes_glibc_once_unless_the_user_tunes_malloc():
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc tuning is Linux-only")
    # three large arrays made and freed per "batch": with glibc's defaults the freed top of the heap is returned to
    # the system and faulted in again next time (~24,000 faults over 20 rounds here), with the tuning it is reused
    code = ("from layerforge.engine.memory import keep_freed_memory as k; import resource\n"
            "import numpy as np\n"
            "print(k(), k())\n"
            "def step():\n"
            "    a, b, c = (np.ones(n, np.float32) for n in (2_000_000, 2_000_000, 3_000_000))\n"
            "for _ in range(3): step()\n"
            "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(20): step()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0 < 500)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if "False False" in out.stdout:
        pytest.skip("not glibc")
    assert out.stdout.split() == ["True", "True", "True"]
    code = "from layerforge.engine.memory import keep_freed_memory as k; print(k())"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_ARENA_MAX": "2"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
