"""Why this model: importance, leaderboard, parameter plots and "what to try next", built from
synthetic trials (records in memory, one store on disk for the whole report)."""
from __future__ import annotations

import json
import math
import re
import time

import numpy as np
import pytest

from automl.reporting import insight
from automl.reporting.insight import importance_part, insight_part, next_steps
from automl.reporting.report import markdown_report, write_report
from automl.store import TrialRecord, TrialStore

SPACE = [{"name": "family", "type": "choice", "choices": ["mlp", "cnn"]},
         {"name": "lr", "type": "float", "low": 1e-5, "high": 1e-1, "log": True},
         {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5, "log": False},
         {"name": "batch_size", "type": "choice", "choices": [32, 64, 128]},
         {"name": "mlp.width", "type": "int", "low": 16, "high": 256, "log": False, "step": 1,
          "condition": {"parent": "family", "values": ["mlp"]}}]
SPEC = {"budget": {"max_trials": 40, "max_epochs": 30}}


def configs(n: int, *, lr=None, seed: int = 0) -> list[dict]:
    """Random configs of SPACE; lr log-uniform unless given (one value per trial)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        family = ["mlp", "cnn"][int(rng.integers(2))]
        config = {"family": family, "lr": float(10 ** rng.uniform(-5, -1)) if lr is None else lr[i],
                  "dropout": float(rng.uniform(0, 0.5)), "batch_size": [32, 64, 128][int(rng.integers(3))]}
        if family == "mlp":
            config["mlp.width"] = int(rng.integers(16, 257))
        out.append(config)
    return out


def record(i: int, config: dict, accuracy: float | None, *, status="COMPLETE", epochs=30, reason="early_stopped",
           best_epoch=None, **metrics) -> TrialRecord:
    """A finished trial as the store returns it; trial i finished i-th, in 10 s."""
    loss = None if accuracy is None else -accuracy
    scores = {} if accuracy is None else {"accuracy": accuracy, "best_epoch": best_epoch or epochs - 8, **metrics}
    return TrialRecord(f"t{i}", i, config["family"], config, 30, None, status, loss, scores, epochs, reason, None,
                       "w0", 1000.0 + i, 1000.0 + 10 * i, 1010.0 + 10 * i)


def results(trials=(), *, status="finished", baseline=None, metrics=("accuracy",)) -> dict:
    """The parts of results.json insight reads."""
    return {"metric": "accuracy", "direction": "maximize", "metrics": list(metrics), "space": SPACE,
            "status": status, "baseline": baseline}


def lr_only(config: dict) -> float:
    """An accuracy that depends on lr alone, best at 1e-3."""
    return 0.95 - 0.04 * (math.log10(config["lr"]) + 3) ** 2


# -- importance -------------------------------------------------------------------------------

def test_importance_ranks_the_one_parameter_that_matters_first():
    trials = [record(i, c, lr_only(c)) for i, c in enumerate(configs(40))]
    part = importance_part(SPACE, sorted(trials, key=lambda t: t.loss), "accuracy", "maximize")
    ranking = [(p["name"], p["importance"]) for p in part["params"]]
    assert ranking[0][0] == "lr", ranking
    assert ranking[0][1] > 5 * max(ranking[1][1], 0.01), ranking
    assert part["trials"] == 40 and "permutation importance" in part["method"] and "random-forest" in part["method"]
    assert part["oob_r2"] > 0.5  # the surrogate explains the loss it ranks


def test_importance_is_skipped_below_eight_trials():
    trials = [record(i, c, lr_only(c)) for i, c in enumerate(configs(7))]
    part = importance_part(SPACE, trials, "accuracy", "maximize")
    assert "params" not in part and "at least 8" in part["skipped"]
    section = insight.importance_section({**results(), "insight": {"importance": part}}, {})
    assert "Not estimated: 7 finished trials" in section.blocks[0].text


# -- leaderboard ------------------------------------------------------------------------------

def test_leaderboard_shows_every_metric_and_only_the_parameters_that_differ():
    cs = configs(12)
    for c in cs:
        c["batch_size"] = 64  # the same in every trial: no column
    trials = [record(i, c, lr_only(c), f1_macro=0.5 + i / 100) for i, c in enumerate(cs)]
    r = results(metrics=("accuracy", "f1_macro"))
    r["insight"] = insight_part(r, trials, SPEC)
    section = insight.leaderboard_section(r)
    table = section.blocks[0]
    assert isinstance(table, insight.SortableTable)
    assert table.headers[:8] == ("#", "Trial", "Family", "accuracy", "f1_macro", "Epochs", "Time (s)", "Status")
    assert table.headers[8] == "lr" and "batch_size" not in table.headers and "family" not in table.headers
    best = max(trials, key=lambda t: t.metrics["accuracy"])
    assert table.rows[0][:4] == ("1", best.trial_id, best.config["family"], f"{best.metrics['accuracy']:.4g}")
    assert table.rows[0][4] == f"{best.metrics['f1_macro']:.4g}" and table.rows[0][5:7] == ("30", "10")


# -- what to try next -------------------------------------------------------------------------

def lr_grid(accuracy) -> list[TrialRecord]:
    """40 trials with lr evenly spread over its log range, scored by accuracy(config)."""
    cs = configs(40, lr=[float(v) for v in np.logspace(-5, -1, 40)])
    return [record(i, c, accuracy(c)) for i, c in enumerate(cs)]


def test_edge_of_a_range_says_which_parameter_edge_and_override():
    steps = next_steps(results(), lr_grid(lambda c: 0.5 + 0.1 * math.log10(c["lr"])), SPEC)  # best at the top
    edge = [s for s in steps if "end of its range" in s]
    assert len(edge) == 1 and "lr" in edge[0] and "high end" in edge[0]
    assert '"families": {"overrides": {"lr": {"high": 1.0}}}' in edge[0]
    assert not any("end of its range" in s for s in next_steps(results(), lr_grid(lr_only), SPEC))


def test_best_trials_at_max_epochs_suggest_more_epochs():
    cs = configs(10)
    trained_out = [record(i, c, lr_only(c), epochs=30, reason=None, best_epoch=30) for i, c in enumerate(cs)]
    step = [s for s in next_steps(results(), trained_out, SPEC) if "max_epochs" in s]
    assert len(step) == 1 and "all 30 epochs" in step[0] and "60" in step[0]
    stopped = [record(i, c, lr_only(c), epochs=18, reason="early_stopped") for i, c in enumerate(cs)]
    assert not any("max_epochs" in s for s in next_steps(results(), stopped, SPEC))


def test_family_never_in_the_top_is_named():
    cs = configs(12)
    for i, c in enumerate(cs):
        c["family"] = "cnn" if i < 4 else "mlp"
    worst_cnn = [record(i, c, 0.5 + 0.01 * i) for i, c in enumerate(cs)]  # the cnn trials are the 4 worst
    step = [s for s in next_steps(results(), worst_cnn, SPEC) if "never ranked" in s]
    assert len(step) == 1 and "Family cnn" in step[0] and '"exclude": ["cnn"]' in step[0]
    one_good = [record(i, c, 0.99 if i == 0 else 0.5 + 0.01 * i) for i, c in enumerate(cs)]
    assert not any("never ranked" in s for s in next_steps(results(), one_good, SPEC))


def test_late_improvement_suggests_more_trials():
    cs = configs(16)
    late = [record(i, c, 0.90 if i == 14 else 0.70 + 0.001 * i) for i, c in enumerate(cs)]
    step = [s for s in next_steps(results(), late, SPEC) if "more trials" in s]
    assert len(step) == 1 and "trial 15 of 16" in step[0] and "0.711 → 0.9" in step[0]  # the best of the first 12
    assert not any("more trials" in s for s in next_steps(results(status="running"), late, SPEC))  # mid-run
    early = [record(i, c, 0.90 if i == 3 else 0.70 + 0.001 * i) for i, c in enumerate(cs)]
    assert not any("more trials" in s for s in next_steps(results(), early, SPEC))


def test_baseline_ahead_of_the_deep_model_is_said():
    trials = [record(i, c, lr_only(c)) for i, c in enumerate(configs(3))]
    lost = {"deep_beats_baseline": False, "best": "ridge", "models": [{"name": "ridge", "title": "Ridge regression"}]}
    step = next_steps(results(baseline=lost), trials, SPEC)
    assert len(step) == 1 and "did not beat the baseline Ridge regression" in step[0]
    assert next_steps(results(baseline={**lost, "deep_beats_baseline": True}), trials, SPEC) == []
    assert next_steps(results(), trials, SPEC) == []  # no baseline yet (mid-run): no line


# -- the whole report -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    store = TrialStore(run_dir / TrialStore.FILENAME)
    for key, value in {"spec": {"name": "why", **SPEC}, "metric": "accuracy", "direction": "maximize",
                       "metrics": ["accuracy", "f1_macro"], "space": SPACE,
                       "run": {"started_at": time.time() - 60}}.items():
        store.set_meta(key, value)
    for i, config in enumerate(configs(12)):
        store.add_trial(f"t{i}", config, budget=30, family=config["family"])
        store.start_trial(f"t{i}")
        accuracy = lr_only(config)
        store.finish_trial(f"t{i}", "COMPLETE", loss=-accuracy, epochs=30 - i,
                           metrics={"accuracy": accuracy, "f1_macro": accuracy - 0.1, "best_epoch": 20})
    store.close()
    return run_dir, write_report(run_dir)


def test_report_shows_the_insight_and_stays_self_contained(report):
    run_dir, paths = report
    page, md = paths["html"].read_text(), paths["markdown"].read_text()
    for stem in insight.PLOTS:
        assert paths[stem].read_bytes().startswith(b"\x89PNG")
        assert f"](report_files/{stem}.png)" in md
        assert re.search(f'<img src="data:image/png;base64,[^"]+" alt="{re.escape(insight.PLOTS[stem])}', page)
    assert re.search(r'<table class="sortable" onclick="[^"]*rows\.sort', page)  # the leaderboard sorts on a click
    assert "<script" not in page
    for text in ("Hyperparameter importance", "permutation importance (as scikit-learn computes it) of a random-forest surrogate",
                 "Fitted on 12 completed and pruned trials", "What to try next"):
        assert text in page and text in md
    assert "| # | Trial | Family | accuracy | f1_macro | Epochs | Time (s) | Status |" in md
    results = json.loads(paths["results"].read_text())
    assert results["insight"]["importance"]["params"][0]["name"] == "lr"
    assert "Hyperparameter importance" in markdown_report(run_dir)  # the plot-less report computes it too
