"""Checks before the search: leaks, duplicates across splits, constant and ID columns, too little data."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from automl.cli import main
from automl.data.checks import (
    Column,
    check_data,
    column_findings,
    looks_like_id,
    rows_needed,
    training_rows,
)
from automl.data.loaders import load_data
from automl.errors import DataError
from automl.spec import CsvData, SplitSpec

SPLIT = SplitSpec()


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def patients(n=300, seed=0) -> pd.DataFrame:
    """`alive` relabels the target, `patient_id` and `name` are IDs, `ward` is constant."""
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n)
    survived = (age + rng.normal(0, 10, n) < 50).astype(int)
    return pd.DataFrame({"patient_id": rng.permutation(n) + 1000, "name": [f"p{i}" for i in range(n)], "age": age,
                         "ward": "B", "alive": np.where(survived == 1, "yes", "no"), "survived": survived})


def load(path, target, split=SPLIT, **kwargs):
    return load_data(CsvData(source="csv", path=path, target=target, **kwargs), split, task=None, seed=0)


def test_a_relabelled_target_an_id_and_a_constant_column_are_named(tmp_path):
    patients().to_csv(tmp_path / "patients.csv", index=False)
    checks = check_data(load(tmp_path / "patients.csv", "survived"), SPLIT, drop_advice="list it in data.drop")
    assert checks.refusals == ()
    assert checks.columns("leakage") == ["alive"]  # age predicts too, but far from perfectly
    assert sorted(checks.columns("id_like")) == ["name", "patient_id"]
    assert checks.columns("constant") == ["ward"]
    leak = next(f for f in checks.findings if f.check == "leakage")
    assert "balanced accuracy 1.000" in leak.message and "list it in data.drop" in leak.message


def test_a_column_that_is_the_target_plus_noise_leaks_in_regression_too():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    columns = [Column("copy", "numeric", 3 * y + 1 + rng.normal(0, 0.01, 200)),
               Column("noise", "numeric", rng.normal(size=200))]
    findings = column_findings(columns, y, "regression", "remove it from the data")
    assert [f.columns for f in findings] == [("copy",)] and "R²" in findings[0].message


@pytest.mark.parametrize("name, values, expected", [
    ("row", np.random.default_rng(0).permutation(50).astype(float), True),  # 0..49 in any order
    ("patient_id", np.arange(50) * 37.0 + 5, True),  # sparse, but named like one
    ("income", np.arange(50) * 37.0 + 5, False),  # unique integers spread wide: a measurement
    ("height", np.linspace(1.5, 2.0, 50), False),  # not integers
    ("name", np.array([f"n{i}" for i in range(50)], dtype=object), True),
    ("city", np.array([f"c{i % 10}" for i in range(50)], dtype=object), False),
    ("row", np.arange(5.0), False),  # too few rows to tell
])
def test_id_like_columns(name, values, expected):
    assert looks_like_id(name, values) is expected


def test_training_rows_follow_the_split_arithmetic(tmp_path):
    assert training_rows(3, 0.2, 0.2, None) == 1 and training_rows(3, 0.2, 0.2, 5) == 1
    assert rows_needed(0.2, 0.2, None) == 17 and rows_needed(0.2, 0.2, 5) == 17
    for n in (17, 40):  # what load_data really trains on
        pd.DataFrame({"x": np.arange(n), "y": np.arange(n) % 2}).to_csv(tmp_path / "d.csv", index=False)
        data = load(tmp_path / "d.csv", "y")
        assert len(data.y_train) == training_rows(n, 0.2, 0.2, None)
        folds = load(tmp_path / "d.csv", "y", SplitSpec(cv_folds=5)).folds
        assert min(len(train) for train, _ in folds) == training_rows(n, 0.2, 0.2, 5)


def test_three_rows_are_refused_naming_the_file_and_the_split(tmp_path):
    pd.DataFrame({"a": [1, 2, 3], "y": [0, 1, 0]}).to_csv(tmp_path / "tiny.csv", index=False)
    checks = check_data(load(tmp_path / "tiny.csv", "y"), SPLIT)
    with pytest.raises(DataError, match=r"tiny.csv: 3 rows leave 1 training row.*test=0.2, validation=0.2.*17 rows"):
        checks.raise_refusals()


def test_500_classes_in_1000_rows_are_refused_with_the_numbers(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=1000), "y": [f"c{i % 500}" for i in range(1000)]}).to_csv(
        tmp_path / "many.csv", index=False)
    checks = check_data(load(tmp_path / "many.csv", "y"), SPLIT)
    assert len(checks.refusals) == 1
    assert "500 classes in 1000 rows leave 1.3 training rows per class" in checks.refusals[0]


def test_duplicates_across_splits_are_counted(tmp_path):
    rng = np.random.default_rng(0)
    unique = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100), "y": np.arange(100) % 2})
    pd.concat([unique, unique.iloc[:40]]).to_csv(tmp_path / "dups.csv", index=False)
    data = load(tmp_path / "dups.csv", "y")
    train = {row.tobytes() for row in data.X_train}
    in_test = sum(row.tobytes() in train for row in data.X_test)
    assert in_test > 0
    messages = [f.message for f in check_data(data, SPLIT).findings if f.check == "duplicates"]
    assert any(m.startswith(f"{in_test} of {len(data.X_test)} test rows") for m in messages)
    unique.to_csv(tmp_path / "clean.csv", index=False)
    assert not [f for f in check_data(load(tmp_path / "clean.csv", "y"), SPLIT).findings if f.check == "duplicates"]


def test_the_run_records_the_findings_for_results_json_and_the_report(tmp_path):
    from automl.agent import Agent, make_plan
    from automl.reporting.report import write_report
    from automl.spec import load_spec
    from automl.store import TrialStore

    patients(120).to_csv(tmp_path / "patients.csv", index=False)
    (tmp_path / "spec.json").write_text(json.dumps({
        "name": "leaky", "data": {"source": "csv", "path": "patients.csv", "target": "survived"}, "output": "run"}))
    spec = load_spec(tmp_path / "spec.json")
    (tmp_path / "run").mkdir()
    store = TrialStore(tmp_path / "run" / TrialStore.FILENAME)
    try:  # the meta documents a run starts with, without training anything
        Agent(spec)._write_meta(make_plan(spec), store, "cpu", "built-in", resuming=False)
    finally:
        store.close()
    write_report(tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {f["check"] for f in results["data_checks"]} == {"leakage", "id_like", "constant"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Data checks" in report and "column 'alive' alone predicts the target" in report


def test_init_drops_an_id_column_lists_a_leak_and_the_spec_validates(tmp_path):
    patients().drop(columns=["name", "ward"]).to_csv(tmp_path / "patients.csv", index=False)
    out = tmp_path / "spec.json"
    result = invoke("init", tmp_path / "patients.csv", "--target", "survived", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["data"]["drop"] == ["patient_id"]  # the leak is the user's decision
    assert "'patient_id': unique per row (an ID), listed in data.drop" in result.output
    assert "warning: column 'alive' alone predicts the target" in result.output
    result = invoke("validate", out)
    assert result.exit_code == 0, result.output
    assert "warning: column 'alive' alone predicts the target" in result.output


def test_init_and_validate_refuse_three_rows_and_write_nothing(tmp_path):
    pd.DataFrame({"a": [1, 2, 3], "y": [0, 1, 0]}).to_csv(tmp_path / "tiny.csv", index=False)
    result = CliRunner().invoke(main, ["init", str(tmp_path / "tiny.csv"), "--out", str(tmp_path / "spec.json")])
    assert result.exit_code == 1 and "3 rows are too few" in result.output and "at least 17" in result.output
    assert not (tmp_path / "spec.json").exists()
    (tmp_path / "plain.json").write_text(json.dumps({"name": "t", "data": {"source": "csv", "path": "tiny.csv",
                                                                           "target": "y"}}))
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "plain.json")])
    assert result.exit_code == 1 and "3 rows leave 1 training row" in result.output
