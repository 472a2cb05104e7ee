"""ONNX export: every layer example and shipped config runs in onnxruntime like layerforge's predict."""

import pytest
from export_cases import CASES, IDS, assert_close, example_model, is_long_recurrent, predict_all

onnx = pytest.importorskip("onnx", reason="ONNX export tests need the onnx package (test extra)")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime (test extra)")

from layerforge.interop import ExportError  # noqa: E402
from layerforge.interop.onnx_export import export_onnx  # noqa: E402

# Layer examples ONNX cannot express, with the reason the exporter gives (the README lists them too).
NOT_EXPORTABLE = {
    "stateful": "stateful recurrent layers carry state between calls; an ONNX graph keeps none",
    "function": "Lambda with Python code",
}


def _expected_failure(example) -> str | None:
    text = repr(example.config)
    if "'stateful': True" in text:
        return "stateful"
    return None


def run_onnx(proto, xs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), xs)}
    return sess.run(None, feeds)


@pytest.mark.parametrize("type_name,index,example", CASES, ids=IDS)
def test_layer_example_matches_onnxruntime(type_name, index, example):
    model, xs = example_model(example, seed=index)
    from layerforge.interop.onnx_export import CONVERTERS

    if type_name not in CONVERTERS:  # a layer type added after the exporter: it must fail clearly, not silently
        with pytest.raises(ExportError, match="no ONNX mapping exists for this layer type"):
            export_onnx(model)
        pytest.xfail(f"{type_name} has no ONNX converter yet (add one to onnx_export.CONVERTERS)")
    reason = _expected_failure(example)
    if reason:
        with pytest.raises(ExportError, match="cannot be exported to ONNX"):
            export_onnx(model)
        return
    proto = export_onnx(model)  # runs onnx.checker.check_model(full_check=True)
    want = predict_all(model, xs)
    got = run_onnx(proto, xs)
    rtol = 1e-4 if is_long_recurrent(example) else 1e-5
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, rtol, f"{type_name} example {index} output {k}")
