"""Image folders: one sub-folder of PNG/JPEG files per class, read with Pillow.

The features are the file paths; the preprocessor reads, resizes and scales them, so
`predict` replays the same steps on new files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from automl.data.preprocess import ImageScaler
from automl.data.raw import FixedTest, Raw
from automl.errors import DataError
from automl.spec import ImageFolderData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_MODES = {"L", "LA", "1", "I", "I;16", "I;16B", "I;16L"}
MAX_SIDE = 64  # chosen sizes are scaled down to this: small inputs keep the search fast
MIN_SIDE = 8


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: Path) -> list[Path]:
    """The image files under a folder, at any depth, in a stable order."""
    return sorted(p for p in folder.rglob("*") if is_image(p))


class ImageFileReader(BaseEstimator, TransformerMixin):
    """File paths -> uint8 array (n, C, H, W): each image converted to `mode` and resized to `size` (H, W)."""

    def __init__(self, size: tuple[int, int] = (32, 32), mode: str = "RGB"):
        self.size = size
        self.mode = mode

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        height, width = self.size
        channels = 1 if self.mode == "L" else 3
        out = np.empty((len(X), channels, height, width), dtype=np.uint8)
        for i, path in enumerate(X):
            pixels = np.asarray(_load(Path(path), self.mode, (width, height)), dtype=np.uint8)
            out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        return out


def _load(path: Path, mode: str, size: tuple[int, int]) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert(mode).resize(size, Image.BILINEAR)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise _unreadable(path, error) from None


def image_preprocessor(size: tuple[int, int], grayscale: bool) -> Pipeline:
    channels = 1 if grayscale else 3
    return Pipeline([
        ("read", ImageFileReader(tuple(size), "L" if grayscale else "RGB")),
        ("scale", ImageScaler((channels, *size), scale=1 / 255)),
    ])


def _class_folders(root: Path, setting: str, least: int) -> tuple[list[Path], np.ndarray]:
    """The image files under each class sub-folder and their labels (the sub-folder names)."""
    name = str(root)
    if not root.is_dir():
        raise DataError(f"{name}: folder not found; data.{setting} must be a folder with one sub-folder of images "
                        "per class")
    loose = [p.name for p in sorted(root.iterdir()) if is_image(p)]
    if loose:
        raise DataError(f"{name}: image files lie directly in the folder ({', '.join(loose[:3])}"
                        f"{', ...' if len(loose) > 3 else ''}); put them in one sub-folder per class, "
                        "named after the class")
    classes = {d.name: image_files(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    classes = {label: files for label, files in classes.items() if files}
    if len(classes) < least:
        found = f"only {next(iter(classes))!r}" if classes else "none"
        raise DataError(f"{name}: needs at least {least} class sub-folder{'s' if least > 1 else ''} holding PNG/JPEG images, found {found}; "
                        "put the images of each class in their own sub-folder")
    paths = [p for files in classes.values() for p in files]
    return paths, np.array([label for label, files in classes.items() for _ in files], dtype=object)


def read_image_folder(source: ImageFolderData, task: str | None) -> Raw:
    name = str(source.path)
    paths, labels = _class_folders(source.path, "path", 2)
    sizes, modes = zip(*(_header(p) for p in paths))
    notes = []
    if source.image_size is not None:
        size = tuple(source.image_size)
        notes.append(f"images resized to {size[0]}x{size[1]} (data.image_size)")
    else:
        size, median = choose_size(sizes)
        notes.append(f"images resized to {size[0]}x{size[1]} (median size {median[0]}x{median[1]})")
    grayscale = source.color == "grayscale" or (source.color == "auto" and set(modes) <= GRAY_MODES)
    notes.append(f"images read as {'grayscale' if grayscale else 'RGB'}"
                 + (" (every image is grayscale)" if grayscale and source.color == "auto" else ""))
    channels = 1 if grayscale else 3
    features = np.array([str(p) for p in paths], dtype=object)
    test = None
    if source.test_path is not None:  # read at the training images' size and colour by the same preprocessor
        test_paths, test_labels = _class_folders(source.test_path, "test_path", 1)
        test = FixedTest(str(source.test_path), np.array([str(p) for p in test_paths], dtype=object), test_labels,
                         lambda i: str(test_paths[i]))
    return Raw(name, "class folder", features, labels, "image", image_preprocessor(size, grayscale),
               channels * size[0] * size[1], lambda i: str(paths[i]), notes=notes, test=test)


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(height, width) and mode, from the file header only."""
    try:
        with Image.open(path) as image:
            return (image.height, image.width), image.mode
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise _unreadable(path, error) from None


def choose_size(sizes) -> tuple[tuple[int, int], tuple[int, int]]:
    """The median (height, width), scaled down (aspect kept) so no side exceeds MAX_SIDE; each side >= MIN_SIDE."""
    median = tuple(int(round(float(np.median([s[k] for s in sizes])))) for k in (0, 1))
    factor = min(1.0, MAX_SIDE / max(median))
    size = tuple(max(MIN_SIDE, int(round(side * factor))) for side in median)
    return size, median


def _unreadable(path: Path, error: Exception) -> DataError:
    return DataError(f"{path}: Pillow cannot read this image ({error}); replace or remove the file")
