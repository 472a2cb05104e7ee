"""A :class:`Dataset`: a data file fitted to a model's inputs and outputs, plus the label mappings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, Problem, did_you_mean


@dataclass
class InputInfo:
    """One model input: name, per-sample shape (no batch axis; None = any length) and dtype."""

    name: str
    shape: tuple
    dtype: str = "float32"


@dataclass
class OutputInfo:
    """One model output. ``sparse``: loss is sparse_categorical_crossentropy (targets are class ids);
    ``categorical``: loss is categorical_crossentropy (targets are one-hot rows of the output width)."""

    name: str
    shape: tuple
    sparse: bool = False
    categorical: bool = False


class LazyCast:
    """A read-only view of a (memory-mapped) array that casts to ``dtype`` only what is indexed.

    Used when a memory-mapped file's dtype differs from the model input's, so batches come out in the
    input's dtype without loading the whole file. Supports ``len``, ``shape``, ``ndim``, ``dtype``,
    indexing (slices, index arrays) and ``np.asarray`` (which loads everything)."""

    def __init__(self, base, dtype):
        self.base = base
        self.dtype = np.dtype(dtype)

    @property
    def shape(self) -> tuple:
        return self.base.shape

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.base[key], dtype=self.dtype)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.base, dtype=dtype or self.dtype)

    def __repr__(self) -> str:
        return f"LazyCast({type(self.base).__name__} {self.base.dtype}{self.base.shape} -> {self.dtype})"


def _label_array(classes: list, kind: str) -> np.ndarray:
    return np.asarray(classes, dtype=np.int64 if kind == "int" else str)


def decode_labels(encoder: dict | None, class_indices) -> np.ndarray:
    """Class indices -> the labels they stand for, by a saved encoder ({"classes": [...], "kind": ...})."""
    idx = np.asarray(class_indices)
    if encoder is None:
        return idx
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        as_int = idx.astype(np.int64)
        if not np.array_equal(as_int, idx):
            raise ValueError("decode takes class indices (integers); use argmax over the probabilities first")
        idx = as_int
    classes = _label_array(encoder["classes"], encoder.get("kind", "string"))
    if idx.size and (idx.min() < 0 or idx.max() >= len(classes)):
        raise ValueError(f"class index {int(idx.max()) if idx.max() >= len(classes) else int(idx.min())} "
                         f"is out of range for {len(classes)} classes")
    return classes[idx]


@dataclass
class Dataset:
    """Arrays ready for a model: ``xs`` one per input (in the input's dtype; may be a read-only
    memory map, or a :class:`LazyCast` over one), ``ys`` one per output (None when the data is for
    prediction): sparse outputs get int64 class ids of shape (n,), categorical outputs float32 one-hot
    (n, units), others float32 (n, *output_shape). ``encoders`` maps output name ->
    {"classes": [...], "kind": "string" | "int"} (JSON-serialisable; save it with the run and pass it
    back to `load_source` so labels map the same way)."""

    xs: list
    ys: list | None
    sample_weight: np.ndarray | None
    encoders: dict = field(default_factory=dict)
    feature_names: list[str] | None = None
    n: int = 0
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    source: str | None = None  # the file, as shown in messages

    def encoder(self, output_index: int = 0) -> dict | None:
        if not self.output_names:
            return None
        return self.encoders.get(self.output_names[output_index])

    def decode(self, output_index: int, class_indices) -> np.ndarray:
        """Class indices predicted for one output -> the original labels (strings or ints).

        Outputs without a label mapping (regression) get the indices back unchanged."""
        return decode_labels(self.encoder(output_index), class_indices)

    def classes(self, output_index: int = 0) -> list | None:
        enc = self.encoder(output_index)
        return None if enc is None else list(enc["classes"])

    def take(self, indices) -> Dataset:
        """A subset as in-memory arrays (memory maps and lazy casts are read here)."""
        idx = np.asarray(indices)
        return Dataset(
            xs=[np.asarray(x[idx]) for x in self.xs],
            ys=None if self.ys is None else [np.asarray(y[idx]) for y in self.ys],
            sample_weight=None if self.sample_weight is None else self.sample_weight[idx],
            encoders=self.encoders, feature_names=self.feature_names, n=int(len(idx)),
            input_names=self.input_names, output_names=self.output_names, source=self.source)

    def split(self, validation_split: float) -> tuple[Dataset, Dataset]:
        """Hold out the LAST ``validation_split`` fraction of the samples (before any shuffling), as Keras."""
        if not 0.0 < validation_split < 1.0:
            raise ValueError("validation_split must be between 0 and 1")
        split_at = int(math.ceil(self.n * (1.0 - validation_split)))
        if split_at <= 0 or split_at >= self.n:
            raise DataError(problems=[Problem(
                message=f"validation_split {validation_split} of {self.n} samples leaves "
                        f"{'no training' if split_at <= 0 else 'no validation'} samples",
                path="training.validation_split", file=self.source,
                hint="use more data, a different fraction, or data.validation")])
        return self.take(np.arange(split_at)), self.take(np.arange(split_at, self.n))

    def class_indices(self, output_index: int = 0) -> np.ndarray:
        """The target class of every sample for a classification output (from ids, one-hot or 0/1)."""
        if self.ys is None:
            raise ValueError("this dataset has no targets")
        y = np.asarray(self.ys[output_index])
        if np.issubdtype(y.dtype, np.integer):
            return y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
        flat = y.reshape(len(y), -1)
        if flat.shape[1] == 1:
            return (flat[:, 0] >= 0.5).astype(np.int64)
        return flat.argmax(axis=1).astype(np.int64)

    def class_weight_vector(self, class_weight, output_index: int = 0) -> np.ndarray:
        """Per-sample weights from `training.class_weight` ({label: weight} or "balanced").

        Labels are the original class labels as strings (``setosa``, ``3``); for outputs without a
        label mapping, the class index. Classes not listed weigh 1."""
        idx = self.class_indices(output_index)
        enc = self.encoder(output_index)
        n_classes = len(enc["classes"]) if enc else int(idx.max()) + 1 if idx.size else 0
        names = [str(c) for c in enc["classes"]] if enc else [str(i) for i in range(n_classes)]
        if class_weight == "balanced":
            counts = np.bincount(idx, minlength=n_classes).astype(np.float64)
            table = np.where(counts > 0, len(idx) / (max(n_classes, 1) * np.maximum(counts, 1)), 1.0)
        else:
            table = np.ones(n_classes, dtype=np.float64)
            bad = []
            for key, w in dict(class_weight).items():
                if str(key) in names:
                    table[names.index(str(key))] = float(w)
                else:
                    bad.append(str(key))
            if bad:
                problems = []
                for key in bad:
                    near = did_you_mean(key, names)
                    problems.append(Problem(
                        message=f"class_weight names the class {key!r}, which is not in the training data"
                                + (f"; did you mean {near!r}?" if near else ""),
                        path="training.class_weight", file=self.source,
                        expected=f"one of the classes: {', '.join(names[:30])}"))
                raise DataError(problems=problems)
        return table[idx].astype(np.float32)
