"""The exported model loads in a fresh process without automl and predicts what the run measured."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from automl.agent import Agent
from automl.data import load_data
from automl.spec import load_spec
from tests.conftest import write_spec

PREDICT = textwrap.dedent("""\
    import json, sys
    import numpy as np, torch
    sys.modules["automl"] = None  # prove the model needs nothing from the package
    run_dir, X_path = sys.argv[1], sys.argv[2]
    model = torch.jit.load(f"{run_dir}/model/model.pt")
    with torch.no_grad():
        out = model(torch.as_tensor(np.load(X_path), dtype=torch.float32)).numpy()
    np.save(X_path.replace(".npy", "_out.npy"), out)
    """)


def test_exported_model_round_trips_in_a_fresh_process(tmp_path):
    spec_path = write_spec(tmp_path, data={"source": "builtin", "name": "sklearn:wine"}, refit=False)
    spec = load_spec(spec_path)
    summary = Agent(spec).run()
    data = load_data(spec.data, spec.split, task=None, seed=spec.seed)  # same seed: same split
    np.save(tmp_path / "X.npy", data.X_test)
    script = tmp_path / "predict.py"
    script.write_text(PREDICT)
    subprocess.run([sys.executable, str(script), str(tmp_path / "run"), str(tmp_path / "X.npy")], check=True)
    proba = np.load(tmp_path / "X_out.npy")
    assert proba.shape == (len(data.y_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float((proba.argmax(axis=1) == data.y_test).mean())
    assert accuracy == summary["models"]["search"]["test"]["accuracy"]  # model.pt: the single best model
    facts = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert facts["class_names"] == ["class_0", "class_1", "class_2"] and facts["input_shape"] == [13]


def test_exported_regression_model_predicts_in_target_units(tmp_path):
    spec = load_spec(write_spec(tmp_path, data={"source": "builtin", "name": "sklearn:diabetes"}, refit=True))
    summary = Agent(spec).run()
    data = load_data(spec.data, spec.split, task=None, seed=spec.seed)
    import torch

    model = torch.jit.load(str(tmp_path / "run" / "model" / "model.pt"))
    with torch.no_grad():
        pred = model(torch.as_tensor(data.X_test)).numpy()
    rmse = float(np.sqrt(np.mean((pred - data.y_test) ** 2)))
    expected = summary["models"]["refit"]["test"]["rmse"]  # model.pt: the refit best configuration
    assert abs(rmse - expected) < 1e-3 * expected
