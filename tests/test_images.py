"""Image folders: one subfolder per class (as Keras' image_dataset_from_directory), predict on files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layerforge.config.training import DataSource
from layerforge.data import InputInfo, OutputInfo, load_source
from layerforge.errors import DataError

PIL = pytest.importorskip("PIL", reason="image folders need Pillow (layerforge[data])")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def make_folder(root: Path, classes=("cat", "dog"), per=3, size=(6, 5), mode="RGB") -> dict:
    pixels = {}
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for k in range(per):
            arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr, "RGB").convert(mode).save(root / c / f"{k}.png")
            pixels[f"{c}/{k}.png"] = np.asarray(Image.open(root / c / f"{k}.png").convert("RGB"))
    (root / "notes.txt").write_text("ignored")
    (root / "cat" / "readme.md").write_text("ignored too")
    return pixels


def load(path, base, inp=(5, 6, 3), out=OutputInfo("animal", (2,), sparse=True), **kw):
    require = kw.pop("require_target", True)
    encoders = kw.pop("encoders", None)
    src = DataSource(path=str(path), **kw)
    return load_source(src, base, inputs=[InputInfo("img", inp)], outputs=[out], require_target=require,
                       encoders=encoders, where="data.train")


def test_class_subfolders_give_labels_and_pixels(tmp_path):
    pixels = make_folder(tmp_path / "imgs")
    ds = load("imgs", tmp_path, format="image_folder")
    assert ds.n == 6 and ds.xs[0].shape == (6, 5, 6, 3) and ds.xs[0].dtype == np.float32
    assert ds.encoders["animal"] == {"classes": ["cat", "dog"], "kind": "string"}
    for x, y, f in zip(ds.xs[0], ds.ys[0], ds.files):
        rel = Path(f).relative_to(tmp_path / "imgs").as_posix()
        np.testing.assert_array_equal(x, pixels[rel])
        assert ["cat", "dog"][y] == rel.split("/")[0]
    assert sorted(ds.ys[0].tolist()) == [0, 0, 0, 1, 1, 1]


def test_resize_color_mode_and_rescale(tmp_path):
    make_folder(tmp_path / "imgs")
    ds = load("imgs", tmp_path, inp=(4, 4, 1), image_size=[4, 4], color_mode="grayscale", rescale=1 / 255)
    assert ds.xs[0].shape == (6, 4, 4, 1) and 0 <= ds.xs[0].min() and ds.xs[0].max() <= 1
    with pytest.raises(DataError) as exc:
        load("imgs", tmp_path, inp=(4, 4, 3), color_mode="grayscale")
    assert "color_mode grayscale gives 1 channel" in exc.value.problems[0].message
    with pytest.raises(DataError) as exc:
        load("imgs", tmp_path, inp=(4, 4, 3), image_size=[8, 8])
    assert "image_size [8, 8] does not match" in exc.value.problems[0].message


def test_predict_on_a_folder_a_file_or_a_glob_and_unknown_classes(tmp_path):
    make_folder(tmp_path / "imgs")
    enc = {"animal": {"classes": ["cat", "dog"], "kind": "string"}}
    flat = tmp_path / "new"
    flat.mkdir()
    for k in range(2):
        Image.new("RGB", (6, 5), (k * 100, 0, 0)).save(flat / f"p{k}.jpg")
    ds = load("new", tmp_path, require_target=False, encoders=enc)
    assert ds.n == 2 and ds.ys is None and [Path(f).name for f in ds.files] == ["p0.jpg", "p1.jpg"]
    assert load("new/p1.jpg", tmp_path, require_target=False).n == 1
    assert load(str(tmp_path / "imgs" / "*" / "*.png"), tmp_path, require_target=False).n == 6
    (tmp_path / "imgs" / "bird").mkdir()
    Image.new("RGB", (6, 5)).save(tmp_path / "imgs" / "bird" / "b.png")
    with pytest.raises(DataError) as exc:
        load("imgs", tmp_path, encoders=enc)
    text = exc.value.problems[0].message
    assert "class 'bird'" in text and "b.png" in text


def test_folder_problems_are_clear(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (6, 5)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError) as exc:
        load("flat", tmp_path)
    assert "no class subfolders" in exc.value.problems[0].message
    make_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / "0.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError) as exc:
        load("imgs", tmp_path)
    assert "cannot decode image" in exc.value.problems[0].message and "0.png" in exc.value.problems[0].message
    with pytest.raises(DataError) as exc:
        load("nothere", tmp_path, format="image_folder")
    assert "image folder not found" in exc.value.problems[0].message


def test_shipped_image_config_trains_and_predicts(tmp_path):
    from typer.testing import CliRunner

    from layerforge.cli import app

    runner = CliRunner()
    env = {"COLUMNS": "250", "NO_COLOR": "1"}
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", str(ROOT / "configs" / "digits_images.yaml"), "-q", "-o", str(run),
                              "training.epochs=12"], env=env)
    assert res.exit_code == 0, res.output
    import json

    hist = json.loads((run / "history.json").read_text())
    assert hist[-1]["val_accuracy"] >= 0.85
    assert json.loads((run / "schema.json").read_text())["encoders"]["digit"]["classes"] == [str(d) for d in range(10)]
    res = runner.invoke(app, ["predict", str(run), "--data", str(ROOT / "examples/data/digit_images/4"),
                              "-o", str(tmp_path / "p.csv")], env=env)
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "file,digit" and len(lines) == 51
    assert sum(line.endswith(",4") for line in lines[1:]) >= 45
    import layerforge

    model = layerforge.load(run)
    files = sorted((ROOT / "examples/data/digit_images/4").glob("*.png"))[:5]
    probs = model.predict([str(f) for f in files])
    assert probs.shape == (5, 10)
    expected = [line.split(",")[1] for line in lines[1:6]]
    assert [str(k) for k in probs.argmax(1)] == expected


def test_shipped_image_folder_is_small():
    folder = ROOT / "examples" / "data" / "digit_images"
    files = list(folder.rglob("*.png"))
    assert len(files) == 500 and sum(f.stat().st_size for f in files) < 1_000_000


def test_missing_pillow_is_a_clear_message(tmp_path, monkeypatch):
    import builtins

    make_folder(tmp_path / "imgs")
    real = builtins.__import__

    def no_pil(name, *a, **k):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(DataError) as exc:
        load("imgs", tmp_path)
    assert "layerforge[data]" in exc.value.problems[0].hint
