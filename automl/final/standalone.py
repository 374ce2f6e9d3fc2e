"""Apply an automl export with torch, numpy and the Python standard library alone.

automl copies this file into every export as model/standalone.py. It reads model.json and
preprocessor.json (plain JSON: no pickle, no automl, no scikit-learn) and replays the fitted
input transform with numpy, then runs model.pt (or ensemble.pt) with torch:

    import sys; sys.path.insert(0, "RUN/model")
    import standalone
    export = standalone.load("RUN/model")
    ids, out = export.predict_csv("new.csv")   # a CSV laid out like the training file
    out = export.predict(raw)                  # or raw inputs you read yourself (see `transform`)

`out` holds class probabilities (n, classes; names in `export.classes`) or predictions (n,).
The source lives in automl/final/standalone.py; automl never imports it, it is the user's.
A transform this file cannot replay raises ExportError saying so: use `automl predict`.
"""
from __future__ import annotations

import csv
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch

BATCH = 4096
# Cells pandas reads as missing (automl reads CSV files with pandas, plus "?").
NA_CELLS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
            "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "?"}
TOKEN = re.compile(r"\w+|[^\w\s]")


class ExportError(Exception):
    """The export or the inputs cannot be used as they are; the message says why and what to do."""


def load(folder: str | Path | None = None, which: str = "default") -> "Export":
    """The export in `folder` (default: this file's folder). `which`: "default" (the run's choice),
    "single" or "ensemble"."""
    return Export(Path(folder) if folder is not None else Path(__file__).resolve().parent, which)


class Export:
    def __init__(self, folder: Path, which: str = "default"):
        self.folder = folder
        self.facts = _json(folder / "model.json")
        files = self.facts.get("files", {})
        if not str(files.get("preprocessor", "")).endswith(".json"):
            raise ExportError(f"{folder}: no preprocessor.json in this export (an older automl); export it anew")
        document = _json(folder / files["preprocessor"])
        self._transform = _build(document["transform"])
        self.which = _resolve(self.facts, which, folder)
        path = folder / files["ensemble" if self.which == "ensemble" else "torchscript"]
        self.model = torch.jit.load(str(path), map_location="cpu").eval()
        self.classes = self.facts.get("class_names")

    def transform(self, raw) -> np.ndarray:
        """Raw inputs as model inputs. raw is what the training data held: a table (a dict of
        column -> cells, a pandas DataFrame or a list of row dicts) for a CSV, a numeric array
        for an npz, a list of texts for text, sequences as an (n, length, channels) array or a
        list of (length, channels) arrays, image file paths for an image folder."""
        X = self._transform(raw)
        X = np.asarray(X, dtype=np.dtype(self.facts.get("input_dtype", "float32")))
        expected = tuple(self.facts["input_shape"])
        if tuple(X.shape[1:]) != expected:
            raise ExportError(f"the inputs have shape {tuple(X.shape[1:])} per sample, the model expects {expected}")
        return X

    def predict(self, raw) -> np.ndarray:
        X = self.transform(raw)
        if not len(X):
            return np.zeros((0, len(self.classes)) if self.classes else (0,), dtype=np.float32)
        with torch.no_grad():
            return np.concatenate([self.model(torch.as_tensor(X[i:i + BATCH])).numpy()
                                   for i in range(0, len(X), BATCH)])

    def predict_csv(self, path: str | Path, id_column: str | None = None) -> tuple[list[str], np.ndarray]:
        """The ids (id_column's values, else the spec's data.id_column, else "line N") and the outputs."""
        raw, ids = self.inputs_from_csv(path, id_column)
        return ids, self.predict(raw)

    def inputs_from_csv(self, path: str | Path, id_column: str | None = None) -> tuple[object, list[str]]:
        """A new CSV file read as `automl predict` reads it for the run's data source."""
        source = self.facts.get("data") or {}
        kind = source.get("source")
        if kind not in ("csv", "text_csv", "sequence_csv"):
            raise ExportError(f"this model was trained on {kind!r} data, not a CSV file: read the inputs yourself "
                              "and call predict(raw)")
        table, lines = read_csv(path, source.get("delimiter", ","))
        long = kind == "sequence_csv" and source.get("layout") == "long"
        id_column = id_column or (source.get("id_column") if kind == "csv" else None)
        ids = [f"line {line}" for line in lines]
        if id_column and long:
            raise ExportError(f"{path}: layout 'long' names each sequence by its id column; give no id_column")
        if id_column:
            if id_column not in table:
                raise ExportError(f"{path}: no id column {id_column!r}; columns are: {', '.join(map(repr, table))}")
            ids = ["" if v is None else v.strip() for v in table[id_column]]
        if kind == "csv":
            return table, ids
        if kind == "text_csv":
            texts = _require(table, source["text_column"], path, "text")
            return [_blank(v) or "" for v in texts], ids
        exclude = {source.get("target"), *source.get("drop", ()), id_column}
        if not long:
            steps = [c for c in table if c not in exclude]
            return _numbers(table, steps, lines, path)[:, :, None], ids
        return _long_sequences(table, lines, path, source, exclude)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: file not found; the export is incomplete") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ExportError(f"{path}: not readable JSON ({error})") from None


