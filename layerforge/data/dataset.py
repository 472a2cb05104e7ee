"""A :class:`Dataset`: a data file fitted to a model's inputs and outputs, plus the label mappings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, Problem


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
    # fitted text vocabulary / numeric scaling (data/preprocess.py); save with the run, pass back to load_source
    preprocessing: dict | None = None
    files: list[str] | None = None  # image folders: the image file of each sample

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
            input_names=self.input_names, output_names=self.output_names, source=self.source,
            preprocessing=self.preprocessing,
            files=None if self.files is None else [self.files[i] for i in idx.reshape(-1).tolist()])

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
