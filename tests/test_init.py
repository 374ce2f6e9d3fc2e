"""`automl init DATA`: the drafted spec reads the data the right way and runs as written."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from sklearn.datasets import load_iris

from automl.cli import main
from automl.spec import load_spec


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def iris_csv(path, target="label"):
    iris = load_iris(as_frame=True)
    frame = iris.data.copy()
    frame[target] = iris.target_names[iris.target]
    frame.to_csv(path, index=False)
    return path


def test_a_table_gets_a_csv_spec_with_the_agents_families_and_a_relative_path(tmp_path):
    data = iris_csv(tmp_path / "flowers.csv")
    out = tmp_path / "specs" / "spec.json"
    result = invoke("init", data, "--out", out)
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["data"] == {"source": "csv", "path": "../flowers.csv", "target": "label"}
    assert document["task"] == "classification" and document["metric"] == "accuracy"
    assert "mlp" in document["families"]["include"] and "cnn" not in document["families"]["include"]
    assert document["split"]["cv_folds"] == 5  # 150 rows: cross-validation
    assert "target column 'label' (its name" in result.output and "family cnn: not used" in result.output
    spec = load_spec(out)  # valid as written, the path resolved next to the spec
    assert spec.data.path == data.resolve()


def test_the_target_defaults_to_the_last_column_and_can_be_chosen(tmp_path):
    data = iris_csv(tmp_path / "flowers.csv", target="kind")
    result = invoke("init", data, "--out", tmp_path / "a.json")
    assert result.exit_code == 0 and "the last column" in result.output
    result = invoke("init", data, "--target", "petal length (cm)", "--out", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b.json").read_text())["task"] == "regression"


def test_a_free_text_column_makes_a_text_spec(tmp_path):
    rng = np.random.default_rng(0)
    words = ["good", "bad", "fine", "slow", "fast", "nice", "broken", "great"]
    lines = ["note,opinion"] + [f"{' '.join(rng.choice(words, 6))},{'yes' if i % 2 else 'no'}" for i in range(60)]
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    result = invoke("init", tmp_path / "reviews.csv", "--target", "opinion", "--out", tmp_path / "spec.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "spec.json").read_text())["data"]
    assert data["source"] == "text_csv" and data["text_column"] == "note"


def test_rows_sharing_an_id_make_a_long_sequence_spec(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["series_id,step,value,label"]
    for sid in range(40):
        rows += [f"s{sid},{t},{rng.normal() + (sid % 2)},{sid % 2}" for t in range(12)]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    result = invoke("init", tmp_path / "long.csv", "--out", tmp_path / "spec.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "spec.json").read_text())["data"]
    assert data == {"source": "sequence_csv", "path": "long.csv", "target": "label", "layout": "long",
                    "id_column": "series_id", "time_column": "step"}


def test_a_folder_of_class_folders_makes_an_image_spec(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (10, 12), dtype=np.uint8), mode="L").save(
                tmp_path / "pets" / label / f"{i}.png")
    result = invoke("init", tmp_path / "pets", "--out", tmp_path / "spec.json")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "spec.json").read_text())
    assert document["data"] == {"source": "images", "path": "pets"}
    assert "cnn" in document["families"]["include"]


def test_an_unknown_target_and_an_existing_spec_are_refused(tmp_path):
    data = iris_csv(tmp_path / "flowers.csv")
    result = CliRunner().invoke(main, ["init", str(data), "--target", "colour", "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 1 and "no column 'colour'" in result.output
    assert not (tmp_path / "s.json").exists()
    (tmp_path / "s.json").write_text("{}")
    result = CliRunner().invoke(main, ["init", str(data), "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "s.json").read_text() == "{}"
