"""The report is a pure function of the store: build one by hand and check what comes out."""
from __future__ import annotations

import json
import re
import time

import pytest

from automl.errors import RunDirError
from automl.reporting import plots
from automl.reporting.report import build_results, write_report
from automl.store import TrialStore

TRACEBACK = ('Traceback (most recent call last):\n  File "train.py", line 3, in fit\n    step()\n'
             "RuntimeError: CUDA out of memory")
HOW = "import torch\nmodel = torch.jit.load('model/model.pt')\nmodel.eval()"
# trial id -> (family, status, metric value); maximize picks t1, minimize picks t2
TRIALS = {"t0": ("mlp", "COMPLETE", 0.90), "t1": ("mlp", "COMPLETE", 0.95), "t2": ("cnn", "COMPLETE", 0.70),
          "t3": ("cnn", "FAILED", None), "t4": ("mlp", "PRUNED", 0.80), "t5": ("cnn", "RUNNING", None)}


def make_run(run_dir, *, metric="accuracy", direction="maximize", final=True, families=None):
    """A run directory whose store looks like the agent wrote it; returns the (still open) store."""
    families = families or {}
    store = TrialStore(run_dir / TrialStore.FILENAME)
    started = time.time() - 120
    store.set_meta("spec", {"name": "demo", "seed": 0, "data": {"source": "builtin", "name": "sklearn:digits"},
                            "budget": {"max_trials": 6}, "strategy": {"name": "random", "options": {}}})
    store.set_meta("metric", metric)
    store.set_meta("direction", direction)
    store.set_meta("metrics", [metric])
    store.set_meta("space", [{"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                             {"name": "mlp.width", "type": "int", "low": 16, "high": 256,
                              "condition": {"parent": "family", "values": ["mlp"]}}])
    store.set_meta("profile", {"source": "sklearn:digits", "modality": "tabular", "task": "classification",
                               "target": "y", "n_samples": 1797, "n_train": 1150, "n_val": 287, "n_test": 360,
                               "input_shape": [64], "n_features": 64, "feature_kinds": {"numeric": 64},
                               "n_classes": 10, "class_counts": {"0": 178, "1": 182}, "imbalance": 1.03,
                               "missing_values": 0, "notes": ["pixel intensities 0-16"]})
    store.set_meta("choices", [{"family": families.get("mlp", "mlp"), "chosen": True, "reason": "tabular data"},
                               {"family": "cnn", "chosen": True, "reason": "8x8 images"},
                               {"family": "rnn", "chosen": False, "reason": "no sequence axis"}])
    store.set_meta("strategy", {"name": "random", "options": {"n_initial": 3}, "source": "builtin"})
    store.set_meta("run", {"started_at": started, "device": "cpu", "workers": 2, "host": "box",
                           "versions": {"automl": "0.1.0", "torch": "2.3.0", "python": "3.11"}})
    for trial_id, (family, status, value) in TRIALS.items():
        family = families.get(family, family)
        store.add_trial(trial_id, {"family": family, "lr": 0.01, f"{family}.width": 64}, budget=3, family=family)
        store.start_trial(trial_id, worker="w0")
        loss = None if value is None else (-value if direction == "maximize" else value)
        for epoch in range(1, 4 if value is not None else 2):
            store.add_epoch(trial_id, epoch, {"train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch,
                                              metric: (value or 0.5) * epoch / 3}, elapsed=epoch * 0.5)
        if status == "RUNNING":
            continue
        metrics = {} if value is None else {metric: value, "val_loss": 0.4, "train_loss": 0.3, "best_epoch": 3}
        store.finish_trial(trial_id, status, loss=loss, metrics=metrics, epochs=3 if value is not None else 1,
                           reason={"PRUNED": "stopped", "FAILED": "crashed"}.get(status),
                           error=TRACEBACK if status == "FAILED" else None)
    if final:
        best = "t1" if direction == "maximize" else "t2"
        store.set_meta("final", {"best_trial_id": best, "best_family": TRIALS[best][0], "val": {metric: 0.95},
                                 "test": {metric: 0.93}, "finished_at": time.time(), "duration_s": 118.5,
                                 "stopped_because": "max_trials reached",
                                 "model": {"path": "model/model.pt", "format": "torchscript", "how": HOW}})
    return store


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    make_run(run_dir).close()
    return run_dir, write_report(run_dir)


