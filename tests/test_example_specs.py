"""Every spec in specs/ is valid, and the example data script writes what the data-kind
examples read: each of them loads and plans as shipped, and one runs end to end."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from automl.agent import make_plan
from automl.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.json"))
DATA_KIND_SPECS = {"digits_images": "image", "waves": "sequence", "reviews": "text"}


@pytest.fixture(scope="module")
def example_specs(tmp_path_factory):
    """specs/ copied with the data the script writes, as a user gets it after running the script."""
    folder = tmp_path_factory.mktemp("examples") / "specs"
    folder.mkdir()
    for spec in SPECS:
        shutil.copy(spec, folder / spec.name)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_example_data.py"), "--out", str(folder / "data")],
                   check=True, capture_output=True)
    return folder


def test_every_shipped_spec_is_valid():
    assert {p.stem for p in SPECS} >= {"digits", *DATA_KIND_SPECS}
    for path in SPECS:
        load_spec(path)


@pytest.mark.parametrize("name", list(DATA_KIND_SPECS))
def test_the_data_kind_examples_load_and_plan(example_specs, name):
    plan = make_plan(load_spec(example_specs / f"{name}.json"))
    assert plan.data.profile.modality == DATA_KIND_SPECS[name]
    assert plan.data.profile.task == "classification" and len(plan.families) >= 2


def test_the_text_example_runs_and_predicts(example_specs, tmp_path):
    document = json.loads((example_specs / "reviews.json").read_text())
    document["budget"] = {"max_trials": 1, "max_epochs": 3}  # the example's own budget takes minutes
    document["families"] = {"include": ["embedding_bag"]}
    spec = example_specs / "reviews_small.json"
    spec.write_text(json.dumps(document))
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "automl.cli", "run", str(spec), "--quiet", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "finished" and results["test"]["accuracy"] > 0.5
    predicted = subprocess.run([sys.executable, "-m", "automl.cli", "predict", str(out),
                                str(example_specs / "data" / "reviews.csv"), "--out", str(tmp_path / "p.csv")],
                               capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    assert "1000 prediction(s)" in predicted.stdout
