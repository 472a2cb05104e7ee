"""Data: reading CSV/TSV/NPY/NPZ files, fitting them to a model, label encoding, writing predictions.

numpy only (no pandas, no numba). Entry points:

- ``load_source(source, base_dir, inputs=[InputInfo...], outputs=[OutputInfo...], require_target=True,
  encoders=None, feature_names=None, where="data.train") -> Dataset``
- ``read_table(source, base_dir) -> Table`` (the raw file, before it meets a model)
- ``write_predictions(path, predictions, output_names, encoders=..., mode="both")``
"""

from .dataset import Dataset, InputInfo, LazyCast, OutputInfo, decode_labels
from .readers import load_source
from .table import MMAP_THRESHOLD, Table, read_table
from .writers import atomic_write, predicted_indices, write_predictions

__all__ = [
    "Dataset", "InputInfo", "LazyCast", "MMAP_THRESHOLD", "OutputInfo", "Table", "atomic_write", "decode_labels",
    "load_source", "predicted_indices", "read_table", "write_predictions",
]
