"""Folders of images, as Keras' ``image_dataset_from_directory``: one subfolder per class.

    data:
      train: {path: images/, format: image_folder, image_size: [32, 32], color_mode: rgb}

    images/
      cat/ a.png b.jpg ...
      dog/ c.png ...

Classes are the subfolder names in sorted order (saved with the run as the label mapping, so `predict`
names them and `evaluate` maps them the same way); files directly in the top folder and files without an
image extension are ignored, as Keras does. Pixels are decoded by Pillow (an optional dependency: `pip
install layerforge[data]`), converted to ``color_mode`` (grayscale 1 channel, rgb 3, rgba 4), resized to
``image_size`` (height, width) and given as float32 0..255 times ``rescale`` in the model's (h, w, c)
layout. For prediction the path may also be a folder of images without subfolders, one image file, or a
glob pattern (``new/*.png``); images are then read in sorted path order (``Dataset.files``). Labelled
folders (training, evaluation) are read in one fixed shuffled order, as Keras shuffles them, so that a
``validation_split`` (the last samples) holds out images of every class.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from ..config.data_options import IMAGE_SUFFIXES
from ..errors import DataError, Problem
from .dataset import Dataset, InputInfo, OutputInfo
from .table import Problems, display_path, short_list

CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
PIL_MODE = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
GLOB_CHARS = set("*?[")
FILE_ORDER_SEED = 1337


def is_image_path(path: str) -> bool:
    return Path(str(path)).suffix.lower() in IMAGE_SUFFIXES


def is_image_source(source, base_dir: Path) -> bool:
    """Whether a data source names images: `format: image_folder`, a folder, an image file or a glob of them."""
    if source.format == "image_folder":
        return True
    if source.format != "auto":
        return False
    raw = os.path.expanduser(str(source.path))
    if GLOB_CHARS & set(raw):
        return is_image_path(raw) or raw.endswith("*")
    path = Path(raw) if Path(raw).is_absolute() else Path(base_dir) / raw
    return path.is_dir() or is_image_path(raw)


def _pillow(path):
    try:
        from PIL import Image
    except ImportError:
        raise DataError(problems=[Problem(
            message=f"reading images from {display_path(path)} needs Pillow, which is not installed",
            hint='pip install "layerforge[data]" (or pip install pillow)')]) from None
    return Image


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def list_images(source, base_dir: Path, *, labelled: bool, where: str = "") -> tuple[list[Path], list[str] | None]:
    """(files, class name per file or None). ``labelled``: the classes must come from subfolders."""
    raw = os.path.expanduser(str(source.path))
    key = f"{where}.path" if where else "path"
    if GLOB_CHARS & set(raw):
        pattern = raw if Path(raw).is_absolute() else str(Path(base_dir) / raw)
        files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file() and is_image_path(p))
        if not files:
            raise DataError(problems=[Problem(message=f"no image files match {raw!r}", path=key,
                                              hint=f"image files end in {', '.join(IMAGE_SUFFIXES)}")])
        if labelled:
            raise DataError(problems=[Problem(
                message=f"{raw!r} names image files without labels", path=key,
                hint="for training and evaluation give a folder with one subfolder per class")])
        return files, None
    path = Path(raw) if Path(raw).is_absolute() else Path(base_dir) / raw
    if not path.exists():
        raise DataError(problems=[Problem(message=f"image folder not found: {path.absolute()}", path=key,
                                          hint="relative paths start from the config file's folder")])
    if path.is_file():
        if labelled:
            raise DataError(problems=[Problem(
                message=f"{display_path(path)} is one image without a label", path=key,
                hint="for training and evaluation give a folder with one subfolder per class")])
        return [path], None
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if source.format == "auto" and not _images_in(path) and not any(_images_in(d) for d in subdirs):
        from .table import KNOWN_FORMATS

        raise DataError(problems=[Problem(
            message=f"{display_path(path)} is a folder without images, not a data file", path=key,
            hint=f"name a file: {KNOWN_FORMATS} (an image folder holds one subfolder of images per class)")])
    if not subdirs:
        files = _images_in(path)
        if labelled or not files:
            raise DataError(problems=[Problem(
                message=f"{display_path(path)} has no class subfolders" if labelled else
                f"{display_path(path)} holds no image files", path=key,
                found=f"{len(files)} image files directly in the folder",
                hint="put the images of each class in a subfolder named after the class: "
                     f"{display_path(path)}/cat/1.png, {display_path(path)}/dog/2.png")])
        return files, None
    files, labels, empty = [], [], []
    for d in subdirs:
        found = _images_in(d)
        if not found:
            empty.append(d.name)
        files += found
        labels += [d.name] * len(found)
    if empty and labelled:
        raise DataError(problems=[Problem(
            message=f"class folder{'s' if len(empty) > 1 else ''} {short_list(empty)} in {display_path(path)} "
                    "hold no images", path=key,
            hint=f"image files end in {', '.join(IMAGE_SUFFIXES)}; remove empty class folders")])
    if not files:
        raise DataError(problems=[Problem(message=f"{display_path(path)} holds no image files", path=key)])
    if labelled:  # a fixed shuffle (Keras shuffles too), so that validation_split holds out every class
        order = np.random.default_rng(FILE_ORDER_SEED).permutation(len(files))
        files, labels = [files[i] for i in order], [labels[i] for i in order]
    return files, labels


def _geometry(source, inp: InputInfo, P: Problems) -> tuple[int, int, str]:
    shape = tuple(inp.shape)
    if len(shape) != 3:
        raise P.fail(f"images feed an input of shape (height, width, channels); input {inp.name!r} has shape "
                     f"{shape}", hint="set `input_shape: [height, width, 3]` (channels last)")
    mode = source.color_mode
    if mode is None:
        by_channels = {1: "grayscale", 3: "rgb", 4: "rgba"}
        mode = by_channels.get(shape[2])
        if mode is None:
            raise P.fail(f"input {inp.name!r} has {shape[2]} channels; images have 1 (grayscale), 3 (rgb) or 4 "
                         "(rgba)", hint="set the input's last axis to 1, 3 or 4")
    if shape[2] is not None and CHANNELS[mode] != shape[2]:
        raise P.fail(f"color_mode {mode} gives {CHANNELS[mode]} channel{'s' if CHANNELS[mode] > 1 else ''}, but "
                     f"input {inp.name!r} has shape {shape}", path=f"{P.where}.color_mode" if P.where else "color_mode",
                     hint=f"set input_shape: [{shape[0]}, {shape[1]}, {CHANNELS[mode]}], or another color_mode")
    size = source.image_size or [shape[0], shape[1]]
    if any(d is None for d in size):
        raise P.fail(f"input {inp.name!r} has shape {shape}; images need a known height and width",
                     hint="set image_size: [height, width] in the data source")
    h, w = int(size[0]), int(size[1])
    if (shape[0] is not None and shape[0] != h) or (shape[1] is not None and shape[1] != w):
        raise P.fail(f"image_size {[h, w]} does not match input {inp.name!r} of shape {shape}",
                     path=f"{P.where}.image_size" if P.where else "image_size",
                     hint=f"use image_size: [{shape[0]}, {shape[1]}] or change the input's shape")
    return h, w, mode


def decode_images(files: list[Path], h: int, w: int, mode: str, interpolation: str = "bilinear",
                  P: Problems | None = None) -> np.ndarray:
    """(n, h, w, channels) uint8 pixels; an unreadable file is reported with its path."""
    Image = _pillow(files[0] if files else "images")
    resample = getattr(Image.Resampling, interpolation.upper())
    out = np.empty((len(files), h, w, CHANNELS[mode]), dtype=np.uint8)
    bad = []
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img = img.convert(PIL_MODE[mode])
                if img.size != (w, h):
                    img = img.resize((w, h), resample=resample)
                out[i] = np.asarray(img, dtype=np.uint8).reshape(h, w, CHANNELS[mode])
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            bad.append((f, e))
    if bad:
        P = P or Problems(None)
        for f, e in bad[:10]:
            P.add(f"cannot decode image {display_path(f)}: {e}", file=f,
                  hint="remove or replace the damaged file")
        if len(bad) > 10:
            P.add(f"... and {len(bad) - 10} more images that cannot be decoded")
        raise P.error()
    return out


class _ImageLocation:
    """Names an image in label messages (the label-encoding helpers call ``at(i)``)."""

    def __init__(self, files: list[Path]):
        self.files = files
        self.what = "class folder"

    def at(self, i: int) -> tuple[str, None]:
        return f"image {display_path(self.files[i])}", None


def load_images(source, base_dir: Path, *, inputs: list[InputInfo], outputs: list[OutputInfo], require_target: bool,
                encoders: dict, where: str = "") -> Dataset:
    from .readers import _encode_labels, _labels_to_target

    P = Problems(None, where)
    if len(inputs) != 1:
        raise P.fail(f"an image folder feeds a model with one input; this model has {len(inputs)}")
    inp = inputs[0]
    files, labels = list_images(source, base_dir, labelled=require_target, where=where)
    h, w, mode = _geometry(source, inp, P)
    pixels = decode_images(files, h, w, mode, source.interpolation, P)
    x = pixels.astype(np.float32)
    if source.rescale is not None:
        x *= np.float32(source.rescale)
    if np.dtype(inp.dtype) != np.float32:
        x = x.astype(inp.dtype)
    out_encoders = dict(encoders)
    ys = None
    if require_target:
        if len(outputs) != 1:
            raise P.fail(f"class folders give one label per image; this model has {len(outputs)} outputs")
        out = outputs[0]
        loc = _ImageLocation(files)
        idx, enc = _encode_labels(np.asarray(labels, dtype=str), out, encoders.get(out.name), loc, P)
        P.raise_if_any()
        y = _labels_to_target(idx, enc, out, loc, P)
        P.raise_if_any()
        out_encoders[out.name] = enc
        ys = [y]
    folder = display_path(Path(base_dir) / source.path) if not Path(str(source.path)).is_absolute() else \
        display_path(Path(source.path))
    ds = Dataset(xs=[x], ys=ys, sample_weight=None, encoders=out_encoders, feature_names=None, n=len(files),
                 input_names=[inp.name], output_names=[o.name for o in outputs], source=folder,
                 files=[str(f) for f in files])
    return ds


def load_image_files(files: list, options, inp: InputInfo) -> np.ndarray:
    """Image files (paths) -> the model input array, with the image settings of ``options`` (the training
    data source: image_size, color_mode, interpolation, rescale; None: the defaults)."""
    from ..config.training import DataSource

    source = options if options is not None else DataSource(path=str(files[0]))
    P = Problems(None)
    paths = [Path(os.path.expanduser(str(f))) for f in files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise P.fail(f"image file not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                             else ""))
    h, w, mode = _geometry(source, inp, P)
    x = decode_images(paths, h, w, mode, source.interpolation, P).astype(np.float32)
    if source.rescale is not None:
        x *= np.float32(source.rescale)
    return x if np.dtype(inp.dtype) == np.float32 else x.astype(inp.dtype)
