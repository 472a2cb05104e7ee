"""Reading the three Keras file forms into one `KerasSource`: the model config, the version and backend that
wrote it, the training config, and a handle on the weights.

Nothing here runs code from the file: JSON is parsed with `json`, HDF5 read with h5py (datasets and attributes
only), a `.keras` archive opened with `zipfile` and its `model.weights.h5` read from memory.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import Problem, UserError


class KerasImportError(UserError):
    """A Keras file that cannot be imported (exit code 2, every problem listed)."""


def fail(message: str, file: str | Path | None = None, *, hint: str | None = None, found: str | None = None):
    raise KerasImportError(problems=[Problem(message=message, file=str(file) if file else None, hint=hint,
                                             found=found)])


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):  # an attribute stored as a one-element array
        return _text(value.reshape(-1)[0]) if value.size else ""
    return str(value)


# ---------------------------------------------------------------------- weights


class LegacyWeights:
    """The `save_weights` layout of Keras 1 and 2 (and Keras 3's legacy .h5): a group per layer, named by the
    layer, whose `weight_names` attribute lists its weights in order; a name holding '/' is a nested path."""

    kind = "legacy"

    def __init__(self, group, file: Path):
        self.group = group
        self.file = file
        names = group.attrs.get("layer_names")
        self.layer_names = [_text(n) for n in names] if names is not None else list(group.keys())
        self._read: dict[str, list] = {}  # a nested model's group is asked for once per inner layer

    def has(self, layer: str) -> bool:
        return layer in self.group

    def arrays(self, layer: str) -> list[tuple[str, np.ndarray]]:
        """[(weight name, array)] of one layer group, in the order Keras wrote them."""
        if layer not in self._read:
            self._read[layer] = self._arrays(layer)
        return self._read[layer]

    def _arrays(self, layer: str) -> list[tuple[str, np.ndarray]]:
        if layer not in self.group:
            return []
        g = self.group[layer]
        names = g.attrs.get("weight_names")
        if names is None:  # some writers omit the attribute: take the datasets in creation order
            out = []
            g.visititems(lambda n, o: out.append((n, np.asarray(o[()]))) if hasattr(o, "shape") else None)
            return out
        return [(_text(n), np.asarray(g[_text(n)][()])) for n in names]


class Keras3Weights:
    """`model.weights.h5` of a `.keras` archive: `layers/<snake name>[_k]/vars/<i>` (sub-objects such as an RNN's
    `cell`, a wrapper's `layer` / `forward_layer` / `backward_layer` one level further down)."""

    kind = "keras3"

    def __init__(self, h5file, file: Path):
        self.h5 = h5file
        self.file = file

    def has(self, path: str) -> bool:
        return path in self.h5

    def vars(self, path: str) -> list[np.ndarray]:
        key = f"{path}/vars" if path else "vars"
        if key not in self.h5:
            return []
        g = self.h5[key]
        return [np.asarray(g[str(i)][()]) for i in range(len(g.keys()))]


# ---------------------------------------------------------------------- the source


@dataclass
class KerasSource:
    path: Path
    kind: str  # "json", "hdf5" or "keras"
    model: dict  # {"class_name": ..., "config": ...}
    keras_version: str | None
    backend: str | None
    training_config: dict | None = None
    weights: object | None = None
    weights_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    _open: list = field(default_factory=list)

    @property
    def major(self) -> int:
        if self.keras_version:
            m = re.match(r"\s*(\d+)", self.keras_version)
            if m:
                return int(m.group(1))
        return guess_major(self.model)

    def close(self):
        for h in self._open:
            try:
                h.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._open.clear()


def guess_major(model: dict) -> int:
    """The Keras major version from the config's vocabulary, for files that do not say."""
    text = json.dumps(model)
    if '"__keras_tensor__"' in text or '"module": "keras' in text or '"DTypePolicy"' in text \
            or '"batch_shape"' in text:
        return 3
    if re.search(r'"(kernel_initializer|filters|units|data_format|kernel_size|rate)"', text):
        return 2
    return 1


def _parse_json_text(text: str, file: Path) -> dict:
    try:
        data = json.loads(text)
    except ValueError as exc:
        fail(f"not valid JSON: {exc}", file, hint="pass a model.to_json() file, an HDF5 model file or a .keras archive")
    if isinstance(data, str):  # some tools wrote the JSON text as a JSON string
        return _parse_json_text(data, file)
    if not isinstance(data, dict) or "class_name" not in data or "config" not in data:
        fail("this JSON is not a Keras model (no top-level class_name and config)", file,
             hint="pass what model.to_json() wrote")
    return data


def _split_model_json(data: dict) -> tuple[dict, str | None, str | None, dict | None]:
    """(model, keras_version, backend, training config) from a to_json() document; Keras 1.0 wrote loss and
    optimizer keys beside the model, Keras 3 a compile_config."""
    model = {"class_name": data["class_name"], "config": data["config"]}
    training = None
    if isinstance(data.get("compile_config"), dict):
        training = {"keras3_compile": data["compile_config"]}
    elif "optimizer" in data or "loss" in data:
        training = {"optimizer_config": data.get("optimizer"), "loss": data.get("loss"),
                    "metrics": data.get("metrics"), "loss_weights": data.get("loss_weights")}
    version = data.get("keras_version")
    return model, (str(version) if version is not None else None), data.get("backend"), training


def _open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        fail(f"cannot read this HDF5 file: {exc}", path, hint="is it a complete Keras .h5 file?")


def read_source(path: str | Path, weights: str | Path | None = None) -> KerasSource:
    path = Path(path)
    if not path.exists():
        fail("file not found", path)
    if path.is_dir():
        fail("expected a file, got a folder", path, hint="pass the model's .json, .h5 or .keras file")
    head = path.read_bytes()[:8]
    if head.startswith(b"PK"):
        src = _read_keras_archive(path)
    elif head.startswith(b"\x89HDF"):
        src = _read_hdf5_model(path)
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            fail("not a Keras file (neither JSON, HDF5 nor a .keras zip archive)", path)
        model, version, backend, training = _parse_json_text_full(text, path)
        src = KerasSource(path=path, kind="json", model=model, keras_version=version, backend=backend,
                          training_config=training)
    if weights is not None:
        if src.weights is not None:
            src.notes.append(f"weights taken from {Path(weights).name}, not from the model file")
            src.close()
        _attach_weights(src, Path(weights))
    return src


def _parse_json_text_full(text: str, path: Path):
    return _split_model_json(_parse_json_text(text, path))


def _attach_weights(src: KerasSource, weights: Path) -> None:
    if not weights.exists():
        fail("weights file not found", weights)
    if weights.read_bytes()[:2] == b"PK":  # a .keras archive given as the weights
        arch = _read_keras_archive(weights)
        src.weights, src.weights_path = arch.weights, weights
        src._open.extend(arch._open)
        return
    f = _open_h5(weights)
    src._open.append(f)
    src.weights_path = weights
    if "layers" in f and "vars" in f and "layer_names" not in f.attrs:  # Keras 3 model.weights.h5
        src.weights = Keras3Weights(f, weights)
        return
    group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in group.attrs:
        fail("this HDF5 file holds no Keras weights (no layer_names attribute)", weights,
             hint="pass the file model.save_weights() wrote")
    src.weights = LegacyWeights(group, weights)
    for key in ("backend", "keras_version"):
        if key in group.attrs and getattr(src, key) is None:
            setattr(src, key, _text(group.attrs[key]))


def _read_hdf5_model(path: Path) -> KerasSource:
    f = _open_h5(path)
    if "model_config" not in f.attrs:
        f.close()
        fail("this HDF5 file has no model_config: it holds weights only", path,
             hint="pass the architecture JSON as SOURCE and this file with --weights")
    data = json.loads(_text(f.attrs["model_config"]))
    if isinstance(data, str):
        data = json.loads(data)
    model = {"class_name": data["class_name"], "config": data["config"]}
    version = _text(f.attrs["keras_version"]) if "keras_version" in f.attrs else None
    backend = _text(f.attrs["backend"]) if "backend" in f.attrs else None
    training = None
    if "training_config" in f.attrs:
        training = json.loads(_text(f.attrs["training_config"]))
    src = KerasSource(path=path, kind="hdf5", model=model, keras_version=version, backend=backend,
                      training_config=training, weights_path=path)
    src._open.append(f)
    if "model_weights" in f:
        group = f["model_weights"]
        src.weights = LegacyWeights(group, path)
        for key in ("backend", "keras_version"):
            if key in group.attrs and getattr(src, key) is None:
                setattr(src, key, _text(group.attrs[key]))
    return src


def _read_keras_archive(path: Path) -> KerasSource:
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        fail(f"not a readable .keras archive: {exc}", path)
    names = set(z.namelist())
    if "config.json" not in names:
        fail("this zip archive has no config.json: not a Keras 3 .keras file", path)
    data = _parse_json_text(z.read("config.json").decode("utf-8"), path)
    meta = {}
    if "metadata.json" in names:
        try:
            meta = json.loads(z.read("metadata.json").decode("utf-8"))
        except ValueError:
            meta = {}
    model, _, _, training = _split_model_json(data)
    src = KerasSource(path=path, kind="keras", model=model, keras_version=meta.get("keras_version") or "3",
                      backend=meta.get("backend") or None, training_config=training)
    if "model.weights.h5" in names:
        import h5py

        buf = io.BytesIO(z.read("model.weights.h5"))
        f = h5py.File(buf, "r")
        src._open.append(f)
        src.weights = Keras3Weights(f, path)
        src.weights_path = path
    return src
