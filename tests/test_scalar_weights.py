"""Scalar weights (shape (), as Keras 3's Attention(use_scale=True) `scale`) keep their shape through
initialization, get/set_weights and a saved run (np.ascontiguousarray would make them shape (1,))."""

import numpy as np

import layerforge

CONFIG = {"name": "scalar", "inputs": [{"name": "q", "shape": [3, 2]}, {"name": "v", "shape": [4, 2]}],
          "layers": [{"type": "Attention", "use_scale": True, "score_mode": "concat", "inputs": ["q", "v"],
                      "name": "att"}],
          "training": {"loss": "mse", "optimizer": "sgd"}}


def test_scalar_weights_keep_shape_through_set_and_save(tmp_path):
    model = layerforge.Model.from_yaml(CONFIG, seed=0)
    weights = model.get_weights()["att"]
    assert [w.shape for w in weights] == [(), ()]
    model.set_weights({"att": [np.float32(1.5), np.asarray(0.25, np.float32)]})
    back = layerforge.load(model.save(tmp_path / "run"))
    got = back.get_weights()["att"]
    assert [w.shape for w in got] == [(), ()]
    assert [float(w) for w in got] == [1.5, 0.25]
