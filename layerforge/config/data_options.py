"""Typed options of a `data:` source beyond the file itself: image folders, raw text, numeric preprocessing.

They live in their own module so that `config/training.py` only names them; each is validated like every
other config field (unknown keys and wrong types are reported with file:line:column).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TextOptions(_Strict):
    """A raw text column turned into token ids, as Keras' TextVectorization(output_mode='int') does.

    The vocabulary is fitted on the training split only and saved with the run, so `predict` and
    `evaluate` map words to the same ids. Id 0 is padding, id 1 the out-of-vocabulary token."""

    column: str | int = Field(description="the text column (name, or 0-based index)")
    max_tokens: int = Field(10000, ge=3, description="vocabulary size, padding (0) and out-of-vocabulary (1) "
                                                    "included; the most frequent words are kept")
    sequence_length: int = Field(100, ge=1, description="ids per sample: shorter texts are padded with 0, "
                                                        "longer ones truncated")
    standardize: Literal["lower_and_strip_punctuation", "lower", "strip_punctuation", "none"] = Field(
        "lower_and_strip_punctuation", description="text clean-up before splitting into words")
    padding: Literal["post", "pre"] = Field("post", description="pad at the end (post, as TextVectorization) or "
                                                                "at the start (pre, as pad_sequences)")
    truncating: Literal["post", "pre"] = Field("post", description="drop words at the end (post) or start (pre)")
    min_count: int = Field(1, ge=1, description="words seen fewer times in the training split are out of "
                                                "vocabulary")


ScaleKind = Literal["standardize", "minmax", "none"]


class PreprocessOptions(_Strict):
    """Numeric feature preprocessing, fitted on the training split only and saved with the run."""

    scale: ScaleKind = Field("none", description="for every feature column: standardize (mean 0, std 1), "
                                                 "minmax (to [0, 1]) or none")
    columns: dict[str, ScaleKind] = Field(default_factory=dict, description="per-column scaling that overrides "
                                                                            "`scale` (column name -> kind)")
    fill_missing: Literal["mean", "median", "zero", "none"] | float = Field(
        "none", description="missing feature cells (empty, NA, NaN, ...): the training split's mean or median, "
                            "zero, a number, or none (missing cells are an error)")

    @field_validator("fill_missing", mode="before")
    @classmethod
    def _finite_fill(cls, v):
        if isinstance(v, bool):
            raise ValueError("fill_missing takes mean, median, zero, none or a number")
        if isinstance(v, (int, float)) and not (float("-inf") < float(v) < float("inf")):
            raise ValueError("fill_missing must be a finite number")
        return v


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def check_image_size(v):
    if v is None:
        return v
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ValueError("image_size is [height, width]")
    for d in v:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1 or d > 8192:
            raise ValueError("image_size holds two whole numbers from 1 to 8192: [height, width]")
    return list(v)