def _resolve(facts: dict, which: str, folder: Path) -> str:
    if which not in ("default", "single", "ensemble"):
        raise ExportError(f"which must be 'default', 'single' or 'ensemble', not {which!r}")
    chosen = facts.get("default", "single") if which == "default" else which
    if chosen == "baseline":  # ROCKET features and scikit-learn models are not replayed here
        warnings.warn("the run prefers its baseline model (model/baseline.npz), which this file does not replay; "
                      "using the single deep model (`automl predict --model baseline` applies the baseline)")
        chosen = "single"
    if chosen == "ensemble" and "ensemble" not in facts.get("files", {}):
        raise ExportError(f"{folder}: this run exported no ensemble; use which='single'")
    return chosen


# --- reading CSV files like automl does ----------------------------------------------------

def read_csv(path: str | Path, delimiter: str = ",") -> tuple[dict[str, list], list[int]]:
    """Columns of text cells (None where pandas sees a missing value) and each row's file line;
    blank and all-empty rows are left out, as automl does."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.reader(file, delimiter=delimiter))
    except FileNotFoundError:
        raise ExportError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ExportError(f"{path}: cannot be read as UTF-8 CSV ({error})") from None
    if not rows:
        raise ExportError(f"{path}: the file is empty; it needs a header line and data rows")
    header = [name.strip() for name in rows[0]]
    table: dict[str, list] = {name: [] for name in header}
    lines = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) > len(header):
            raise ExportError(f"{path}: line {number} has {len(row)} fields, the header {len(header)}")
        cells = [None if cell in NA_CELLS else cell for cell in row] + [None] * (len(header) - len(row))
        if all(_blank(cell) is None for cell in cells):
            continue
        for name, cell in zip(header, cells):
            table[name].append(cell)
        lines.append(number)
    return table, lines


def _blank(cell):
    """A text cell stripped, None when empty (automl's blank_to_nan)."""
    if isinstance(cell, str):
        cell = cell.strip()
        return cell or None
    return cell


def _require(table: dict, name: str, path, role: str) -> list:
    if name not in table:
        raise ExportError(f"{path}: no {role} column {name!r}; columns are: {', '.join(map(repr, table))}")
    return table[name]


def _number(cell) -> float:
    """A finite float or NaN, as pandas.to_numeric(errors="coerce") reads a cell."""
    cell = _blank(cell)
    if cell is None or isinstance(cell, str) and (not cell.isascii() or "_" in cell):  # float() takes these, pandas not
        return math.nan
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _numbers(table: dict, names: list[str], lines: list[int], path) -> np.ndarray:
    """Every cell of the columns as a float (rows, columns); an empty or bad cell is an error."""
    values = np.array([[_number(cell) for cell in _require(table, name, path, "value")] for name in names],
                      dtype=np.float64).T.reshape(len(lines), len(names))
    bad = np.argwhere(np.isnan(values))
    if len(bad):
        row, column = bad[0]
        raise ExportError(f"{path}: line {lines[row]}, column {names[column]!r} is empty or not a number; every "
                          "value of a sequence must be a finite number")
    return values


def _long_sequences(table: dict, lines: list[int], path, source: dict, exclude: set):
    """Rows grouped by the id column (in order of first appearance), each sorted by the time column."""
    id_name, time_name = source["id_column"], source.get("time_column")
    ids = [_blank(v) for v in _require(table, id_name, path, "id")]
    channels = [c for c in table if c not in exclude | {id_name, time_name}]
    values = _numbers(table, channels, lines, path)
    if time_name:
        times = [_blank(v) for v in _require(table, time_name, path, "time")]
        if None in times:
            raise ExportError(f"{path}: column {time_name!r} is empty on line {lines[times.index(None)]}; every row "
                              "needs a value")
        numbers = [_number(t) for t in times]
        order = numbers if not any(math.isnan(n) for n in numbers) else [str(t) for t in times]
    else:
        order = list(range(len(lines)))
    groups: dict[str, list[int]] = {}
    for row, name in enumerate(ids):
        if name is None:
            raise ExportError(f"{path}: column {id_name!r} is empty on line {lines[row]}; every row needs a value")
        groups.setdefault(str(name), []).append(row)
    sequences = np.empty(len(groups), dtype=object)
    for k, rows in enumerate(groups.values()):
        sequences[k] = values[sorted(rows, key=lambda r: order[r])]  # sorted() is stable, like automl's argsort
    return sequences, list(groups)


# --- the fitted transforms of preprocessor.json -----------------------------------------------

def _array(doc):
    if doc is None:
        return None
    dtype = np.dtype(doc["dtype"])
    if dtype.kind not in "biuf":
        raise ExportError(f"preprocessor.json: not a numeric array ({dtype})")
    return np.asarray(doc["data"], dtype=dtype).reshape(doc["shape"])


def _scaler(state: dict):
    """scikit-learn's StandardScaler.transform: in place, in float32 when the input is float32."""
    mean, scale = _array(state["mean"]), _array(state["scale"])

    def transform(X):
        X = np.array(X)
        X = X.astype(X.dtype if X.dtype in (np.float32, np.float64) else np.float64, copy=True)
        if state["with_mean"]:
            X -= mean
        if state["with_std"]:
            X /= scale
        return X
    return transform


def _category(value):
    """A cell as a category, as automl's FrameCoercer reads it; None when missing."""
    if isinstance(value, str):
        return value.strip() or None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # a typed frame may hold 3.0 where the training CSV said "3"
    return str(value)


def _columns(table, names: list[str]) -> dict[str, list]:
    if isinstance(table, (list, tuple)):  # row dicts: a key no row has is a missing column
        table = {name: [row.get(name) for row in table] for name in names if any(name in row for row in table)}
    missing = [name for name in names if name not in table]
    if missing:
        raise ExportError(f"feature column(s) missing from the input: {', '.join(map(repr, missing))}; give a table "
                          "with the columns of the training file")
    return {name: list(table[name]) for name in names}


def _frame(state: dict):
    """automl's CSV transform: numeric columns median-imputed and standardised, then categorical
    ones imputed with the most frequent value and one-hot encoded (unseen categories: all zeros)."""
    numeric, categorical = list(state["numeric"]), list(state["categorical"])
    scale = _scaler(state["numeric_scale"]) if numeric else None

    def transform(table):
        columns = _columns(table, numeric + categorical)
        n = len(next(iter(columns.values())))
        parts = []
        if numeric:
            X = np.array([[_number(v) for v in columns[name]] for name in numeric], dtype=np.float64).T.reshape(n, -1)
            X = np.where(np.isnan(X), _array(state["numeric_impute"]), X)
            parts.append(scale(X))
        for name, fill, categories in zip(categorical, state.get("categorical_impute", ()),
                                          state.get("categories", ())):
            index = {category: k for k, category in enumerate(categories)}
            block = np.zeros((n, len(categories)))
            for i, value in enumerate(columns[name]):
                value = _category(value)
                k = index.get(fill if value is None else value)
                if k is not None:
                    block[i, k] = 1.0
                elif state["handle_unknown"] == "error":
                    raise ExportError(f"column {name!r}: category {value!r} was not seen in training")
            parts.append(block)
        return np.concatenate(parts, axis=1)
    return transform


def _image_scaler(state: dict):
    shape, scale = tuple(int(s) for s in state["input_shape"]), np.float32(state["scale_"])

    def transform(X):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 0 or X.size != len(X) * int(np.prod(shape)):
            raise ExportError(f"expected images of shape {shape}, got an array of shape {X.shape}")
        return np.ascontiguousarray(X.reshape(-1, *shape) * scale)
    return transform


def _image_reader(state: dict):
    height, width = (int(s) for s in state["size"])
    mode = str(state["mode"])

    def transform(paths):
        try:
            from PIL import Image
        except ImportError:
            raise ExportError("reading image files needs Pillow (pip install pillow); or give pixel arrays "
                              "to the model yourself") from None
        channels = 1 if mode == "L" else 3
        out = np.empty((len(paths), channels, height, width), dtype=np.uint8)
        for i, path in enumerate(paths):
            try:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert(mode).resize((width, height), Image.BILINEAR), dtype=np.uint8)
            except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
                raise ExportError(f"{path}: not a readable image ({error})") from None
            out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        return out
    return transform


