"""The Python API for people who script:

    import layerforge
    model = layerforge.Model.from_yaml("configs/iris.yaml")
    model.fit()                      # the config's data.train, or fit(x, y)
    model.predict(x)
    model.save("runs/iris")
    again = layerforge.load("runs/iris")
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config.model import ModelSpec, load_config
from .errors import ConfigError, DataError, Problem
from .graph import Graph, build_graph


@dataclass
class ArrayData:
    """In-memory data in the shape the fit loop wants (the same attributes as data.Dataset)."""

    xs: list
    ys: list | None
    sample_weight: np.ndarray | None = None
    encoders: dict | None = None
    feature_names: list | None = None

    @property
    def n(self) -> int:
        return len(self.xs[0])


def subset(data, idx):
    """The samples ``idx`` (a slice or index array) of a dataset, as ArrayData."""
    return ArrayData(xs=[x[idx] for x in data.xs], ys=[y[idx] for y in data.ys] if data.ys is not None else None,
                     sample_weight=data.sample_weight[idx] if data.sample_weight is not None else None,
                     encoders=getattr(data, "encoders", None), feature_names=getattr(data, "feature_names", None))


class Model:
    """A model built from a config: train, predict, evaluate, save."""

    def __init__(self, spec: ModelSpec, graph: Graph | None = None, *, seed: int | None = None):
        from .engine.model import CompiledModel

        self.spec = spec
        self.graph = graph or build_graph(spec)
        if seed is None:
            seed = spec.config.seed if spec.config.seed is not None else random.SystemRandom().randrange(2**31)
        self.seed = seed
        self.compiled = CompiledModel(self.graph, seed=seed)
        self.encoders: dict = {}
        self.feature_names: list | None = None
        self._trainer = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(cls, source: str | Path | dict, overrides: list[str] | None = None, *, seed: int | None = None):
        """Build from a YAML file (or the same structure as a dict), with optional KEY=VALUE overrides."""
        return cls(load_config(source, overrides), seed=seed)

    @property
    def trainer(self):
        if self._trainer is None:
            from .engine.training import Trainer

            self._trainer = Trainer(self.compiled, self.spec.config.training, seed=self.seed)
        return self._trainer

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        from .engine.training import output_keys

        return output_keys(self.graph)

    # ------------------------------------------------------------------ data
    def _input_infos(self):
        from .data import InputInfo

        return [InputInfo(i.name, tuple(i.shape), i.dtype) for i in self.graph.inputs]

    def _output_infos(self):
        from .data import OutputInfo

        infos = []
        losses = self._loss_per_output()
        for key, ref, loss in zip(self.output_names, self.graph.outputs, losses):
            kind = loss["type"] if isinstance(loss, dict) else str(loss)
            infos.append(OutputInfo(key, tuple(self.graph.shape_of(ref)),
                                    sparse=kind == "sparse_categorical_crossentropy",
                                    categorical=kind in ("categorical_crossentropy", "categorical_hinge")))
        return infos

    def _loss_per_output(self):
        from .engine.training import _per_output

        return _per_output(self.spec.config.training.loss, self.output_names, "loss")

    def load_data(self, source, *, require_target: bool = True, encoders: dict | None = None, where: str = ""):
        """Read a data file (a path or a DataSource) for this model."""
        from .config.training import DataSource
        from .data import load_source

        if not isinstance(source, DataSource):
            train_src = self.spec.config.data.train if self.spec.config.data else None
            keep = train_src.model_dump(exclude={"path", "format", "target_path", "mmap"}) if train_src else {}
            source = DataSource(path=str(Path(source).resolve()), **{k: v for k, v in keep.items() if v is not None})
        return load_source(source, self.spec.base_dir, inputs=self._input_infos(), outputs=self._output_infos(),
                           require_target=require_target, encoders=encoders if encoders is not None else
                           (self.encoders or None), feature_names=self.feature_names, where=where)

    def _as_data(self, x, y=None, sample_weight=None):
        xs = self._as_inputs(x)
        ys = None
        if y is not None:
            ys = [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else
                                          [y[k] for k in self.output_names] if isinstance(y, dict) else [y])]
            for k, (info, v) in enumerate(zip(self._output_infos(), ys)):
                if not np.issubdtype(v.dtype, np.integer) or not info.sparse:
                    ys[k] = v.astype(np.float32) if not info.sparse else v
            if any(len(v) != len(xs[0]) for v in ys):
                raise DataError("x and y have different numbers of samples")
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        return ArrayData(xs=xs, ys=ys, sample_weight=sw)

    def _as_inputs(self, x) -> list[np.ndarray]:
        if isinstance(x, dict):
            missing = [n for n in self.input_names if n not in x]
            if missing:
                raise DataError(f"missing input(s) {missing}; the model's inputs are {self.input_names}")
            arrays = [x[n] for n in self.input_names]
        elif isinstance(x, (list, tuple)) and len(self.graph.inputs) > 1:
            arrays = list(x)
        else:
            arrays = [x]
        if len(arrays) != len(self.graph.inputs):
            raise DataError(f"the model has {len(self.graph.inputs)} inputs, got {len(arrays)} arrays")
        out = []
        for inp, a in zip(self.graph.inputs, arrays):
            a = np.asarray(a)
            dtype = np.dtype(inp.dtype)
            if a.shape[1:] != tuple(a.shape[1 + i] if d is None else d for i, d in enumerate(inp.shape)) \
                    or a.ndim != len(inp.shape) + 1:
                raise DataError(f"input '{inp.name}' expects samples of shape {tuple(inp.shape)}, "
                                f"got an array of shape {a.shape}")
            out.append(np.ascontiguousarray(a, dtype=dtype))
        return out

    def _class_weights(self, data):
        cw = self.spec.config.training.class_weight
        if not cw or data.ys is None:
            return data.sample_weight
        info = self._output_infos()[0]
        y = data.ys[0]
        labels = y.reshape(len(y), -1).argmax(axis=1) if info.categorical else \
            np.rint(y.reshape(len(y), -1)[:, 0]).astype(np.int64)
        classes = (self.encoders.get(info.name) or {}).get("classes")
        n_classes = int(labels.max()) + 1 if len(labels) else 0
        if info.shape and info.shape[-1] and info.shape[-1] > 1:
            n_classes = max(n_classes, info.shape[-1])
        if cw == "balanced":
            counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
            table = np.where(counts > 0, len(labels) / (max(n_classes, 1) * np.maximum(counts, 1)), 0.0)
        else:
            table = np.ones(max(n_classes, 1))
            for key, w in cw.items():
                if classes is not None and key in [str(c) for c in classes]:
                    idx = [str(c) for c in classes].index(key)
                elif key.lstrip("-").isdigit() and 0 <= int(key) < len(table):
                    idx = int(key)
                else:
                    known = ", ".join(map(str, classes)) if classes is not None else f"0..{len(table) - 1}"
                    raise ConfigError(problems=[self.spec.source.problem(
                        ("training", "class_weight", key), f"class_weight names class '{key}', which the data "
                        "does not have", expected=known)])
                table[idx] = w
        sw = table[labels].astype(np.float32)
        return sw if data.sample_weight is None else sw * data.sample_weight

    # ------------------------------------------------------------------ training
    def fit(self, x=None, y=None, *, data=None, validation_data=None, epochs: int | None = None,
            batch_size: int | None = None, sample_weight=None, quiet: bool = True, console=None,
            on_epoch_end=None) -> list[dict]:
        """Train. Data: arrays ``x``/``y``, or ``data=`` a file path, or the config's ``data.train``."""
        from .engine.callbacks import make_callbacks
        from .engine.progress import EpochProgress

        cfg = self.spec.config.training
        train = self._training_data(x, y, data, sample_weight)
        val = self._validation_data(validation_data)
        if val is None and cfg.validation_split > 0:
            n_val = int(round(train.n * cfg.validation_split))
            if n_val == 0 or n_val >= train.n:
                raise DataError(f"validation_split={cfg.validation_split} leaves {train.n - n_val} training and "
                                f"{n_val} validation samples of {train.n}")
            val = subset(train, slice(train.n - n_val, None))  # the last samples, as in Keras
            train = subset(train, slice(0, train.n - n_val))
        train.sample_weight = self._class_weights(train)
        trainer = self.trainer
        callbacks = make_callbacks(trainer, cfg.callbacks)
        progress = EpochProgress(console, quiet=quiet) if console is not None else None
        try:
            return trainer.fit(train, val, epochs=epochs or cfg.epochs, batch_size=batch_size or cfg.batch_size,
                               callbacks=callbacks, progress=progress, on_epoch_end=on_epoch_end)
        finally:
            if progress:
                progress.stop()

    def _training_data(self, x, y, data, sample_weight):
        if x is not None:
            if y is None:
                raise DataError("fit(x) needs targets y")
            return self._as_data(x, y, sample_weight)
        source = data
        if source is None:
            d = self.spec.config.data
            source = d.train if d and d.train else None
        if source is None:
            raise ConfigError(problems=[self.spec.source.problem(
                ("data",), "no training data", hint="add `data: {train: {path: my.csv, target: label}}` to the "
                "config, or pass --data FILE")])
        loaded = self.load_data(source, where="data.train" if data is None else "")
        if loaded.ys is None:
            raise DataError("the training data has no targets")
        self.encoders = dict(getattr(loaded, "encoders", None) or {})
        self.feature_names = getattr(loaded, "feature_names", None)
        return loaded

    def _validation_data(self, validation_data):
        if validation_data is None:
            d = self.spec.config.data
            if d and d.validation:
                return self.load_data(d.validation, where="data.validation")
            return None
        if isinstance(validation_data, tuple):
            return self._as_data(*validation_data)
        return self.load_data(validation_data)

    # ------------------------------------------------------------------ inference
    def predict(self, x, batch_size: int = 256):
        """Model outputs for ``x`` (an array, a list/dict of arrays, or a data file path)."""
        xs = self.load_data(x, require_target=False).xs if isinstance(x, (str, Path)) else self._as_inputs(x)
        outs = self.trainer.predict(xs, batch_size)
        return outs[0] if len(outs) == 1 else outs

    def evaluate(self, x=None, y=None, *, data=None, batch_size: int = 256) -> dict:
        """Loss and metrics on labelled data (arrays, or a data file)."""
        if x is not None and y is not None:
            ds = self._as_data(x, y)
        else:
            ds = self.load_data(data if data is not None else x)
            if ds.ys is None:
                raise DataError("evaluate needs targets in the data")
        ds.sample_weight = self._class_weights(ds) if ds.sample_weight is not None else ds.sample_weight
        return self.trainer.evaluate(ds, batch_size)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> dict[str, list[np.ndarray]]:
        """Weights keyed by layer name, each a list in the Keras 3 order and layout."""
        return self.compiled.get_weights()

    def set_weights(self, weights: dict[str, list[np.ndarray]]) -> None:
        for name, arrays in weights.items():
            if name not in self.compiled.specs:
                raise ConfigError(f"the model has no layer named '{name}' (layers: {', '.join(self.compiled.specs)})")
            specs = self.compiled.specs[name]
            if len(arrays) != len(specs):
                raise ConfigError(f"layer '{name}' has {len(specs)} weights "
                                  f"({', '.join(s.name for s in specs)}), got {len(arrays)}")
            for spec, arr in zip(specs, arrays):
                self.compiled.set_weight(name, spec, np.asarray(arr))

    def summary(self, batch_size: int | None = None, *, print_: bool = True) -> dict:
        from .summary import render_summary, summary_data

        data = summary_data(self.graph, batch_size)
        if print_:
            from rich.console import Console

            render_summary(data, Console())
        return data

    # ------------------------------------------------------------------ saving
    def export(self, path: str | Path, format: str = "onnx", **options) -> Path:
        """Write the model as ONNX (``format="onnx"``, options ``opset``, ``batch_size``) or as a Keras 3
        ``.keras`` archive (``format="keras"``); see ``layerforge.api.export``."""
        return export(self, path, format, **options)

    def data_schema(self) -> dict:
        return {
            "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in self.graph.inputs],
            "outputs": [{"name": k, "shape": list(self.graph.shape_of(r)), "loss": loss}
                        for k, r, loss in zip(self.output_names, self.graph.outputs, self._loss_per_output())],
            "feature_names": self.feature_names,
            "encoders": self.encoders,
        }

    def save(self, path: str | Path) -> Path:
        """Write a run directory (atomically)."""
        from .io.rundir import write_run

        trainer = self._trainer
        weights = {f"{name}/{spec.name}": arr for name, spec, arr in self.compiled.weight_items()}
        state = {"seed": self.seed}
        if trainer is not None:
            state.update(trainer.state())
        return write_run(path, config=self.spec.canonical_dict(), weights=weights,
                         optimizer_state=trainer.optimizer.state_dict() if trainer is not None else None,
                         state=state, history=trainer.history if trainer is not None else [],
                         schema=self.data_schema())

    def restore(self, run: dict, *, with_optimizer: bool = True) -> None:
        """Load weights (and training state) from ``io.rundir.read_run`` output."""
        from .errors import CheckpointError

        weights = run["weights"]
        expected = {f"{name}/{spec.name}": (name, spec) for name, spec, _ in self.compiled.weight_items()}
        missing = [k for k in expected if k not in weights]
        extra = [k for k in weights if k not in expected]
        if missing or extra:
            raise CheckpointError(problems=[Problem(
                message="the saved weights do not fit this model", file=str(run["path"]),
                found=f"missing {missing[:5]}" if missing else f"unexpected {extra[:5]}",
                hint="the config changed since the run was saved; use the run's own config.yaml")])
        for key, (name, spec) in expected.items():
            arr = weights[key]
            if tuple(arr.shape) != tuple(spec.shape):
                raise CheckpointError(problems=[Problem(
                    message=f"saved weight {key} has shape {tuple(arr.shape)}, the model needs {tuple(spec.shape)}",
                    file=str(run["path"]))])
            self.compiled.set_weight(name, spec, arr)
        schema = run.get("schema") or {}
        self.encoders = schema.get("encoders") or {}
        self.feature_names = schema.get("feature_names")
        state = run.get("state") or {}
        if with_optimizer and state.get("epoch") is not None:
            trainer = self.trainer
            trainer.load_state(state)
            if run.get("optimizer") is not None:
                trainer.optimizer.load_state_dict(run["optimizer"])


