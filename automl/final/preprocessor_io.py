"""The fitted input transform saved as JSON (model/preprocessor.json), never as a pickle.

A run directory is data: `automl predict` on a folder someone sent must not run code from
it, and unpickling a file can. So the exported preprocessor is written as its fitted state
(column lists, means, scales, imputed values, categories, vocabulary) and rebuilt from it
into the same scikit-learn style object, whose `transform` gives the same output.

Only the classes the data readers build are known: a plain StandardScaler, the CSV
pipeline of `frame_preprocessor`, ImageScaler, ImageFileReader (in a Pipeline before an
ImageScaler), SequenceScaler and TextEncoder. Any other object is refused at export.
Numbers are written with Python's exact float text, so they read back bit for bit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from automl.data.images import ImageFileReader
from automl.data.preprocess import FrameCoercer, ImageScaler, frame_preprocessor
from automl.data.sequences import SequenceScaler
from automl.data.text import TextEncoder
from automl.errors import DataError

FILENAME = "preprocessor.json"
FORMAT = "automl-preprocessor"
VERSION = 1


class UnknownPreprocessor(DataError):
    """A preprocessor of a class this module cannot store without pickle."""


# --- arrays and values -------------------------------------------------------------------

def _array(values) -> dict[str, Any] | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"not a numeric array: {values.dtype}")
    return {"dtype": values.dtype.str, "shape": list(values.shape), "data": values.ravel().tolist()}


def _from_array(doc: dict[str, Any] | None) -> np.ndarray | None:
    if doc is None:
        return None
    dtype = np.dtype(doc["dtype"])
    if dtype.kind not in "biuf":
        raise ValueError(f"not a numeric dtype: {dtype}")
    return np.asarray(doc["data"], dtype=dtype).reshape(doc["shape"])


def _plain(value):
    """A numpy scalar or array as JSON values (str, int, float, lists)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# --- save ----------------------------------------------------------------------------------

def _scaler_state(scaler: StandardScaler) -> dict[str, Any]:
    if hasattr(scaler, "feature_names_in_"):
        raise TypeError("a StandardScaler fit on named columns")
    return {"with_mean": bool(scaler.with_mean), "with_std": bool(scaler.with_std),
            "mean": _array(scaler.mean_), "scale": _array(scaler.scale_), "var": _array(scaler.var_),
            "n_samples_seen": _array(scaler.n_samples_seen_), "n_features_in": int(scaler.n_features_in_)}


def _same_structure(a, b) -> bool:
    """Same classes and parameters all the way down (a fitted pipeline against an unfitted one)."""
    if type(a) is not type(b):
        return False
    pa, pb = a.get_params(deep=False), b.get_params(deep=False)
    if pa.keys() != pb.keys():
        return False
    for key, va in pa.items():
        vb = pb[key]
        if key in ("steps", "transformers"):
            if len(va) != len(vb) or any(x[0] != y[0] or list(x[2:]) != list(y[2:]) or not _same_structure(x[1], y[1])
                                         for x, y in zip(va, vb)):
                return False
        elif hasattr(va, "get_params"):
            if not _same_structure(va, vb):
                return False
        elif key != "categories" and va != vb and not (_is_nan(va) and _is_nan(vb)):  # categories: set on load
            return False
    return True


def _is_nan(value) -> bool:
    return isinstance(value, float) and value != value


def _frame_state(prep: Pipeline) -> dict[str, Any]:
    coerce = prep.steps[0][1]
    numeric, categorical = tuple(coerce.numeric), tuple(coerce.categorical)
    if not _same_structure(prep, frame_preprocessor(numeric, categorical)):
        raise TypeError("a Pipeline that is not the one frame_preprocessor builds")
    columns: ColumnTransformer = prep.named_steps["columns"]
    state: dict[str, Any] = {"numeric": list(numeric), "categorical": list(categorical)}
    if numeric:
        part = columns.named_transformers_["numeric"]
        state["numeric_impute"] = _array(part.named_steps["impute"].statistics_)
        state["numeric_scale"] = _scaler_state(part.named_steps["scale"])
    if categorical:
        part = columns.named_transformers_["categorical"]
        onehot = part.named_steps["onehot"]
        state["categorical_impute"] = _plain(part.named_steps["impute"].statistics_)
        state["categories"] = [_plain(c) for c in onehot.categories_]
        state["handle_unknown"] = onehot.handle_unknown
    return state


def _state(prep) -> dict[str, Any]:
    if prep is None:
        return {"type": "none"}
    kind = type(prep)
    if kind is StandardScaler:
        return {"type": "StandardScaler", **_scaler_state(prep)}
    if kind is ImageScaler:
        return {"type": "ImageScaler", "input_shape": [int(s) for s in prep.input_shape],
                "scale": None if prep.scale is None else float(prep.scale), "scale_": float(prep.scale_)}
    if kind is ImageFileReader:
        return {"type": "ImageFileReader", "size": [int(s) for s in prep.size], "mode": str(prep.mode)}
    if kind is SequenceScaler:
        return {"type": "SequenceScaler", "channels": int(prep.channels_), "length": int(prep.length_),
                "min_length": int(prep.min_length_), "mean": _array(prep.mean_), "std": _array(prep.std_)}
    if kind is TextEncoder:
        return {"type": "TextEncoder", "max_length": prep.max_length, "max_vocab": int(prep.max_vocab),
                "min_count": int(prep.min_count), "lowercase": bool(prep.lowercase), "length": int(prep.length_),
                "vocab": {str(word): int(i) for word, i in prep.vocab_.items()}}
    if kind is Pipeline and prep.steps and type(prep.steps[0][1]) is FrameCoercer:
        return {"type": "frame", **_frame_state(prep)}
    if kind is Pipeline:
        return {"type": "Pipeline", "steps": [[name, _state(step)] for name, step in prep.steps]}
    raise TypeError(f"class {kind.__module__}.{kind.__qualname__}")


