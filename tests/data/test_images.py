"""Image folders: class sub-folders of PNG/JPEG files, read, resized and scaled by a picklable preprocessor."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from automl.data.images import ImageFileReader, choose_size
from automl.data.loaders import load_data
from automl.errors import DataError
from automl.spec import ImageFolderData, SplitSpec

SPLIT = SplitSpec()


def save(path, size=(10, 12), mode="L", value=None, seed=0):
    """An image of (height, width) `size`; `value` fills it, else random pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (*size, 3) if mode == "RGB" else size
    pixels = np.full(shape, value, np.uint8) if value is not None else \
        np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)
    Image.fromarray(pixels, mode=mode).save(path)
    return path


def image_folder(root, classes=("cat", "dog"), per_class=6, **kwargs):
    for c, label in enumerate(classes):
        for i in range(per_class):
            suffix = ".PNG" if i == 0 else (".jpg" if i == 1 else ".png")  # suffixes are case-insensitive
            save(root / label / f"{i}{suffix}", seed=c * 100 + i, **kwargs)
    return root


def source(root, **kwargs):
    return ImageFolderData(source="images", path=root, **kwargs)


def data_error(src) -> str:
    with pytest.raises(DataError) as info:
        load_data(src, SPLIT, task=None, seed=0)
    return str(info.value)


def test_grayscale_folder_loads_as_one_channel_images(tmp_path):
    data = load_data(source(image_folder(tmp_path / "imgs")), SPLIT, task=None, seed=0)
    p = data.profile
    assert (p.modality, p.task, p.input_shape, p.class_names) == ("image", "classification", (1, 10, 12), ("cat", "dog"))
    assert p.n_samples == 12 and p.n_features == 120
    assert data.X_train.dtype == np.float32 and 0 <= data.X_train.min() and data.X_train.max() <= 1
    assert "images resized to 10x12 (median size 10x12)" in p.notes
    assert any("grayscale" in note for note in p.notes)


def test_rgb_when_any_image_has_colour_and_given_size(tmp_path):
    root = image_folder(tmp_path / "imgs")
    save(root / "cat" / "colour.png", mode="RGB", seed=9)
    data = load_data(source(root, image_size=(6, 5)), SPLIT, task=None, seed=0)
    assert data.profile.input_shape == (3, 6, 5)
    forced = load_data(source(root, color="grayscale"), SPLIT, task=None, seed=0)
    assert forced.profile.input_shape[0] == 1


def test_preprocessor_pickles_and_replays_on_file_paths(tmp_path):
    root = image_folder(tmp_path / "imgs")
    data = load_data(source(root), SPLIT, task=None, seed=0)
    pre = pickle.loads(pickle.dumps(data.preprocessor))
    path = root / "cat" / "3.png"
    expected = np.asarray(Image.open(path), dtype=np.float32)[None, None] / 255
    np.testing.assert_allclose(pre.transform([str(path)]), expected, atol=1e-6)


def test_reader_converts_rgb_to_channels_first(tmp_path):
    path = save(tmp_path / "a.png", size=(5, 7), mode="RGB")
    out = ImageFileReader(size=(3, 4), mode="RGB").transform([path])
    assert out.shape == (1, 3, 3, 4) and out.dtype == np.uint8


@pytest.mark.parametrize("sizes, chosen", [
    ([(28, 28)] * 3, (28, 28)),
    ([(200, 100), (300, 150), (100, 50)], (64, 32)),  # median 200x100, scaled to fit 64
    ([(4, 4), (5, 6), (6, 6)], (8, 8)),  # at least 8 per side
    ([(600, 20)], (64, 8)),
])
def test_chosen_size(sizes, chosen):
    assert choose_size(sizes)[0] == chosen


def test_missing_folder(tmp_path):
    message = data_error(source(tmp_path / "nowhere"))
    assert "nowhere" in message and "not found" in message


def test_images_in_the_root_must_go_into_class_folders(tmp_path):
    root = image_folder(tmp_path / "imgs")
    save(root / "stray.png")
    message = data_error(source(root))
    assert "stray.png" in message and "one sub-folder per class" in message


def test_needs_two_classes(tmp_path):
    root = image_folder(tmp_path / "imgs", classes=("cat",))
    (root / "empty").mkdir()
    message = data_error(source(root))
    assert "imgs" in message and "at least 2 class sub-folders" in message and "'cat'" in message


def test_unreadable_image_is_named(tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    message = data_error(source(root))
    assert "broken.png" in message and "cannot read" in message