def test_results_maximize(finished):
    run_dir, paths = finished
    results = json.loads(paths["results"].read_text())
    assert results["name"] == "demo" and results["status"] == "finished"
    assert results["metric"] == "accuracy" and results["direction"] == "maximize"
    assert results["best"]["trial_id"] == "t1" and results["best"]["family"] == "mlp"
    assert results["best"]["val"]["accuracy"] == 0.95 and results["best"]["config"]["lr"] == 0.01
    assert results["test"] == {"accuracy": 0.93}
    assert results["trials"] == {"completed": 3, "failed": 1, "pruned": 1, "running": 1, "pending": 0, "total": 6}
    assert results["duration_s"] == 118.5 and results["stopped_because"] == "max_trials reached"
    assert [e["trial_id"] for e in results["leaderboard"]] == ["t1", "t0", "t4", "t2"]
    assert results["leaderboard"][0]["value"] == 0.95 and results["leaderboard"][0]["epochs"] == 3
    assert results["failures"][0]["trial_id"] == "t3"
    assert results["failures"][0]["first_line"] == "Traceback (most recent call last):"
    assert results["failures"][0]["last_line"] == "RuntimeError: CUDA out of memory"
    assert results["model"]["path"] == "model/model.pt" and results["model"]["exists"] is False
    assert results["profile"]["n_classes"] == 10 and results["strategy"]["name"] == "random"
    families = {f["family"]: f for f in results["families"]}
    assert families["mlp"]["best"] == 0.95 and families["mlp"]["trials"] == 3
    assert families["rnn"]["chosen"] is False and families["rnn"]["trials"] == 0


def test_results_minimize(tmp_path):
    store = make_run(tmp_path, metric="rmse", direction="minimize")
    results = build_results(store)
    store.close()
    assert results["best"]["trial_id"] == "t2" and results["best"]["val"]["rmse"] == 0.70
    assert [e["trial_id"] for e in results["leaderboard"]] == ["t2", "t4", "t0", "t1"]
    assert results["test"] == {"rmse": 0.93}


def test_files_and_self_contained_html(finished):
    run_dir, paths = finished
    assert {"html", "markdown", "results"} <= set(paths)
    for stem in ("best_by_trial", "best_by_time", "score_by_family", "learning_curves"):
        assert paths[stem] == run_dir / "report_files" / f"{stem}.png"
        assert paths[stem].read_bytes().startswith(b"\x89PNG")
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script" not in page
    for text in ("8x8 images", "no sequence axis", "excluded", "RuntimeError: CUDA out of memory", "<details>",
                 "torch.jit.load(&#x27;model/model.pt&#x27;)", "box", "2.3.0", "sklearn:digits"):
        assert text in page


def test_markdown(finished):
    run_dir, paths = finished
    md = paths["markdown"].read_text()
    assert "| 1 | t1 | mlp | 0.95 | 3 |" in md
    assert "| 4 | t2 | cnn | 0.7 | 3 |" in md
    assert "](report_files/learning_curves.png)" in md
    assert "| mlp.width | int [16, 256] | family = mlp |" in md
    assert "torch.jit.load('model/model.pt')" in md  # inside a code block: verbatim


def test_escapes_user_text(tmp_path):
    evil = "<script>alert(1)</script>"
    make_run(tmp_path, families={"mlp": evil}).close()
    paths = write_report(tmp_path)
    page = paths["html"].read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in paths["markdown"].read_text()
    assert json.loads(paths["results"].read_text())["best"]["family"] == evil


def test_mid_run(tmp_path):
    store = make_run(tmp_path, final=False)  # writer stays open, as the live agent would
    paths = write_report(tmp_path)
    store.close()
    results = json.loads(paths["results"].read_text())
    assert results["status"] == "running" and results["test"] is None and results["model"] is None
    assert results["trials"]["running"] == 1 and results["best"]["trial_id"] == "t1"
    assert results["duration_s"] >= 119  # elapsed since run.started_at
    assert "Running" in paths["html"].read_text()


def test_empty_store(tmp_path):
    TrialStore(tmp_path / TrialStore.FILENAME).close()  # not even meta yet
    paths = write_report(tmp_path)
    results = json.loads(paths["results"].read_text())
    assert results["best"] is None and results["leaderboard"] == [] and results["trials"]["total"] == 0
    assert results["status"] == "running" and results["duration_s"] is None
    assert not list((tmp_path / "report_files").glob("*.png"))
    assert "No trial has finished yet." in paths["html"].read_text()


def test_no_finished_trial_yet(tmp_path):
    store = TrialStore(tmp_path / TrialStore.FILENAME)
    store.set_meta("metric", "accuracy")
    store.add_trial("t0", {"family": "mlp"}, family="mlp")
    store.start_trial("t0")
    results = build_results(store)
    store.close()
    assert results["direction"] == "maximize"  # implied by the metric until the agent writes it
    assert results["best"] is None and results["trials"]["running"] == 1
    write_report(tmp_path)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(RunDirError):
        write_report(tmp_path)


def test_plots_draw_nothing_without_data():
    assert plots.best_so_far([1, 2], [None, None], metric="accuracy", direction="maximize", xlabel="n") is None
    assert plots.score_by_family({"mlp": []}, metric="accuracy") is None
    assert plots.learning_curves({"t0": [(1, None)]}, metric="accuracy") is None
