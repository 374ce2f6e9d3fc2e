"""Text: a CSV column of texts turned into fixed-length int64 token ids.

The tokenizer is a plain regex (words and single punctuation marks), so nothing is
downloaded and `predict` tokenizes new texts exactly as in training.
"""
from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from automl.data.csvfile import (
    check_columns,
    read_table,
    read_test_table,
    target_values,
)
from automl.data.preprocess import blank_to_nan
from automl.data.raw import FixedTest, Raw
from automl.errors import DataError
from automl.spec import TextCsvData

TOKEN = re.compile(r"\w+|[^\w\s]")
PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1
LENGTH_PERCENTILE = 95
MAX_AUTO_LENGTH = 256
MIN_LENGTH = 4


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return TOKEN.findall(text.lower() if lowercase else text)


def _texts(X) -> list[str]:
    """Missing cells (None, NaN) become empty texts."""
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in X]


class TextEncoder(BaseEstimator, TransformerMixin):
    """Texts -> int64 token ids (n, length_), padded with 0 at the end and cut at length_.

    `fit` builds the vocabulary from the training texts only: 0 <pad>, 1 <unk>, then the
    words seen at least `min_count` times, most frequent first (ties alphabetical), at most
    `max_vocab` of them. Without `max_length` the length is the 95th percentile of training
    token counts, between MIN_LENGTH and MAX_AUTO_LENGTH.
    """

    def __init__(self, max_length: int | None = None, max_vocab: int = 20000, min_count: int = 1,
                 lowercase: bool = True):
        self.max_length = max_length
        self.max_vocab = max_vocab
        self.min_count = min_count
        self.lowercase = lowercase

    def fit(self, X, y=None):
        tokens = [tokenize(t, self.lowercase) for t in _texts(X)]
        counts = Counter(word for text in tokens for word in text)
        kept = sorted((w for w, c in counts.items() if c >= self.min_count), key=lambda w: (-counts[w], w))
        self.vocab_ = {PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(kept[:self.max_vocab])}}
        self.vocab_size_ = len(self.vocab_)
        if self.max_length is not None:
            self.length_ = int(self.max_length)
        else:
            typical = np.percentile([len(t) for t in tokens], LENGTH_PERCENTILE) if tokens else 0
            self.length_ = int(min(MAX_AUTO_LENGTH, max(MIN_LENGTH, math.ceil(typical))))
        return self

    def transform(self, X):
        texts = _texts(X)
        out = np.zeros((len(texts), self.length_), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [self.vocab_.get(w, 1) for w in tokenize(text, self.lowercase)[:self.length_]]
            out[i, :len(ids)] = ids
        return out

    def fit_notes(self) -> list[str]:
        why = "data.max_length" if self.max_length is not None else f"{LENGTH_PERCENTILE}th percentile"
        return [f"vocabulary of {self.vocab_size_ - 2} words from the training split; texts cut to "
                f"{self.length_} tokens ({why})"]


def text_column(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, int]:
    """The texts as an object array (empty cells become ""), and how many were empty."""
    cells = blank_to_nan(frame[column])
    empty = int(cells.isna().sum())
    return cells.fillna("").to_numpy(dtype=object), empty


def read_text_csv(source: TextCsvData, task: str | None) -> Raw:
    frame, lines = read_table(source.path, source.delimiter)
    name = str(source.path)
    check_columns(name, list(frame.columns), source.delimiter, {source.target: "target", source.text_column: "text"})
    y = target_values(frame[source.target], lines, name, source.target, task)
    texts, empty = text_column(frame, source.text_column)
    if empty == len(texts):
        raise DataError(f"{name}: text column {source.text_column!r} is empty on every line; check data.text_column")
    notes = [f"{empty} empty text(s) in column {source.text_column!r} read as empty texts"] if empty else []
    encoder = TextEncoder(source.max_length, source.max_vocab, source.min_count, source.lowercase)
    test = None
    if source.test_path is not None:
        test_frame, test_lines, test_y = read_test_table(source.test_path, source.delimiter, source.target, task,
                                                         {source.text_column: "text"})
        test = FixedTest(str(source.test_path), text_column(test_frame, source.text_column)[0], test_y,
                         lambda i: f"line {test_lines[i]}")
    return Raw(name, source.target, texts, y, "text", encoder, 1, lambda i: f"line {lines[i]}",
               feature_kinds={"text": 1}, notes=notes, test=test)
