"""The export applies with torch, numpy and JSON alone: model/standalone.py, in a process where
automl cannot be imported, gives `automl predict`'s outputs; and predict names rows by an id column."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from automl.agent import Agent
from automl.cli import main
from automl.data import load_data
from automl.errors import DataError, SpecError
from automl.final.export import export_model
from automl.final.predict import predict_file
from automl.spec import load_spec
from automl.training.trained_models import WeightedAverage
from tests.conftest import write_spec

# argv: a JSON list of jobs; each writes its outputs (and ids) beside the job file
STANDALONE = textwrap.dedent("""\
    import sys
    sys.modules["automl"] = None  # before anything else: any import of automl fails
    import json
    import numpy as np
    jobs = json.loads(open(sys.argv[1]).read())
    sys.path.insert(0, jobs[0]["model"])
    import standalone
    for job in jobs:
        export = standalone.load(job["model"], job.get("which", "default"))
        if job["kind"] == "csv":
            ids, out = export.predict_csv(job["input"])
        else:
            raw = np.load(job["input"])["X"] if job["kind"] == "npz" else job["input"]
            ids, out = None, export.predict(raw)
        np.save(job["out"] + ".npy", out)
        json.dump(ids, open(job["out"] + ".json", "w"))
    assert "sklearn" not in sys.modules and "pandas" not in sys.modules, "needs only torch and numpy"
    """)


def run_standalone(folder, jobs) -> list[tuple[list | None, np.ndarray]]:
    jobs = [{**job, "out": str(folder / f"out{k}")} for k, job in enumerate(jobs)]
    (folder / "jobs.json").write_text(json.dumps(jobs))
    (folder / "standalone_check.py").write_text(STANDALONE)
    done = subprocess.run([sys.executable, str(folder / "standalone_check.py"), str(folder / "jobs.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return [(json.loads((folder / f"out{k}.json").read_text()), np.load(folder / f"out{k}.npy"))
            for k in range(len(jobs))]


def customers(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], rows)
    age = rng.uniform(18, 80, rows).round(1)
    return pd.DataFrame({"customer": [f"c{seed}-{i}" for i in range(rows)], "age": age, "colour": colour,
                         "spend": rng.normal(100, 30, rows).round(2),
                         "churned": np.where((colour == "red") ^ (age > 50), "yes", "no")})


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, one_torch_thread):
    """A finished CSV run (id column, a categorical column, missing values) and new rows to predict."""
    folder = tmp_path_factory.mktemp("csv_run")
    train = customers(90, 0)
    train.loc[3, "age"] = np.nan
    train.to_csv(folder / "train.csv", index=False)
    new = customers(6, 1).drop(columns="churned")
    new = new.astype({"age": object, "spend": object})
    new.loc[0, "age"] = ""            # missing number: imputed with the training median
    new.loc[1, "colour"] = "purple"   # unseen category: no one-hot column set
    new.loc[2, "colour"] = " "        # missing category: the most frequent one
    new.loc[3, "spend"] = "?"         # read as missing, as in training
    new.to_csv(folder / "new.csv", index=False)
    data = {"source": "csv", "path": "train.csv", "target": "churned", "id_column": "customer"}
    Agent(load_spec(write_spec(folder, data=data, refit=False))).run()
    return folder


def test_standalone_csv_export_matches_automl_predict_without_automl(csv_run):
    model = csv_run / "run" / "model"
    assert (model / "standalone.py").is_file()
    assert "standalone" in json.loads((csv_run / "run" / "results.json").read_text())["model"]["how"]
    models = ["single"] + (["ensemble"] if "ensemble" in json.loads((model / "model.json").read_text())["files"]
                           else [])
    outputs = run_standalone(csv_run, [{"model": str(model), "kind": "csv", "input": str(csv_run / "new.csv"),
                                        "which": which} for which in models])
    for which, (ids, out) in zip(models, outputs):
        expected = predict_file(csv_run / "run", csv_run / "new.csv", which)
        assert ids == [f"c1-{i}" for i in range(6)] == expected["customer"].tolist()
        np.testing.assert_allclose(out, expected[["proba_no", "proba_yes"]].to_numpy(), atol=1e-5)


def test_predict_names_rows_by_the_id_column(csv_run):
    table = predict_file(csv_run / "run", csv_run / "new.csv")
    assert table.columns[0] == "customer" and table["customer"].tolist() == [f"c1-{i}" for i in range(6)]
    facts = json.loads((csv_run / "run" / "model" / "model.json").read_text())
    assert facts["input_shape"] == [2 + 3]  # age, spend and 3 colours: the id is no feature
    result = CliRunner().invoke(main, ["predict", str(csv_run / "run"), str(csv_run / "new.csv"), "--id-column",
                                       "colour", "--out", str(csv_run / "p.csv")])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(csv_run / "p.csv", keep_default_na=False)["colour"].tolist()[:3] == \
        list(customers(6, 1)["colour"][:1]) + ["purple", ""]


def test_a_missing_id_column_is_one_clear_error(csv_run):
    customers(3, 2).drop(columns="customer").to_csv(csv_run / "no_ids.csv", index=False)
    with pytest.raises(DataError, match=r"no_ids\.csv: no id column 'customer'"):
        predict_file(csv_run / "run", csv_run / "no_ids.csv")
    result = CliRunner().invoke(main, ["predict", str(csv_run / "run"), str(csv_run / "new.csv"), "--id-column",
                                       "nope", "--out", str(csv_run / "p.csv")])
    assert result.exit_code != 0 and "new.csv: no id column 'nope'" in result.output
    assert "Traceback" not in result.output


def test_the_id_column_must_be_in_the_training_file_and_is_not_the_target(tmp_path):
    customers(30, 0).to_csv(tmp_path / "train.csv", index=False)
    spec = load_spec(write_spec(tmp_path, data={"source": "csv", "path": "train.csv", "target": "churned",
                                                "id_column": "nope"}))
    with pytest.raises(DataError, match=r"train\.csv: no id column 'nope'"):
        load_data(spec.data, spec.split, task=None, seed=0)
    with pytest.raises(SpecError, match="id_column 'churned' is the target"):
        load_spec(write_spec(tmp_path, data={"source": "csv", "path": "train.csv", "target": "churned",
                                             "id_column": "churned"}))


class Linear(nn.Module):
    """A fixed random linear map, enough to check that inputs reach the model transformed alike."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.linear = nn.Linear(inputs, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1).float())