def export(model: Model, path: str | Path, fmt: str, *, opset: int | None = None, batch_size: int | None = None,
           overwrite: bool = False) -> Path:
    """Write ``model`` as ONNX (``fmt="onnx"``) or as a Keras 3 archive (``fmt="keras"``) to ``path``.

    Raises ``interop.ExportError`` (a UserError, exit code 2) for a layer the format cannot express, and refuses to
    replace an existing file unless ``overwrite``."""
    from .interop import ExportError

    path = Path(path)
    fmt = fmt.lower()
    if fmt not in ("onnx", "keras"):
        raise ExportError(problems=[Problem(message=f"unknown export format '{fmt}'", found=fmt,
                                            hint="use --format onnx or --format keras")])
    if path.exists() and not overwrite:
        raise ExportError(problems=[Problem(message=f"{path} already exists", file=str(path),
                                            hint="choose another --output, or pass --force to replace it")])
    if fmt == "keras":
        if path.suffix != ".keras":
            raise ExportError(problems=[Problem(
                message=f"a Keras 3 archive must end in .keras, got '{path.name}'", file=str(path),
                hint=f"use -o {path.with_suffix('.keras').name} (keras.saving.load_model opens only .keras files)")])
        if opset is not None:
            raise ExportError("--opset applies to --format onnx only")
        from .interop.keras_export import export_keras

        export_keras(model, path, batch_size=batch_size)
    else:
        from .interop.onnx_export import DEFAULT_OPSET, export_onnx

        export_onnx(model, path, opset=opset or DEFAULT_OPSET, batch_size=batch_size)
    return path


def load(path: str | Path) -> Model:
    """Load a run directory written by `layerforge train` or ``Model.save``."""
    from .io.rundir import read_run

    run = read_run(path)
    spec = load_config(run["config"])
    spec.base_dir = Path(path).resolve().parent
    seed = (run.get("state") or {}).get("seed")
    model = Model(spec, seed=seed)
    model.restore(run)
    return model
