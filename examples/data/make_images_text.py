"""Regenerate the image-folder and raw-text examples in examples/data/ (numpy and Pillow only).

    pip install pillow
    python examples/data/make_images_text.py

Writes, next to this script:
  digit_images/<digit>/<n>.png   500 grayscale 8x8 PNGs (50 per digit) from digits.npz, one subfolder per
                                 class, for `format: image_folder` (configs/digits_images.yaml)
  reviews.csv                    1,200 synthetic labelled product reviews, header `review,sentiment`
                                 (positive / negative), for the raw-text example (configs/reviews_text.yaml)

Both are deterministic (fixed seeds; PNGs carry no timestamps): a rerun gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PER_CLASS = 50


def make_digit_images() -> None:
    from PIL import Image

    with np.load(HERE / "digits.npz", allow_pickle=False) as data:
        x, y = data["x"], data["y"]
    root = HERE / "digit_images"
    for digit in range(10):
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        picked = np.flatnonzero(y == digit)[:PER_CLASS]
        for k, i in enumerate(picked):
            pixels = np.clip(np.rint(x[i, :, :, 0] * 255.0), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{k:03d}.png", optimize=True)
    print(f"wrote {root.name}/ (10 folders x {PER_CLASS} images)")


POSITIVE = ["great", "excellent", "love", "loved", "perfect", "wonderful", "amazing", "fantastic", "happy",
            "recommend", "sturdy", "beautiful", "comfortable", "reliable", "best", "superb", "pleased", "fast"]
NEGATIVE = ["terrible", "awful", "broke", "broken", "hate", "hated", "worst", "poor", "disappointed", "useless",
            "cheap", "slow", "flimsy", "refund", "returned", "waste", "horrible", "defective"]
NEUTRAL = ["the", "a", "this", "it", "was", "is", "and", "product", "i", "my", "for", "with", "after", "week",
           "bought", "order", "arrived", "box", "item", "quality", "price", "time", "use", "really", "very",
           "would", "again", "kitchen", "phone", "case", "lamp", "chair", "shoes", "jacket", "bag", "today",
           "month", "days", "gift", "daughter", "son", "wife", "husband", "color", "size", "fit", "battery"]
OPENERS = ["Honestly,", "Well.", "So -", "Update:", "Okay!", "Hmm,", ""]


def make_reviews(n: int = 1200) -> None:
    rng = np.random.default_rng(2024)
    lines = ["review,sentiment"]
    for i in range(n):
        positive = i % 2 == 0
        own, other = (POSITIVE, NEGATIVE) if positive else (NEGATIVE, POSITIVE)
        words = list(rng.choice(NEUTRAL, size=int(rng.integers(6, 18))))
        for _ in range(int(rng.integers(1, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(own)))
        if rng.random() < 0.25:  # a word of the other side, outnumbered: the model must weigh them
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(other)))
        text = " ".join(words)
        text = (str(rng.choice(OPENERS)) + " " + text[0].upper() + text[1:]).strip()
        text += str(rng.choice([".", "!", "!!", "...", "."]))
        lines.append(f'"{text}",{"positive" if positive else "negative"}')
    order = rng.permutation(n) + 1
    body = [lines[0]] + [lines[k] for k in order]
    (HERE / "reviews.csv").write_text("\n".join(body) + "\n", encoding="utf-8", newline="\n")
    print("wrote reviews.csv")


if __name__ == "__main__":
    make_digit_images()
    make_reviews()
