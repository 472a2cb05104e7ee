"""Keras 3 export: every layer example loads with keras.saving.load_model and predicts like layerforge."""

import os

import numpy as np
import pytest
from export_cases import CASES, IDS, assert_close, example_model, is_long_recurrent, predict_all

# Keras 3 runs its layers on a backend; the numpy one loads and predicts a model ~100x faster than jax here (no
# compilation) and computes in float32 like jax. KERAS_BACKEND=jax runs the same tests on jax.
os.environ.setdefault("KERAS_BACKEND", "numpy")
pytest.importorskip("h5py", reason="Keras export needs h5py")
pytest.importorskip("jax", reason="Keras 3 imports jax on its numpy backend too (test extra)")
keras = pytest.importorskip("keras", reason="the Keras export tests need Keras 3 (test extra)")

from layerforge.interop import ExportError  # noqa: E402
from layerforge.interop.keras_export import export_keras  # noqa: E402

# Layer types (or settings) Keras 3 cannot express exactly, and why (the README lists the same).
NOT_EXPORTABLE = {
    "hard_sigmoid_keras1": "Keras 1's hard sigmoid 0.2x+0.5 is not a Keras 3 activation (Keras 3's is x/6+0.5)",
}


# Single examples Keras 3 cannot express, by test id, and why.
NOT_EXPORTABLE_EXAMPLES = {
    "Conv2DTranspose-7": "Keras 1 output_shape [5, 6] from 3x3, stride 2, kernel 4, same: Keras 3 reaches 6 only "
                         "without output_padding and 5 only with it, and output_padding is all axes or none",
    "ParametricSoftplus-1": "per-element weights over (steps, features) of a masked input",
    "SReLU-1": "per-element weights over (steps, features) of a masked input",
    # Keras 3's Multiply / Maximum / Minimum skip masked entries and OR the masks (layerforge: every entry, AND)
    "Merge-9": "Multiply of masked inputs",
    "Merge-11": "Maximum of masked inputs",
    "Lambda-7": "clip / maximum / a power (Maximum, Minimum, Multiply layers) of a masked input",
    # Lambda expressions with a primitive no Keras 3 layer computes (Keras' own Lambda is Python bytecode)
    "Lambda-3": "slicing x[:, ::-1]",
    "Lambda-4": "comparison (x > 0.1) and a conditional",
    "Lambda-5": "l2_normalize (a square root) and slicing",
}


def expected_failure(example, test_id=""):
    if test_id in NOT_EXPORTABLE_EXAMPLES:
        return NOT_EXPORTABLE_EXAMPLES[test_id]
    text = repr(example.config)
    for key, reason in NOT_EXPORTABLE.items():
        if key in text:
            return reason
    return None


def keras_predict(path, xs):
    model = keras.saving.load_model(path)
    outs = model(xs if len(xs) > 1 else xs[0], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [np.asarray(o) for o in outs]


@pytest.mark.parametrize("type_name,index,example", CASES, ids=IDS)
def test_layer_example_matches_keras(type_name, index, example, tmp_path):
    model, xs = example_model(example, seed=index)
    from layerforge.interop.keras_export import CONVERTERS, SINGLE

    if type_name not in CONVERTERS and type_name not in SINGLE:  # a type added after the exporter: a clear error
        with pytest.raises(ExportError, match="cannot be exported to Keras 3"):
            export_keras(model, tmp_path / "m.keras")
        pytest.xfail(f"{type_name} has no Keras converter yet (add one to keras_export.SINGLE or CONVERTERS)")
    if expected_failure(example, f"{type_name}-{index}"):
        with pytest.raises(ExportError, match="cannot be exported to Keras 3"):
            export_keras(model, tmp_path / "m.keras")
        return
    path = tmp_path / "m.keras"
    export_keras(model, path)
    want = predict_all(model, xs)
    got = keras_predict(str(path), xs)
    rtol = 1e-4 if is_long_recurrent(example) else 1e-5
    assert len(got) == len(want), (len(got), len(want))
    for k, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, rtol, f"{type_name} example {index} output {k}")