def exported(folder, source: dict):
    """`source`'s data read and its preprocessor fitted as a run does, exported with an untrained model."""
    spec = load_spec(write_spec(folder, data=source))
    data = load_data(spec.data, spec.split, task=None, seed=0)
    torch.manual_seed(0)
    net = Linear(int(np.prod(data.profile.input_shape)), len(data.profile.class_names))
    export_model(net, data, {"family": "linear"}, "t0", "accuracy", folder / "run" / "model",
                 data_source=spec.data.model_dump(mode="json"))
    return folder / "run"


def test_standalone_replays_the_other_data_kinds(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    jobs, expected = [], []

    def add(name, source, new, kind, raw=None):
        folder = tmp_path / name
        run = exported(folder, source)
        jobs.append({"model": str(run / "model"), "kind": kind, "input": raw if raw is not None else str(new)})
        expected.append(predict_file(run, new).filter(like="proba_").to_numpy())

    (tmp_path / "seq").mkdir()  # longer sequences than in training: cut to the training length
    np.savez(tmp_path / "seq" / "s.npz", X=rng.normal(size=(60, 20, 2)).astype(np.float32), y=np.arange(60) % 2)
    np.savez(tmp_path / "seq" / "new.npz", X=rng.normal(size=(5, 25, 2)).astype(np.float32) * 3)
    add("seq", {"source": "npz", "path": "s.npz", "kind": "sequence"}, tmp_path / "seq" / "new.npz", "npz")

    (tmp_path / "tab").mkdir()
    np.savez(tmp_path / "tab" / "t.npz", X=rng.normal(5, 2, (60, 4)), y=np.arange(60) % 3)
    np.savez(tmp_path / "tab" / "new.npz", X=rng.normal(5, 2, (5, 4)))
    add("tab", {"source": "npz", "path": "t.npz"}, tmp_path / "tab" / "new.npz", "npz")

    (tmp_path / "text").mkdir()
    words = ["good", "bad", "the", "box", "Was", "fine!", "awful."]
    pd.DataFrame({"text": [" ".join(rng.choice(words, 5)) for _ in range(60)], "label": ["a", "b"] * 30}) \
        .to_csv(tmp_path / "text" / "t.csv", index=False)
    pd.DataFrame({"text": ["GOOD box, unseen words", "", "bad " * 40]}).to_csv(tmp_path / "text" / "new.csv",
                                                                                index=False)
    add("text", {"source": "text_csv", "path": "t.csv", "text_column": "text", "target": "label"},
        tmp_path / "text" / "new.csv", "csv")

    for label, base in (("light", 200), ("dark", 50)):
        (tmp_path / "img" / "pics" / label).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(base + rng.normal(0, 30, (10, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / "pics" / label / f"{i}.png")
    dark = tmp_path / "img" / "pics" / "dark"  # predict reads a folder's images in sorted order
    add("img", {"source": "images", "path": "pics"}, dark, "paths", raw=sorted(str(p) for p in dark.glob("*.png")))

    for (_, out), want in zip(run_standalone(tmp_path, jobs), expected):
        np.testing.assert_allclose(out, want, atol=1e-5)


def test_standalone_refuses_a_transform_it_cannot_replay(tmp_path):
    np.savez(tmp_path / "t.npz", X=np.random.default_rng(1).normal(size=(40, 3)), y=np.arange(40) % 2)
    model = exported(tmp_path, {"source": "npz", "path": "t.npz"}) / "model"
    document = json.loads((model / "preprocessor.json").read_text())
    document["transform"] = {"type": "PCA"}  # as a newer automl might write
    (model / "preprocessor.json").write_text(json.dumps(document))
    script = f"import sys; sys.modules['automl'] = None; sys.path.insert(0, {str(model)!r})\n" \
             f"import standalone; standalone.load({str(model)!r})"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode != 0 and "'PCA' transform, which this file cannot replay" in done.stderr


def test_an_exported_ensemble_is_the_weighted_average_of_its_members_in_predict_and_standalone(tmp_path):
    """The ensemble's export end to end: model/ensemble.pt, `automl predict --model ensemble` and
    standalone.py give the members' probabilities averaged with the ensemble's weights."""
    np.savez(tmp_path / "t.npz", X=np.random.default_rng(2).normal(5, 2, (60, 4)), y=np.arange(60) % 3)
    np.savez(tmp_path / "new.npz", X=np.random.default_rng(3).normal(5, 2, (7, 4)))
    spec = load_spec(write_spec(tmp_path, data={"source": "npz", "path": "t.npz"}))
    data = load_data(spec.data, spec.split, task=None, seed=0)
    torch.manual_seed(0)
    members = [Linear(4, 3), Linear(4, 3)]
    source = spec.data.model_dump(mode="json")

    def probabilities(run: str, which: str = "default") -> np.ndarray:
        return predict_file(tmp_path / run, tmp_path / "new.npz", which).filter(like="proba_").to_numpy()

    for k, member in enumerate(members):  # each member alone, as its own run's single model
        export_model(member, data, {"family": "linear"}, f"t{k}", "accuracy", tmp_path / f"alone{k}" / "model",
                     data_source=source)
    model = tmp_path / "run" / "model"
    export_model(members[0], data, {"family": "linear"}, "t0", "accuracy", model, data_source=source,
                 ensemble=WeightedAverage(members, classification=True, weights=[0.25, 0.75]), default="ensemble")
    assert "ensemble" in json.loads((model / "model.json").read_text())["files"]
    blended = probabilities("run", "ensemble")
    np.testing.assert_allclose(blended, 0.25 * probabilities("alone0") + 0.75 * probabilities("alone1"), atol=1e-6)
    np.testing.assert_allclose(probabilities("run"), blended)  # the run named the ensemble its default
    np.testing.assert_allclose(probabilities("run", "single"), probabilities("alone0"))
    [(_, out)] = run_standalone(tmp_path, [{"model": str(model), "kind": "npz", "input": str(tmp_path / "new.npz"),
                                            "which": "ensemble"}])
    np.testing.assert_allclose(out, blended, atol=1e-5)
