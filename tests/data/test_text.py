"""Text CSVs: the tokenizer, a vocabulary from the training split only, int64 token ids."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from automl.data.loaders import load_data
from automl.data.text import TextEncoder, tokenize
from automl.errors import DataError
from automl.spec import SplitSpec, TextCsvData

SPLIT = SplitSpec()
POSITIVE = ["good film", "great acting, good plot", "loved it!", "good good good"]
NEGATIVE = ["bad film", "awful plot; bad acting", "hated it", "boring and bad"]


def write(tmp_path, rows, header="review,label", name="reviews.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def reviews(tmp_path, n=40):
    rows = [f'"{(POSITIVE if i % 2 else NEGATIVE)[i % 4]}",{"pos" if i % 2 else "neg"}' for i in range(n)]
    return write(tmp_path, rows)


def text_source(path, **kwargs):
    return TextCsvData(source="text_csv", path=path, text_column="review", target="label", **kwargs)


def data_error(src) -> str:
    with pytest.raises(DataError) as info:
        load_data(src, SPLIT, task=None, seed=0)
    return str(info.value)


def test_tokenizer_splits_words_and_punctuation():
    assert tokenize("Don't STOP, now!") == ["don", "'", "t", "stop", ",", "now", "!"]
    assert tokenize("Hello World", lowercase=False) == ["Hello", "World"]


def test_vocabulary_order_specials_and_unknown_words():
    encoder = TextEncoder(max_length=5).fit(["b a b", "c a b", None])
    assert encoder.vocab_ == {"<pad>": 0, "<unk>": 1, "b": 2, "a": 3, "c": 4}  # by count, ties alphabetical
    out = encoder.transform(["a zebra b", "b b b b b b b", float("nan")])
    assert out.dtype == np.int64
    assert out.tolist() == [[3, 1, 2, 0, 0], [2] * 5, [0] * 5]


def test_min_count_and_max_vocab():
    texts = ["a a a b b c", "a b d"]
    assert list(TextEncoder(min_count=2).fit(texts).vocab_) == ["<pad>", "<unk>", "a", "b"]
    assert list(TextEncoder(max_vocab=1).fit(texts).vocab_) == ["<pad>", "<unk>", "a"]


def test_length_is_the_95th_percentile_within_bounds():
    assert TextEncoder().fit(["w " * n for n in range(1, 101)]).length_ == 96
    assert TextEncoder().fit(["one"]).length_ == 4
    assert TextEncoder().fit(["w " * 1000]).length_ == 256


def test_text_csv_loads_int64_token_ids(tmp_path):
    data = load_data(text_source(reviews(tmp_path)), SPLIT, task=None, seed=0)
    p = data.profile
    assert (p.modality, p.task, p.class_names, p.feature_kinds) == ("text", "classification", ("neg", "pos"), {"text": 1})
    length = p.input_shape[0]
    assert data.X_train.dtype == data.X_val.dtype == data.X_test.dtype == np.int64
    assert data.X_train.shape == (p.n_train, length) and length >= 4
    assert p.vocab_size == len(data.preprocessor.vocab_) and data.X_train.max() < p.vocab_size
    assert any(f"vocabulary of {p.vocab_size - 2} words from the training split" in n for n in p.notes)
    assert pickle.loads(pickle.dumps(data.preprocessor)).transform(["good film"]).shape == (1, length)


def test_vocabulary_comes_from_training_rows_only(tmp_path):
    rows = [f"common word{i},{'a' if i % 2 else 'b'}" for i in range(40)]  # each word{i} in one row only
    data = load_data(text_source(write(tmp_path, rows), max_length=4), SPLIT, task=None, seed=0)
    vocab = data.preprocessor.vocab_
    assert len(vocab) == 2 + 1 + data.profile.n_train  # "common" + one word per training row
    assert data.profile.vocab_size == len(vocab)
    # every test row's own word was never seen in training: <unk> (1)
    assert (data.X_test[:, 1] == 1).all() and (data.X_test[:, 0] == vocab["common"]).all()


def test_empty_texts_are_kept_with_a_note(tmp_path):
    rows = [f"word{i % 3},{i % 2}" for i in range(20)] + [",1", '"  ",0']
    p = load_data(text_source(write(tmp_path, rows)), SPLIT, task="classification", seed=0).profile
    assert p.n_samples == 22 and any("2 empty text(s)" in note for note in p.notes)


def test_missing_text_column(tmp_path):
    message = data_error(TextCsvData(source="text_csv", path=reviews(tmp_path), text_column="body", target="label"))
    assert "reviews.csv" in message and "text column 'body'" in message and "'review'" in message


def test_missing_target_names_the_line(tmp_path):
    message = data_error(text_source(write(tmp_path, ["fine,a", "meh,", "bad,b"])))
    assert "reviews.csv" in message and "'label'" in message and "line(s) 3" in message
