"""Regenerate the small datasets shipped in examples/data/.

    pip install scikit-learn statsmodels     # only for this script; layerforge does not need them
    python examples/data/make_datasets.py

Writes, next to this script:
  iris.csv      150 rows: sepal_length,sepal_width,petal_length,petal_width,species (string labels),
                rows shuffled once with a fixed seed (the source is sorted by species)
  digits.npz    x: float32 (1797, 8, 8, 1) in [0, 1] (pixel / 16), y: int64 (1797,) labels 0-9,
                rows shuffled once with a fixed seed
  sunspots.csv  309 rows: year,sunspots (yearly mean sunspot number, 1700-2008)
  sunspots_windows.csv  297 rows: year,lag12..lag1,next (the 12 previous years and the year to forecast)

The output is deterministic: running the script twice gives byte-identical files.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {path.name}")


def make_iris() -> None:
    from sklearn.datasets import load_iris

    iris = load_iris()
    # The source lists the species in blocks of 50. Shuffle once (fixed seed) so that a Keras-style
    # `validation_split` (which holds out the LAST rows) sees all three species.
    order = np.random.default_rng(42).permutation(len(iris.target))
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for row, label in zip(iris.data[order], iris.target[order], strict=True):
        lines.append(",".join(f"{v:.1f}" for v in row) + f",{iris.target_names[label]}")
    write_text(HERE / "iris.csv", "\n".join(lines) + "\n")


def save_npz_deterministic(path: Path, **arrays: np.ndarray) -> None:
    """Like np.savez_compressed, but with a fixed timestamp in the zip so reruns are byte-identical."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    print(f"wrote {path.name}")


def make_digits() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1), pixels 0..16 -> [0, 1]
    y = digits.target.astype(np.int64)
    # shuffled once with a fixed seed: the source is grouped by writer, so a Keras-style
    # validation_split (the last rows) would hold out only unseen writers
    order = np.random.default_rng(42).permutation(len(y))
    x, y = x[order], y[order]
    assert x.shape == (1797, 8, 8, 1) and y.shape == (1797,)
    save_npz_deterministic(HERE / "digits.npz", x=x, y=y)


def make_sunspots() -> None:
    import statsmodels.api as sm

    data = sm.datasets.sunspots.load_pandas().data
    lines = ["year,sunspots"]
    for year, value in zip(data["YEAR"], data["SUNACTIVITY"], strict=True):
        lines.append(f"{int(year)},{value:.1f}")
    write_text(HERE / "sunspots.csv", "\n".join(lines) + "\n")
    make_sunspot_windows()


WINDOW = 12  # years of history per forecast (about one solar cycle)


def make_sunspot_windows() -> None:
    """sunspots_windows.csv from sunspots.csv (numpy only): each row holds 12 consecutive yearly values
    and the next year's, for a model that forecasts one year ahead."""
    table = np.loadtxt(HERE / "sunspots.csv", delimiter=",", skiprows=1)
    years, values = table[:, 0].astype(int), table[:, 1]
    lines = ["year," + ",".join(f"lag{k}" for k in range(WINDOW, 0, -1)) + ",next"]
    for i in range(WINDOW, len(values)):
        window = ",".join(f"{v:.1f}" for v in values[i - WINDOW:i])
        lines.append(f"{years[i]},{window},{values[i]:.1f}")
    write_text(HERE / "sunspots_windows.csv", "\n".join(lines) + "\n")


if __name__ == "__main__":
    make_iris()
    make_digits()
    make_sunspots()