def save_preprocessor(prep, folder: Path) -> str:
    """Write `prep`'s fitted state to folder/preprocessor.json; returns the file name.

    A preprocessor of an unknown class raises UnknownPreprocessor: it is not pickled instead."""
    path = Path(folder) / FILENAME
    try:
        document = {"format": FORMAT, "version": VERSION, "transform": _state(prep)}
    except (TypeError, AttributeError) as error:
        raise UnknownPreprocessor(
            f"{path}: the fitted preprocessor cannot be saved ({error}); only the preprocessors automl's data "
            "readers build can be stored, as JSON, and a pickle is never written because loading one can run "
            "code") from None
    path.write_text(json.dumps(document))
    return FILENAME


# --- load ----------------------------------------------------------------------------------

def _scaler(state: dict[str, Any]) -> StandardScaler:
    scaler = StandardScaler(with_mean=state["with_mean"], with_std=state["with_std"])
    scaler.mean_, scaler.scale_, scaler.var_ = (_from_array(state[k]) for k in ("mean", "scale", "var"))
    seen = _from_array(state["n_samples_seen"])
    scaler.n_samples_seen_ = seen if seen.ndim else seen.item()
    scaler.n_features_in_ = int(state["n_features_in"])
    return scaler


def _frame(state: dict[str, Any]) -> Pipeline:
    numeric, categorical = tuple(state["numeric"]), tuple(state["categorical"])
    prep = frame_preprocessor(numeric, categorical)
    dummy = {name: [0.0] for name in numeric}
    if categorical:
        categories = state["categories"]
        prep.set_params(columns__categorical__onehot__categories=[_objects(c) for c in categories],
                        columns__categorical__onehot__handle_unknown=state["handle_unknown"])
        dummy.update({name: [c[0] if c else "?"] for name, c in zip(categorical, categories)})
    prep.fit(pd.DataFrame(dummy, columns=[*numeric, *categorical]))  # builds the structure; the state is set next
    columns = prep.named_steps["columns"]
    if numeric:
        part = columns.named_transformers_["numeric"]
        part.named_steps["impute"].statistics_ = _from_array(state["numeric_impute"])
        scale = part.named_steps["scale"]
        for key, value in vars(_scaler(state["numeric_scale"])).items():
            setattr(scale, key, value)
    if categorical:
        part = columns.named_transformers_["categorical"]
        part.named_steps["impute"].statistics_ = _objects(state["categorical_impute"])
    return prep


def _build(state: dict[str, Any]):
    kind = state["type"]
    if kind == "none":
        return None
    if kind == "StandardScaler":
        return _scaler(state)
    if kind == "ImageScaler":
        scaler = ImageScaler(tuple(int(s) for s in state["input_shape"]), state["scale"])
        scaler.scale_ = float(state["scale_"])
        return scaler
    if kind == "ImageFileReader":
        return ImageFileReader(tuple(int(s) for s in state["size"]), str(state["mode"]))
    if kind == "SequenceScaler":
        scaler = SequenceScaler()
        scaler.channels_, scaler.length_, scaler.min_length_ = (int(state[k]) for k in ("channels", "length",
                                                                                        "min_length"))
        scaler.mean_, scaler.std_ = _from_array(state["mean"]), _from_array(state["std"])
        return scaler
    if kind == "TextEncoder":
        encoder = TextEncoder(state["max_length"], state["max_vocab"], state["min_count"], state["lowercase"])
        encoder.vocab_ = {str(word): int(i) for word, i in state["vocab"].items()}
        encoder.vocab_size_, encoder.length_ = len(encoder.vocab_), int(state["length"])
        return encoder
    if kind == "frame":
        return _frame(state)
    if kind == "Pipeline":
        return Pipeline([(str(name), _build(step)) for name, step in state["steps"]])
    raise ValueError(f"unknown preprocessor type {kind!r}")


def load_preprocessor(folder: str | Path, filename: str = FILENAME):
    """The fitted preprocessor saved by `save_preprocessor` (None when the inputs need no transform).

    Reads JSON only; a damaged or foreign document raises DataError naming the file."""
    path = Path(folder) / filename
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; the exported model is incomplete - run `automl run` again with "
                        "the run's spec to export it anew") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{path}: not a readable JSON document ({error}); export the model anew") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        raise DataError(f"{path}: not a preprocessor document of this automl version (format {FORMAT!r}, "
                        f"version {VERSION}); export the model anew")
    try:
        return _build(document["transform"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise DataError(f"{path}: a damaged preprocessor document ({type(error).__name__}: {error}); export the "
                        "model anew") from None
