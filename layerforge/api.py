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


def _numeric(a, what: str) -> np.ndarray:
    """``a`` as a numeric array, or a DataError saying what holds values that are not numbers."""
    try:
        arr = np.asarray(a)
        if arr.dtype.kind in "USO":
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} holds values that are not numbers ({exc})") from None
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float32)
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{what} is not an array of numbers (dtype {arr.dtype})")
    return arr


def _missing_output(name: str, names: list[str]):
    raise DataError(f"the targets have no entry for output '{name}' (the outputs are {', '.join(names)})")


class Model:
    """A model built from a config: train, predict, evaluate, save."""

    def __init__(self, spec: ModelSpec, graph: Graph | None = None, *, seed: int | None = None):
        from .engine import startup
        from .engine.model import CompiledModel

        startup.start()  # the engine's process settings (engine/startup.py; LAYERFORGE_NO_STARTUP=1 opts out)

        self.spec = spec
        self.graph = graph or build_graph(spec)
        if seed is None:
            seed = spec.config.seed if spec.config.seed is not None else random.SystemRandom().randrange(2**31)
        self.seed = seed
        self.compiled = CompiledModel(self.graph, seed=seed)
        self.encoders: dict = {}
        self.feature_names: list | None = None
        self.overrides: list[str] = []  # the KEY=VALUE overrides the config was loaded with (kept by save)
        self.config_file: str | None = None
        self.history = None  # the History of the latest fit, as Keras' model.history
        self.preprocessing: dict | None = None  # fitted text vocabulary / scaling (data/preprocess.py)
        self._trainer = None  # built by the first fit (or a resumed run): the optimizer and the fit loop
        self._heads = None  # losses and metrics for evaluate when there is no Trainer
        self._saved_training = None  # (state, callback arrays, optimizer state) of a loaded run, for its Trainer
        self._saved_from = None  # that run's directory (named by a damaged-state error)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(cls, source: str | Path | dict, overrides: list[str] | None = None, *, seed: int | None = None,
                  allow_code: bool = False):
        """Build from a YAML file (or the same structure as a dict), with optional KEY=VALUE overrides.
        ``allow_code=True`` lets Lambda `function:` layers run the Python code they name (trusted configs only)."""
        model = cls(load_config(source, overrides, allow_code=allow_code), seed=seed)
        model.overrides = list(overrides or [])
        if not isinstance(source, dict):
            model.config_file = str(source)
        return model

    @property
    def trainer(self):
        if self._trainer is None:
            from .engine.training import Trainer

            self._trainer = Trainer(self.compiled, self.spec.config.training, seed=self.seed)
            self._trainer.save_checkpoint = lambda path: self.save(path, overwrite=True)  # ModelCheckpoint
            if self._saved_training is not None:
                self._load_saved_training()
        return self._trainer

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        from .engine.inference import output_keys

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
        from .engine.inference import per_output

        return per_output(self.spec.config.training.loss, self.output_names, "loss")

    def load_data(self, source, *, require_target: bool = True, encoders: dict | None = None, where: str = "",
                  holdout_fraction: float = 0.0):
        """Read a data file (a path or a DataSource) for this model."""
        from .config.training import DataSource
        from .data import load_source

        if not isinstance(source, DataSource):
            try:
                resolved = Path(source).resolve()
            except (RuntimeError, OSError):  # a symbolic link loop (Python < 3.13 raises RuntimeError)
                raise DataError(problems=[Problem(message="the path is a symbolic link loop", file=str(source),
                                                  hint="point the link at a real file")]) from None
            source = DataSource(path=str(resolved), **self._training_source_options(Path(source)))
        return load_source(source, self.spec.base_dir, inputs=self._input_infos(), outputs=self._output_infos(),
                           require_target=require_target, encoders=encoders if encoders is not None else
                           (self.encoders or None), feature_names=self.feature_names, where=where,
                           preprocessing=self.preprocessing, holdout_fraction=holdout_fraction)

    def _training_source_options(self, path: Path) -> dict:
        """The training data source's column/array choices that also apply to ``path``: a file of the same kind
        keeps them; another kind (an .npy for a model trained from an .npz) cannot name columns or arrays."""
        train_src = self.spec.config.data.train if self.spec.config.data else None
        if train_src is None:
            return {}
        kinds = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".npy": "npy", ".npz": "npz"}
        trained = train_src.format if train_src.format != "auto" else Path(train_src.path).suffix.lower()
        trained = kinds.get(trained, trained if trained in ("npy", "npz") else "csv")
        new = kinds.get(path.suffix.lower(), "csv")
        keep = train_src.model_dump(exclude={"path", "format", "target_path", "mmap"})
        if new != trained:
            keep = {k: v for k, v in keep.items() if k not in ("features", "target", "sample_weight", "header",
                                                               "delimiter")}
        if new == "npy":
            keep = {}
        return {k: v for k, v in keep.items() if v is not None}

    def _as_data(self, x, y=None, sample_weight=None):
        xs = self._as_inputs(x)
        ys = None
        if y is not None:
            raw = list(y) if isinstance(y, (list, tuple)) and len(self.output_names) > 1 else \
                [y[k] if k in y else _missing_output(k, self.output_names) for k in self.output_names] \
                if isinstance(y, dict) else [y]
            if len(raw) != len(self.output_names):
                raise DataError(f"the model has {len(self.output_names)} outputs ({', '.join(self.output_names)}), "
                                f"got {len(raw)} target arrays")
            ys = [self._as_target(info, v, len(xs[0])) for info, v in zip(self._output_infos(), raw)]
        sw = None
        if sample_weight is not None:
            sw = _numeric(sample_weight, "sample_weight").astype(np.float32).reshape(-1)
            if len(sw) != len(xs[0]):
                raise DataError(f"sample_weight has {len(sw)} values for {len(xs[0])} samples")
        return ArrayData(xs=xs, ys=ys, sample_weight=sw)

    def _as_target(self, info, y, n: int) -> np.ndarray:
        """One output's targets as the loss takes them; text labels are encoded as the CLI encodes a CSV's."""
        y = np.asarray(y)
        if len(y) != n:
            raise DataError(f"x has {n} samples but the targets of output '{info.name}' have {len(y)}")
        if y.dtype.kind in "USOb":
            return self._encode_labels(info, y)
        y = _numeric(y, f"the targets of output '{info.name}'")
        if info.sparse:
            if not np.array_equal(y, np.round(y)):
                raise DataError(f"output '{info.name}' takes class ids (sparse_categorical_crossentropy), but the "
                                "targets are not whole numbers")
            ids_shape = tuple(info.shape[:-1])
            if y.shape[1:] not in (ids_shape, ids_shape + (1,)) and None not in ids_shape:
                raise DataError(problems=[Problem(
                    message=f"output '{info.name}' takes class ids (sparse_categorical_crossentropy) of shape "
                            f"{ids_shape} per sample, but the targets have shape {y.shape[1:]}",
                    hint="one-hot targets need loss categorical_crossentropy")])
            return y.reshape(n).astype(np.int64) if y.size == n else y.astype(np.int64)
        shape = tuple(info.shape)
        if info.categorical and y.ndim == 1 and len(shape) == 1 and shape[0] and np.array_equal(y, np.round(y)):
            if y.size and (y.min() < 0 or y.max() >= shape[0]):
                raise DataError(f"output '{info.name}' has {shape[0]} classes, but a target class id is "
                                f"{int(y.min() if y.min() < 0 else y.max())}")
            return np.eye(shape[0], dtype=np.float32)[y.astype(np.int64)]  # class ids one-hot, as the CLI does
        if y.shape[1:] != shape and None not in shape and y.size == n * int(np.prod(shape)):
            y = y.reshape((n, *shape))  # (n,) targets for an output of shape (1,), as Keras accepts
        if None not in shape and y.shape[1:] != shape:
            raise DataError(f"output '{info.name}' has shape {shape} per sample, but the targets have shape "
                            f"{y.shape[1:]}")
        return y.astype(np.float32)

    def _encode_labels(self, info, y: np.ndarray) -> np.ndarray:
        labels = y.reshape(len(y), -1)
        if labels.shape[1] != 1:
            raise DataError(f"the targets of output '{info.name}' hold text of shape {y.shape}; give one label "
                            "per sample")
        labels = labels[:, 0].astype(str)
        enc = (self.encoders or {}).get(info.name)
        classes = [str(c) for c in enc["classes"]] if enc else sorted(set(labels.tolist()))
        lookup = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(labels.tolist()) - set(lookup))
        if unknown:
            raise DataError(f"label {unknown[0]!r} of output '{info.name}' was not in the training data "
                            f"(known: {', '.join(classes)})")
        ids = np.array([lookup[v] for v in labels.tolist()], dtype=np.int64)
        width = info.shape[-1] if info.shape else None
        if info.sparse:
            target = ids
        elif width == 1 and len(classes) <= 2:
            target = ids.astype(np.float32).reshape(-1, 1)
        elif width is not None and (info.categorical or width == len(classes)) and len(classes) <= width:
            target = np.eye(width, dtype=np.float32)[ids]
        else:
            raise DataError(problems=[Problem(
                message=f"output '{info.name}' (shape {tuple(info.shape)}) is not a classifier for "
                        f"{len(classes)} text labels", hint="use a classification loss and one unit per class")])
        if not enc:
            self.encoders[info.name] = {"classes": classes, "kind": "string"}
        return target

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
            a = _numeric(a, f"input '{inp.name}'")
            want = tuple(inp.shape)
            fits = a.ndim == len(want) + 1 and all(d is None or d == g for d, g in zip(want, a.shape[1:]))
            if not fits and a.ndim == len(want) and all(d is None or d == g for d, g in zip(want, a.shape)):
                raise DataError(f"input '{inp.name}' got one sample of shape {a.shape} without a batch axis; the "
                                f"model takes a batch of shape (n, {', '.join(map(str, want))})",
                                problems=[Problem(message=f"input '{inp.name}': one sample of shape {a.shape} came "
                                                          "without a batch axis",
                                                  hint="pass x[None] (or x[:1] instead of x[0])")])
            if not fits:
                raise DataError(f"input '{inp.name}' expects samples of shape {want}, "
                                f"got an array of shape {a.shape}")
            out.append(np.ascontiguousarray(a, dtype=np.dtype(inp.dtype)))
        return out

    def _class_weights(self, data, class_weight=None):
        cw = self.spec.config.training.class_weight if class_weight is None else class_weight
        if isinstance(cw, dict):
            cw = {str(k): float(v) for k, v in cw.items()}
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
    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int | None = None, verbose: int = 0,
            callbacks=None, validation_split: float | None = None, validation_data=None, shuffle: bool | None = None,
            class_weight=None, sample_weight=None, initial_epoch: int | None = None, *, data=None,
            quiet: bool | None = None, console=None, on_epoch_end=None, resume: bool = False):
        """Train as Keras' ``fit`` does: epochs ``initial_epoch`` .. ``epochs - 1``, from the current weights,
        every call. Returns a History (``.history``: name -> one value per epoch; ``.epoch``).

        Data: arrays ``x``/``y`` (text labels are encoded as `layerforge train` encodes them), or ``data=`` a
        file, or the config's ``data.train``. Keywords left out take the config's ``training:`` values.
        ``callbacks``: Callback objects (``layerforge.callbacks``) or config entries such as
        ``{"type": "EarlyStopping", "patience": 2}``; given, they replace the config's callbacks.
        ``verbose``: 0 silent, 1 progress bar and a line per epoch, 2 a line per epoch (``quiet=False`` = 1).
        ``resume``: continue a loaded run to ``epochs`` with its saved callback state (what ``--resume`` does)."""
        from .engine.callbacks import make_callbacks
        from .engine.progress import EpochProgress

        cfg = self.spec.config.training
        epochs = cfg.epochs if epochs is None else _count(epochs, "epochs", 1)
        batch_size = cfg.batch_size if batch_size is None else _count(batch_size, "batch_size", 1)
        trainer = self.trainer
        callback_state = None
        if resume:
            initial_epoch = trainer.epoch
            callback_state = trainer.saved_callback_state
        elif initial_epoch is None:
            initial_epoch = cfg.initial_epoch
        initial_epoch = _count(initial_epoch, "initial_epoch", 0)
        if initial_epoch >= epochs:
            raise ConfigError(f"initial_epoch={initial_epoch} leaves no epoch to train: fit trains epochs "
                              f"initial_epoch .. epochs - 1, so epochs must be greater (got epochs={epochs})")
        split = cfg.validation_split if validation_split is None else validation_split
        if not isinstance(split, (int, float)) or isinstance(split, bool) or not 0.0 <= split < 1.0:
            raise ConfigError(f"validation_split must be a number in [0, 1), not {split!r}")
        train = self._training_data(x, y, data, sample_weight)
        val = self._validation_data(validation_data)
        if val is None and split > 0:
            n_val = int(round(train.n * split))
            if n_val == 0 or n_val >= train.n:
                raise DataError(f"validation_split={split} leaves {train.n - n_val} training and "
                                f"{n_val} validation samples of {train.n}")
            val = subset(train, slice(train.n - n_val, None))  # the last samples, as in Keras
            train = subset(train, slice(0, train.n - n_val))
        train.sample_weight = self._class_weights(train, class_weight)
        cbs = make_callbacks(cfg.callbacks if callbacks is None else callbacks)
        if quiet is not None and verbose == 0:
            verbose = 0 if quiet else 1
        verbose = 1 if verbose == "auto" else verbose  # Keras' default spelling
        progress = None
        if verbose:
            if console is None:
                from rich.console import Console

                console = Console(highlight=False, soft_wrap=True)
            progress = EpochProgress(console, bars=verbose == 1)
        try:
            self.history = trainer.fit(train, val, epochs=epochs, initial_epoch=initial_epoch, batch_size=batch_size,
                                       shuffle=shuffle, callbacks=cbs, progress=progress, on_epoch_end=on_epoch_end,
                                       callback_state=callback_state)
            return self.history
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
        d = self.spec.config.data
        # preprocessing is fitted on the rows validation_split leaves for training
        holdout = 0.0 if d and d.validation else self.spec.config.training.validation_split
        loaded = self.load_data(source, where="data.train" if data is None else "", holdout_fraction=holdout)
        if loaded.ys is None:
            raise DataError("the training data has no targets")
        self.encoders = dict(getattr(loaded, "encoders", None) or {})
        self.feature_names = getattr(loaded, "feature_names", None)
        self.preprocessing = getattr(loaded, "preprocessing", None)
        return loaded

    def _validation_data(self, validation_data):
        if validation_data is None:
            d = self.spec.config.data
            if d and d.validation:
                return self.load_data(d.validation, where="data.validation")
            return None
        if isinstance(validation_data, tuple):
            if len(validation_data) not in (2, 3):
                raise DataError("validation_data is (x, y) or (x, y, sample_weight)")
            return self._as_data(*validation_data)
        return self.load_data(validation_data)

    # ------------------------------------------------------------------ inference
    def predict(self, x, batch_size: int = 256, verbose: int = 0):
        """Model outputs for ``x`` (an array, a list/dict of arrays, a data file path, or a list of image files)."""
        batch_size = _count(batch_size, "batch_size", 1)
        if isinstance(x, (list, tuple)) and x and all(isinstance(v, (str, Path)) for v in x):
            from .data.images import load_image_files

            train = self.spec.config.data.train if self.spec.config.data else None
            x = load_image_files(x, train, self._input_infos()[0])
        xs = self.load_data(x, require_target=False).xs if isinstance(x, (str, Path)) else self._as_inputs(x)
        outs = self.predict_arrays(xs, batch_size)
        return outs[0] if len(outs) == 1 else outs

    def predict_arrays(self, xs: list[np.ndarray], batch_size: int = 256) -> list[np.ndarray]:
        """Outputs (a list, one array per output) for inputs already in the model's layout (one array per input):
        inference alone, with no optimizer, loss or metric built."""
        from .engine.inference import predict

        return predict(self.compiled, xs, batch_size)

    def evaluate_data(self, data, batch_size: int = 256) -> dict:
        """Loss and metrics on loaded data (``load_data``'s result or ArrayData): the training heads when the
        model has a Trainer, else heads built for evaluation alone (losses and metrics, no optimizer)."""
        from .engine.inference import evaluate, make_heads

        if self._trainer is not None:
            heads = self._trainer.heads
        else:
            if self._heads is None:
                self._heads = make_heads(self.graph, self.spec.config.training)
            heads = self._heads
        return evaluate(self.compiled, heads, data, batch_size)

    def evaluate(self, x=None, y=None, *, data=None, batch_size: int = 256, sample_weight=None) -> dict:
        """Loss and metrics on labelled data (arrays, or a data file)."""
        batch_size = _count(batch_size, "batch_size", 1)
        if x is not None and not isinstance(x, (str, Path)):
            if y is None:
                raise DataError("evaluate(x) needs targets y")
            ds = self._as_data(x, y, sample_weight)
        else:
            source = data if data is not None else x
            if source is None:
                raise DataError("evaluate needs data: arrays x and y, or data=FILE")
            ds = self.load_data(source)
            if ds.ys is None:
                raise DataError("evaluate needs targets in the data")
        ds.sample_weight = self._class_weights(ds) if ds.sample_weight is not None else ds.sample_weight
        return self.evaluate_data(ds, batch_size)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> dict[str, list[np.ndarray]]:
        """Weights keyed by layer name, each a list in the Keras 3 order and layout."""
        return self.compiled.get_weights()

    def set_weights(self, weights: dict[str, list[np.ndarray]]) -> None:
        """Replace layers' weights by layer name (lists as ``get_weights`` gives them)."""
        specs = self.compiled.specs
        fits = {name for name, arrays in weights.items() if name in specs and len(arrays) == len(specs[name])}
        self.compiled.set_weights({name: [_numeric(arr, f"weight {name}/{spec.name}")
                                          for spec, arr in zip(specs[name], arrays)] if name in fits else arrays
                                   for name, arrays in weights.items()})

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
            "preprocessing": self.preprocessing,
        }

    def runnable_config(self) -> dict:
        """The canonical config with its data paths made absolute, so it trains again from any folder."""
        out = self.spec.canonical_dict()
        for source in (out.get("data") or {}).values():
            if not isinstance(source, dict):
                continue
            for key in ("path", "target_path"):
                if source.get(key) and not Path(source[key]).is_absolute():
                    source[key] = str((Path(self.spec.base_dir) / source[key]).resolve())
        return out

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write a run directory (atomically). An existing one is replaced only with ``overwrite=True``."""
        from .errors import CheckpointError
        from .io.rundir import write_run

        path = Path(path)
        if not overwrite and path.exists() and (path.is_file() or any(path.iterdir())):
            raise CheckpointError(problems=[Problem(
                message="already exists" + (" (a file)" if path.is_file() else " and is not empty"), file=str(path),
                hint="save somewhere else, or pass overwrite=True to replace it")])
        if path.is_file():
            raise CheckpointError(problems=[Problem(message="is a file, not a run directory", file=str(path),
                                                    hint="save somewhere else")])
        trainer = self.trainer if self._saved_training is not None else self._trainer  # a loaded run keeps its state
        weights = {f"{name}/{spec.name}": arr for name, spec, arr in self.compiled.weight_items()}
        state = {"seed": self.seed, "overrides": list(self.overrides)}
        if self.config_file is not None:
            state["config_file"] = str(self.config_file)
        callback_arrays = None
        if trainer is not None:
            state.update(trainer.state())
            _, callback_arrays = trainer.callback_state()
        return write_run(path, config=self.runnable_config(), weights=weights,
                         optimizer_state=trainer.optimizer.state_dict() if trainer is not None else None,
                         state=state, history=trainer.history if trainer is not None else [],
                         schema=self.data_schema(), callback_arrays=callback_arrays)

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
        self.preprocessing = schema.get("preprocessing")
        state = run.get("state") or {}
        self.overrides = list(state.get("overrides") or [])
        self.config_file = state.get("config_file")
        if with_optimizer and state.get("epoch") is not None:
            # applied when the Trainer is built (fit, --resume, save): predict and evaluate build none
            self._saved_training = (state, run.get("callback_arrays"), run.get("optimizer"))
            self._saved_from = run["path"]
            if self._trainer is not None:
                self._load_saved_training()

    def _load_saved_training(self) -> None:
        from .errors import CheckpointError

        state, callback_arrays, optimizer_state = self._saved_training
        self._saved_training = None
        self._trainer.load_state(state, callback_arrays)
        if optimizer_state is not None:
            try:
                self._trainer.optimizer.load_state_dict(optimizer_state)
            except (ValueError, KeyError, TypeError) as exc:  # state that read_run's checks let through
                raise CheckpointError(problems=[Problem(
                    message=f"damaged run directory: optimizer.safetensors: {exc}", file=str(self._saved_from),
                    hint="resume from an earlier checkpoint, or train again")]) from None


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return int(value)


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


def load(path: str | Path, *, allow_code: bool = False) -> Model:
    """Load a run directory written by `layerforge train` or ``Model.save`` (``allow_code``: as in from_yaml)."""
    from .io.rundir import read_run

    run = read_run(path)
    try:
        spec = load_config(run["config"], allow_code=allow_code)
    except ConfigError:
        load_config(Path(path) / "config.yaml", allow_code=allow_code)  # the same problems, located in the file
        raise
    spec.base_dir = Path(path).resolve().parent
    seed = (run.get("state") or {}).get("seed")
    model = Model(spec, seed=seed)
    model.restore(run)
    return model
