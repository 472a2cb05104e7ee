"""Start-up plumbing: the Numba cache folder for read-only installs, the default threading layer, and one
thread count for BLAS and Numba."""

from __future__ import annotations

import os
import sys

import pytest

import layerforge.kernels as K
from layerforge.engine import threads as T


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
    assert K.configure_threading_layer() == "workqueue" and os.environ["NUMBA_THREADING_LAYER"] == "workqueue"
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "omp")
    assert K.configure_threading_layer() is None and os.environ["NUMBA_THREADING_LAYER"] == "omp"


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
