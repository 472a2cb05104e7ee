"""Start-up plumbing: the Numba cache folder for read-only installs, the default threading layer, and one
thread count for BLAS and Numba."""

from __future__ import annotations

import os
import sys

import pytest

import layerforge.kernels as K
from layerforge.kernels import threads as T


@pytest.fixture
def keep_numba_config(monkeypatch):
    numba = sys.modules.get("numba")
    if numba is not None:
        monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
        monkeypatch.setattr(numba.config, "THREADING_LAYER", numba.config.THREADING_LAYER)


def test_read_only_package_caches_in_the_user_folder(monkeypatch, tmp_path, keep_numba_config):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(K, "_writable", lambda folder: False)
    folder = K.configure_cache()
    assert folder == str(tmp_path / "layerforge" / "numba")
    assert os.environ["NUMBA_CACHE_DIR"] == folder and os.path.isdir(folder)


def test_cache_folder_left_alone_when_chosen_or_writable(monkeypatch, tmp_path, keep_numba_config):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(K, "_writable", lambda folder: False)
    assert K.configure_cache() is None and os.environ["NUMBA_CACHE_DIR"] == str(tmp_path)
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(K, "_writable", lambda folder: True)
    assert K.configure_cache() is None and "NUMBA_CACHE_DIR" not in os.environ


def test_threading_layer_defaults_to_workqueue_unless_chosen(monkeypatch, keep_numba_config):
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    from layerforge.engine import startup

    assert startup.configure_threading_layer() == "workqueue" and os.environ["NUMBA_THREADING_LAYER"] == "workqueue"
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "omp")
    assert startup.configure_threading_layer() is None and os.environ["NUMBA_THREADING_LAYER"] == "omp"


def test_set_threads_sets_blas_and_numba_together(monkeypatch):
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        monkeypatch.setenv(var, "")
    before_numba = numba.get_num_threads()
    before_blas = threadpool_info()
    try:
        assert T.set_threads(1) == 1
        assert numba.get_num_threads() == 1 and T.current_threads() == 1
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "1"
        assert all(d["num_threads"] == 1 for d in threadpool_info() if d["user_api"] == "blas")
        assert T.set_threads(None) == 1  # None keeps what is in force
    finally:
        numba.set_num_threads(before_numba)
        for d in before_blas:
            threadpool_limits(d["num_threads"], user_api=d["user_api"])


def _child(code: str, **env_changes) -> str:
    import subprocess

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "NUMBA_THREADING_LAYER", "LAYERFORGE_NO_STARTUP")
           and not k.startswith("MALLOC_")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


_STATE = ("import os; from layerforge.engine import memory\n"
          "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), os.environ.get('NUMBA_THREADING_LAYER'), memory._done)")


def test_validate_through_the_command_line_loads_no_kernel_module(tmp_path):
    # the CLI takes the start-up steps, yet `validate` stays off Numba and every layerforge.kernels module
    config = tmp_path / "m.yaml"
    config.write_text("input_shape: [3]\nlayers:\n  - {type: Dense, units: 2, activation: tanh}\n")
    code = (f"import sys\nfrom layerforge.cli import main\nsys.argv = ['layerforge', 'validate', {str(config)!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('numba' in sys.modules, any(m.startswith('layerforge.kernels') for m in sys.modules))")
    assert _child(code).splitlines()[-1] == "False False"


def test_importing_the_engine_and_building_a_compiled_model_change_no_process_setting():
    # only `import layerforge` sets the OpenBLAS variable (it must precede numpy); kernels, layers and a
    # CompiledModel take no start-up step
    code = ("import layerforge.kernels, layerforge.kernels.conv\n"
            "from layerforge.config import load_config\nfrom layerforge.graph import build_graph\n"
            "from layerforge.engine.model import CompiledModel\n"
            "CompiledModel(build_graph(load_config({'input_shape': [3], 'layers': [{'type': 'Dense', 'units': 2}]})))\n"
            + _STATE)
    assert _child(code) == "4 None False"


def test_the_first_model_takes_the_start_up_steps_unless_the_user_opts_out():
    model = ("import layerforge\n"
             "layerforge.Model.from_yaml({'input_shape': [3], 'layers': [{'type': 'Dense', 'units': 2}]})\n")
    done = _child(model + _STATE).split()
    assert done[:2] == ["4", "workqueue"]
    assert _child(model + _STATE, LAYERFORGE_NO_STARTUP="1") == "None None False"
    some = ("from layerforge.engine import startup\nstartup.configure(keep_freed_memory=False, "
            "numba_threading_layer=False)\n")
    assert _child(some + model + _STATE) == "4 None False"


def test_configure_names_the_steps():
    from layerforge.engine import startup

    with pytest.raises(ValueError, match="keep_freed_memory"):
        startup.configure(keep_memory=False)


def test_predict_and_evaluate_of_a_loaded_run_build_no_trainer(tmp_path):
    import numpy as np

    import layerforge

    config = {"input_shape": [3], "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}],
              "training": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "epochs": 1,
                           "metrics": ["accuracy"]}}
    model = layerforge.Model.from_yaml(config, seed=0)
    x, y = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32), np.arange(8) % 2
    model.fit(x, y)
    model.save(tmp_path / "run")
    again = layerforge.load(tmp_path / "run")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.evaluate(x, y) == model.evaluate(x, y)
    assert again._trainer is None  # no optimizer, fit loop or callbacks were built to run inference
    assert again.trainer.epoch == 1 and again.trainer.optimizer.state_dict()  # the saved state, once asked for


_TIMEOUTS = ("import ctypes\nfrom threadpoolctl import ThreadpoolController\n"
             "libs = ThreadpoolController().select(internal_api='openblas').lib_controllers\n"
             "print(sorted({ctypes.CDLL(lib.filepath).openblas_thread_timeout() for lib in libs}))\n")


def test_numpy_imported_first_still_gets_the_short_openblas_timeout():
    # OpenBLAS read its environment before layerforge set the variable; the first model makes it read it again
    from threadpoolctl import ThreadpoolController

    if not ThreadpoolController().select(internal_api="openblas").lib_controllers:
        pytest.skip("numpy's BLAS here is not OpenBLAS")
    gemm = "a = np.ones((200, 300), np.float32); assert (a @ a.T == 300).all()\n"  # multi-threaded BLAS still works
    numpy_first = "import numpy as np\n" + gemm + "import layerforge\n" + _TIMEOUTS
    model = "layerforge.Model.from_yaml({'input_shape': [3], 'layers': [{'type': 'Dense', 'units': 2}]})\n"
    assert _child(numpy_first) == "[0]"  # too late for the variable alone
    assert _child(numpy_first + model + gemm + _TIMEOUTS).splitlines()[-1] == "[4]"
    assert _child("import layerforge\nimport numpy as np\n" + model + _TIMEOUTS) == "[4]"
    # a value the user set is left alone, and so is everything when the user opts out
    assert _child(numpy_first + model + _TIMEOUTS, OPENBLAS_THREAD_TIMEOUT="10").splitlines()[-1] == "[10]"
    assert _child(numpy_first + model + _TIMEOUTS, LAYERFORGE_NO_STARTUP="1").splitlines()[-1] == "[0]"
