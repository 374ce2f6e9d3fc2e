"""Export the best model so it loads without this package's training code.

model/model.pt is TorchScript: `torch.jit.load` gives a module that maps preprocessed
inputs to class probabilities (classification) or predictions in the target's units
(regression); model/ensemble.pt, when the run built an ensemble, is the same for the
weighted ensemble. model/preprocessor.json holds the fitted input transform as data
(`preprocessor_io.load_preprocessor` rebuilds it; never a pickle, so loading a run directory
runs no code), model/model.json the facts needed to use them. model/standalone.py (a copy of
standalone.py beside this file, never imported by automl) replays that transform with numpy
alone, so a user applies the export with torch, numpy and the standard library.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from automl.data.base import PreparedData
from automl.files import write_atomic
from automl.final.preprocessor_io import save_preprocessor

HOW_TO_LOAD = """\
import sys; sys.path.insert(0, "model")  # model/standalone.py: needs torch and numpy only, no automl
import standalone
export = standalone.load("model")        # model.json, preprocessor.json (no pickle), model.pt or ensemble.pt
ids, out = export.predict_csv("new.csv") # a CSV laid out like the training file; or:
out = export.predict(raw)                # raw inputs as in training (table, array, texts, image paths)
# out: class probabilities (names: export.classes) or predictions; export.transform(raw): the model inputs
"""
STANDALONE = Path(__file__).with_name("standalone.py")  # copied as text, never imported


class ExportedModel(nn.Module):
    """The trained network plus the output transform the trainer applied outside it."""

    def __init__(self, net: nn.Module, classification: bool, y_mean: float, y_std: float):
        super().__init__()
        self.net = net
        self.classification = classification
        self.y_mean = y_mean
        self.y_std = y_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.classification:
            return torch.softmax(out, dim=1)
        return out.squeeze(1) * self.y_std + self.y_mean


def _trace(net: nn.Module, data: PreparedData, path: Path) -> None:
    module = ExportedModel(net.cpu().eval(), data.profile.task == "classification", data.y_mean, data.y_std).eval()
    example = torch.as_tensor(data.X_test[:2] if len(data.X_test) >= 2 else data.X_train[:2])
    with torch.no_grad():
        # torch's own check of the trace imports torch.distributed for its comparison (1-4 s per run);
        # the same check, done here: the traced module gives the eager module's outputs
        scripted = torch.jit.trace(module, example, check_trace=False)
        expected, traced = module(example), scripted(example)
    if not torch.allclose(traced, expected, rtol=1e-4, atol=1e-5, equal_nan=True):
        raise RuntimeError("the exported (traced) model does not reproduce the trained model's outputs; "
                           "its forward depends on more than the input tensor")
    write_atomic(path, scripted.save_to_buffer())  # torch's own file writer aborts the process on a full disk


def export_model(net: nn.Module, data: PreparedData, config: Mapping[str, Any], trial_id: str, metric: str,
                 out_dir: Path, *, data_source: Mapping[str, Any] | None = None, ensemble: nn.Module | None = None,
                 default: str = "single", single: str = "search") -> dict[str, Any]:
    """model.pt (the single best model), ensemble.pt when there is an ensemble, and what
    `automl predict` needs to read new data the way the training data were read. `single` says
    what model.pt holds: the best trial's model ("search") or its configuration refit ("refit")."""
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = data.profile
    preprocessor = save_preprocessor(data.preprocessor, out_dir)  # first: an unknown class fails before the model
    _trace(net, data, out_dir / "model.pt")
    state = io.BytesIO()
    torch.save(net.state_dict(), state)  # through write_atomic: a full disk is an OSError naming the file
    write_atomic(out_dir / "state_dict.pt", state.getvalue())
    write_atomic(out_dir / STANDALONE.name, STANDALONE.read_text(encoding="utf-8"))
    files = {"torchscript": "model.pt", "state_dict": "state_dict.pt", "preprocessor": preprocessor,
             "standalone": STANDALONE.name}
    if ensemble is not None:
        _trace(ensemble, data, out_dir / "ensemble.pt")
        files["ensemble"] = "ensemble.pt"
    else:
        (out_dir / "ensemble.pt").unlink(missing_ok=True)  # a rerun without an ensemble leaves no stale one
    (out_dir / "preprocessor.pkl").unlink(missing_ok=True)  # an older export's pickle: never loaded, not kept
    facts = {
        "trial_id": trial_id,
        "family": config["family"],
        "config": dict(config),
        "task": profile.task,
        "metric": metric,
        "modality": profile.modality,
        "input_shape": list(profile.input_shape),
        "input_dtype": str(data.X_train.dtype),
        "class_names": list(profile.class_names) if profile.class_names else None,
        "target": profile.target,
        "data": dict(data_source) if data_source is not None else None,
        "outputs": "class probabilities" if profile.task == "classification" else "predictions",
        "default": default if ensemble is not None else "single",
        "single": single,
        "files": files,
    }
    write_atomic(out_dir / "model.json", json.dumps(facts, indent=2))
    return {"path": "model/model.pt", "format": "torchscript", "how": HOW_TO_LOAD,
            **({"ensemble_path": "model/ensemble.pt"} if ensemble is not None else {})}
