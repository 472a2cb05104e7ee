"""Shared by the export tests: a one-layer model for every layer example, with perturbed weights and inputs."""

from __future__ import annotations

import numpy as np

from layerforge.layers import REGISTRY, load_all

load_all()
CASES = [(cls.type, i, ex) for cls in REGISTRY.values() for i, ex in enumerate(cls.examples)]
IDS = [f"{t}-{i}" for t, i, _ in CASES]
_DROP = ("input_dim", "input_length", "input_shape", "batch_input_shape")


def example_config(example) -> dict:
    """A model config: the example's layer fed by the example's inputs (through Masking when it wants a mask)."""
    multi = isinstance(example.input_shape, list)
    shapes = example.input_shape if multi else [example.input_shape]
    dtype = "int64" if example.int_input else "float32"
    inputs = [{"name": f"in{i}", "shape": list(s), "dtype": dtype} for i, s in enumerate(shapes)]
    layers, refs = [], []
    for i in range(len(shapes)):
        # Masking makes the mask (it takes (steps, features) inputs); a layer example with a mask on another rank
        # (ConvLSTM2D's 5D input) has no config that makes one, so it runs unmasked
        if example.mask and not example.int_input and len(shapes[i]) == 2:
            layers.append({"type": "Masking", "mask_value": 0.0, "name": f"mask{i}", "inputs": [f"in{i}"]})
            refs.append(f"mask{i}")
        else:
            refs.append(f"in{i}")
    from layerforge.layers import TYPE_NAMES

    fields = REGISTRY[TYPE_NAMES[example.config["type"]][0]].Config.model_fields
    cfg = {k: v for k, v in example.config.items() if k not in _DROP or k in fields}
    cfg.update(name="layer", inputs=refs)
    layers.append(cfg)
    config = {"name": "example", "seed": 3, "inputs": inputs, "layers": layers,
              "training": {"loss": "mse", "optimizer": "sgd"}}
    if example.batch_size:
        config["batch_size"] = example.batch_size
    return config


def example_model(example, seed: int = 0):
    """(model, inputs) with weights moved off their initial values so every term of the layer matters."""
    import layerforge

    model = layerforge.Model.from_yaml(example_config(example), seed=seed)
    rng = np.random.default_rng(seed)
    weights = {}
    for name, arrays in model.get_weights().items():
        specs = model.compiled.specs[name]
        new = []
        for spec, w in zip(specs, arrays):
            w = w + rng.normal(0, 0.3, w.shape).astype(w.dtype)
            if spec.name.endswith("moving_variance"):
                w = np.abs(w) + 0.5
            new.append(w)
        weights[name] = new
    model.set_weights(weights)
    batch = example.batch_size or 3
    xs = []
    for inp in model.graph.inputs:
        shape = (batch,) + tuple(4 if d is None else d for d in inp.shape)
        if example.int_input:
            x = rng.integers(0, example.int_input, size=shape).astype(np.int64)
        else:
            x = rng.standard_normal(shape).astype(np.float32)
            if example.mask and len(shape) == 3:
                x[0, -1] = 0.0  # masked steps
                if shape[1] > 2:
                    x[-1, 1] = 0.0
        xs.append(x)
    return model, xs


def predict_all(model, xs) -> list:
    outs = model.predict_arrays(xs, 256)
    return [np.asarray(o, dtype=np.float32) for o in outs]


def assert_close(got, want, rtol: float, what: str) -> None:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol} x {scale:.3g}"


def is_long_recurrent(example) -> bool:
    text = repr(example.config)
    return any(t in text for t in ("LSTM", "GRU", "SimpleRNN"))