def _sequence_scaler(state: dict):
    """Pad (at the end) or cut to the training length, standardise each channel."""
    channels, length = int(state["channels"]), int(state["length"])
    mean, std = _array(state["mean"]), _array(state["std"])

    def transform(X):
        if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
            X = X.astype(np.float64)
            X = X[:, :, None] if X.ndim == 2 else X
        out = np.zeros((len(X), length, channels), dtype=np.float32)
        for i, sequence in enumerate(X):
            sequence = np.asarray(sequence, dtype=np.float64)
            sequence = sequence[:, None] if sequence.ndim == 1 else sequence
            if sequence.ndim != 2 or sequence.shape[1] != channels:
                raise ExportError(f"sequence {i} has shape {sequence.shape}; the model expects (length, {channels})")
            sequence = sequence[:length]
            out[i, :len(sequence)] = (sequence - mean) / std
        return out
    return transform


def _text_encoder(state: dict):
    """Word and punctuation tokens -> vocabulary ids (1: unknown), padded with 0 to the training length."""
    vocab, length, lowercase = state["vocab"], int(state["length"]), bool(state["lowercase"])

    def transform(texts):
        texts = ["" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t) for t in texts]
        out = np.zeros((len(texts), length), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [vocab.get(w, 1) for w in TOKEN.findall(text.lower() if lowercase else text)[:length]]
            out[i, :len(ids)] = ids
        return out
    return transform


def _pipeline(state: dict):
    steps = [_build(step) for _, step in state["steps"]]

    def transform(X):
        for step in steps:
            X = step(X)
        return X
    return transform


BUILDERS = {"none": lambda state: (lambda X: X), "StandardScaler": _scaler, "frame": _frame,
            "ImageScaler": _image_scaler, "ImageFileReader": _image_reader, "SequenceScaler": _sequence_scaler,
            "TextEncoder": _text_encoder, "Pipeline": _pipeline}


def _build(state: dict):
    kind = state.get("type")
    if kind not in BUILDERS:
        raise ExportError(f"preprocessor.json holds a {kind!r} transform, which this file cannot replay; use "
                          "`automl predict` (or a newer standalone.py from the same automl version)")
    return BUILDERS[kind](state)
