"""Export the best model so it loads without this package's training code.

model/model.pt is TorchScript: `torch.jit.load` gives a module that maps preprocessed
inputs to class probabilities (classification) or predictions in the target's units
(regression). model/preprocessor.pkl holds the fitted input transform (scikit-learn),
model/model.json the facts needed to use both.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from automl.data.base import PreparedData

HOW_TO_LOAD = """\
import pickle, torch
model = torch.jit.load("model/model.pt")            # no automl import needed
prep = pickle.load(open("model/preprocessor.pkl", "rb"))  # None when inputs need no transform
X = prep.transform(raw_rows) if prep is not None else raw_array   # float32, shape (n, *input_shape)
out = model(torch.as_tensor(X, dtype=torch.float32))  # class probabilities, or predictions
"""


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


def export_model(net: nn.Module, data: PreparedData, config: Mapping[str, Any], trial_id: str,
                 metric: str, out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = data.profile
    module = ExportedModel(net.cpu().eval(), profile.task == "classification", data.y_mean, data.y_std).eval()
    example = torch.as_tensor(data.X_test[:2] if len(data.X_test) >= 2 else data.X_train[:2])
    with torch.no_grad():
        scripted = torch.jit.trace(module, example)
    scripted.save(str(out_dir / "model.pt"))
    torch.save(net.state_dict(), out_dir / "state_dict.pt")
    with open(out_dir / "preprocessor.pkl", "wb") as handle:
        pickle.dump(data.preprocessor, handle)
    facts = {
        "trial_id": trial_id,
        "family": config["family"],
        "config": dict(config),
        "task": profile.task,
        "metric": metric,
        "input_shape": list(profile.input_shape),
        "class_names": list(profile.class_names) if profile.class_names else None,
        "target": profile.target,
        "outputs": "class probabilities" if profile.task == "classification" else "predictions",
        "files": {"torchscript": "model.pt", "state_dict": "state_dict.pt", "preprocessor": "preprocessor.pkl"},
    }
    (out_dir / "model.json").write_text(json.dumps(facts, indent=2))
    return {"path": "model/model.pt", "format": "torchscript", "how": HOW_TO_LOAD}
