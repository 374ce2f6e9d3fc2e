"""Write the example data the specs in specs/ read, offline, into specs/data/ (or --out).

- digits_png/: scikit-learn's 8x8 digits as grey PNG files, one sub-folder per class
  (specs/digits_images.json);
- waves.npz: noisy sine, square and sawtooth waves to tell apart, X of shape
  (n, 96, 2): the wave and a drifting second channel (specs/waves.json);
- reviews.csv: short product reviews with a sentiment label, written from word lists with
  negation, mixed opinions and label noise so it is not solved by one word (specs/reviews.json).

    python scripts/make_example_data.py [--out specs/data]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

SEED = 0


def write_digit_images(out: Path) -> int:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(image * (255 / 16), 0, 255).astype(np.uint8)  # values 0..16 -> 0..255
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
    return len(digits.target)


def make_waves(n: int = 900, length: int = 96, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    labels = rng.integers(0, 3, size=n)
    X = np.empty((n, length, 2), dtype=np.float32)
    for i, label in enumerate(labels):
        frequency, phase = rng.uniform(2, 6), rng.uniform(0, 2 * np.pi)
        angle = 2 * np.pi * frequency * t + phase
        if label == 0:
            wave = np.sin(angle)
        elif label == 1:
            wave = np.sign(np.sin(angle))
        else:
            wave = 2 * ((angle / (2 * np.pi)) % 1.0) - 1
        X[i, :, 0] = rng.uniform(1.0, 2.0) * wave + rng.normal(scale=0.3, size=length)
        X[i, :, 1] = np.cumsum(rng.normal(scale=0.1, size=length))  # a distractor channel
    return X, np.array(["sine", "square", "sawtooth"])[labels]


POSITIVE = ["great", "excellent", "lovely", "perfect", "sturdy", "fast", "comfortable", "reliable", "beautiful", "handy"]
NEGATIVE = ["broken", "terrible", "horrible", "awful", "flimsy", "slow", "useless", "disappointing", "noisy", "cheap"]
THINGS = ["the battery", "this kettle", "the strap", "the screen", "delivery", "the handle", "the lid", "the charger",
          "the fabric", "customer service", "the app", "the zipper"]
FILLER = ["i bought it last week", "my sister recommended it", "it arrived on tuesday", "used it every day",
          "price was ok", "box was big", "came in blue", "as described in the listing", "second one i own"]


def make_reviews(n: int = 1000, seed: int = SEED) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        positive = bool(rng.integers(0, 2))
        sentences = []
        for _ in range(rng.integers(2, 5)):
            agrees = rng.random() < 0.75  # a review mixes opinions; the majority carries the label
            good = positive if agrees else not positive
            negated = rng.random() < 0.25  # "not great" means bad: bag-of-words alone gets it wrong
            word = rng.choice(POSITIVE if good != negated else NEGATIVE)
            sentences.append(f"{rng.choice(THINGS)} is {'not ' if negated else ''}{word}")
        sentences.insert(int(rng.integers(0, len(sentences) + 1)), str(rng.choice(FILLER)))
        label = positive if rng.random() > 0.05 else not positive  # 5% label noise, as in real reviews
        rows.append((". ".join(sentences).capitalize() + ".", "positive" if label else "negative"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "specs" / "data")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    images = write_digit_images(out / "digits_png")
    X, y = make_waves()
    np.savez(out / "waves.npz", X=X, y=y)
    with open(out / "reviews.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        writer.writerows(make_reviews())
    print(f"wrote {images} PNG files to {out / 'digits_png'}, {len(X)} sequences to {out / 'waves.npz'}, "
          f"reviews to {out / 'reviews.csv'}")


if __name__ == "__main__":
    main()
