"""`automl predict`: the exported model applied to a new file, with the training preprocessing.

Only the run's model/ folder is read: model.json says which data kind the model was
trained on (so the new file is read the same way), the fitted preprocessor turns it into
model inputs, and the TorchScript model needs none of the training code; the baseline, when
asked for or chosen, is applied from its arrays (model/baseline.npz).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from automl.errors import AutoMLError, DataError
from automl.final.baseline import baseline_predictions
from automl.final.preprocessor_io import load_preprocessor

BATCH = 4096


class PredictError(AutoMLError):
    """The run directory holds no usable model, or the model asked for is not there."""


def load_facts(run_dir: Path) -> dict:
    path = run_dir / "model" / "model.json"
    if not path.is_file():
        raise PredictError(f"{run_dir}: no exported model (model/model.json missing); the run has not finished - "
                           f"run it to the end with `automl run`, then predict")
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PredictError(f"{path} is not readable JSON ({error}): the file is damaged; rebuild the run's model "
                           "with `automl run` on its spec (finished trials are kept) or restore it from a copy") from None
    if not isinstance(facts, dict) or not isinstance(facts.get("files"), dict):
        raise PredictError(f"{path} does not describe an exported model (no 'files' entry): the file is damaged; "
                           "rebuild it with `automl run` on the run's spec or restore it from a copy")
    return facts


def chosen_model(facts: dict, which: str) -> str:
    """`which` resolved: "single", "ensemble" or "baseline"; `default` is the run's choice on validation."""
    return facts.get("default", "single") if which == "default" else which


def model_label(facts: dict, which: str) -> str:
    """The model `which` names, in words, so that the user knows what predicted."""
    which = chosen_model(facts, which)
    if which == "baseline":
        return f"the baseline ({facts['baseline']['title']}, better on validation than the deep model)" \
            if facts.get("default") == "baseline" else f"the baseline ({facts['baseline']['title']})"
    if which == "ensemble":
        return "the ensemble"
    return "the best single model" + (" (refit on train+validation)" if facts.get("single") == "refit" else "")


def model_file(run_dir: Path, facts: dict, which: str) -> Path:
    files = facts["files"]
    which = chosen_model(facts, which)
    if which == "baseline" and "baseline" not in files:
        raise PredictError(f"{run_dir}: this run saved no baseline (the report says why: none applies to the data, "
                           "or it was not better than the others); use --model single")
    if which == "baseline":
        return run_dir / "model" / files["baseline"]
    key = {"single": "torchscript", "ensemble": "ensemble"}[which]
    if key not in files:
        raise PredictError(f"{run_dir}: this run exported no {which} model (the ensemble needs at least two "
                           "different trials chosen); use --model single")
    return run_dir / "model" / files[key]


def saved_preprocessor(run_dir: Path, facts: dict):
    """The fitted preprocessor from model/preprocessor.json; an older run's pickle is refused, never loaded."""
    name = facts["files"]["preprocessor"]
    if not name.endswith(".json"):
        raise PredictError(f"{run_dir / 'model' / name}: a pickled preprocessor from an older automl; it is not "
                           "loaded, because unpickling a file can run any code it holds. Export the model "
                           "anew as JSON by running `automl run` again with the run's spec and run directory (the "
                           "finished trials are not trained again), then predict")
    return load_preprocessor(run_dir / "model", name)


def predict_file(run_dir: str | Path, input_path: str | Path, which: str = "default",
                 id_column: str | None = None) -> pd.DataFrame:
    """One row per input sample: its id, the prediction and, for classification, the class probabilities.

    The first column holds `id_column`'s values (else the spec's data.id_column), named after it;
    without one it is "id": the file line (or row, or image path) of each sample."""
    import torch

    from automl.data.inputs import read_inputs

    run_dir, input_path = Path(run_dir), Path(input_path)
    facts = load_facts(run_dir)
    path = model_file(run_dir, facts, which)
    preprocessor = saved_preprocessor(run_dir, facts)
    features, ids = read_inputs(facts["data"], input_path, id_column)
    X = preprocessor.transform(features) if preprocessor is not None else features
    X = np.asarray(X, dtype=np.dtype(facts.get("input_dtype", "float32")))
    expected = tuple(facts["input_shape"])
    if tuple(X.shape[1:]) != expected:
        raise DataError(f"{input_path}: gives inputs of shape {tuple(X.shape[1:])} per sample, the model expects "
                        f"{expected}; give a file laid out like the training data")
    if chosen_model(facts, which) == "baseline":
        out = baseline_predictions(run_dir / "model", facts, X)
    else:
        model = torch.jit.load(str(path), map_location="cpu").eval()
        with torch.no_grad():
            out = np.concatenate([model(torch.as_tensor(X[i:i + BATCH])).numpy()
                                  for i in range(0, len(X), BATCH)]) if len(X) else np.zeros((0,))
    source = facts["data"] or {}
    spec_ids = source.get("id_column") if source.get("source") == "csv" else None  # sequence_csv's names sequences
    table = _table(ids, out, facts, id_column or spec_ids or "id")
    table.attrs["model"] = model_label(facts, which)
    return table


def _table(ids: list[str], out: np.ndarray, facts: dict, id_name: str) -> pd.DataFrame:
    frame = pd.DataFrame({id_name: ids})
    if facts["task"] == "classification":
        names = facts["class_names"]
        out = out.reshape(len(ids), len(names))
        frame["prediction"] = [names[i] for i in out.argmax(axis=1)]
        for k, name in enumerate(names):
            frame[f"proba_{name}"] = out[:, k]
    else:
        frame["prediction"] = out.reshape(-1)
    return frame
