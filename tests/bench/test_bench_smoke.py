"""Smoke tests of the benchmark harness in scripts/bench/: known optima, the peer adapters, and
suites 1 (overhead) and 2 (blackbox) at tiny sizes. No timing is asserted."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

import blackbox  # noqa: E402
import functions  # noqa: E402
import overhead  # noqa: E402
import peers  # noqa: E402

SMALL = "automl:random,automl:bayesian,optuna:tpe"


# -- known optima ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(functions.FUNCTIONS))
def test_value_at_the_argmin_is_the_documented_minimum(name):
    function = functions.FUNCTIONS[name]
    assert function.space.contains(dict(function.argmin))
    assert abs(function(function.argmin) - function.optimum) < 1e-4


@pytest.mark.parametrize("name, point, minimum", [
    ("branin", (-math.pi, 12.275), 0.397887),
    ("branin", (math.pi, 2.275), 0.397887),
    ("branin", (9.42478, 2.475), 0.397887),
    ("hartmann3", (0.114614, 0.555649, 0.852547), -3.86278),
    ("hartmann6", (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573), -3.32237),
    ("levy6", (1.0,) * 6, 0.0),
    ("rosenbrock4", (1.0,) * 4, 0.0),
])
def test_literature_minima(name, point, minimum):
    function = functions.FUNCTIONS[name]
    config = {f"x{i}": v for i, v in enumerate(point)}
    assert abs(function(config) - minimum) < 1e-4
    assert abs(function.optimum - minimum) < 1e-4


@pytest.mark.parametrize("name", list(functions.FUNCTIONS))
def test_no_random_point_beats_the_minimum(name):
    function = functions.FUNCTIONS[name]
    rng = np.random.default_rng(0)
    values = [function(function.space.sample(rng)) for _ in range(2000)]
    assert min(values) >= function.optimum - 1e-9


def test_mixed_minimum_is_a_local_minimum_of_its_continuous_part():
    from scipy.optimize import minimize

    argmin = functions.HARTMANN6_MIXED.argmin

    def continuous(z):
        return functions.HARTMANN6_MIXED({**argmin, **{f"x{i + 2}": float(v) for i, v in enumerate(z)}})

    start = [argmin[f"x{i}"] for i in range(2, 6)]
    result = minimize(continuous, start, method="L-BFGS-B", bounds=[(0.0, 1.0)] * 4)
    assert result.fun >= functions.HARTMANN6_MIXED.optimum - 1e-9
    # every other point of the discrete part, at the argmin's continuous coordinates, is worse
    for i0 in range(10):
        for i1 in range(10):
            for shift in functions.SHIFTS:
                value = functions.HARTMANN6_MIXED({**argmin, "i0": i0, "i1": i1, "shift": shift})
                assert value >= functions.HARTMANN6_MIXED.optimum - 1e-12


# -- the peers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(peers.CONTENDERS))
def test_every_contender_asks_configs_inside_the_space(name):
    function = functions.HARTMANN6_MIXED
    optimizer = peers.make_optimizer(name, function.space, peers.run_seed(name, 0), 4)
    values = peers.run(optimizer, function, 4)
    assert len(values) == 4  # run() raises if a config is outside the space
    assert optimizer.info


def test_optuna_distributions_keep_log_scales_and_steps():
    space = overhead.OVERHEAD_SPACE
    distributions = peers.optuna_distributions(space)
    assert distributions["lr"].log and distributions["width"].log and distributions["depth"].step == 2
    assert list(distributions["kind"].choices) == ["a", "b", "c"]


def test_ngopt_runs_or_records_its_substitute():
    optimizer = peers.make_optimizer("nevergrad:ngopt", functions.BRANIN.space, 0, 200)
    info = optimizer.info
    if "substituted_because" in info:  # nevergrad 1.0.12 + numpy 2: MetaModel crashes
        assert "MetaModel" in info["ngopt_selected"] and "base optimizer of NGOpt's pick" in info["used"]
    else:
        assert info["used"].startswith("NGOpt")
    assert len(peers.run(optimizer, functions.BRANIN, 30)) == 30


def test_run_seeds_differ_per_contender():
    assert len({peers.run_seed(name, 0) for name in peers.CONTENDERS}) == len(peers.CONTENDERS)


# -- suite 1: overhead -----------------------------------------------------------------------------------

def test_overhead_suite_writes_its_tables(tmp_path):
    raw = overhead.main(["--trials", "5", "12", "--seeds", "1", "--only", SMALL, "--out", str(tmp_path)])
    data = json.loads((tmp_path / "overhead.json").read_text())
    assert data["suite"] == "overhead" and data["contenders"] == SMALL.split(",")
    for name in SMALL.split(","):
        for n in ("5", "12"):
            entry = data["results"][name][n]
            assert entry["status"] == "ok" and entry["per_trial_ms"]["n"] == int(n)
            assert entry["per_trial_ms"]["median"] is not None and entry["per_trial_ms"]["p95"] is not None
    markdown = (tmp_path / "overhead.md").read_text()
    assert "median ms @5" in markdown and "p95 ms @12" in markdown
    assert all(f"| {name} |" in markdown for name in SMALL.split(","))
    assert (tmp_path / "overhead.png").stat().st_size > 0
    assert len(raw["runs"]) == 6


def test_overhead_reports_a_timed_out_contender_and_skips_it(tmp_path):
    overhead.main(["--trials", "3", "6", "--only", "automl:random", "--max-seconds", "1e-9", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "overhead.json").read_text())
    assert data["results"]["automl:random"]["3"]["status"] == "timed_out"
    assert data["results"]["automl:random"]["6"]["status"] == "skipped"
    markdown = (tmp_path / "overhead.md").read_text()
    assert "(timed out after 1 trials)" in markdown and "skipped: a run of 3 trials" in markdown


# -- suite 2: blackbox ----------------------------------------------------------------------------------

def test_blackbox_suite_writes_its_tables(tmp_path, monkeypatch):
    def broken(space, seed, budget):
        raise RuntimeError("this contender always fails")

    monkeypatch.setitem(peers.CONTENDERS, "test:broken", broken)
    only = SMALL + ",test:broken"
    raw = blackbox.main(["--seeds", "1", "--budgets", "5", "10", "--functions", "branin,hartmann6_mixed",
                         "--only", only, "--out", str(tmp_path)])
    data = json.loads((tmp_path / "blackbox.json").read_text())
    assert data["suite"] == "blackbox" and data["budgets"] == [5, 10]
    assert len(data["runs"]) == 2 * 4
    for f in ("branin", "hartmann6_mixed"):
        assert data["functions"][f]["optimum"] == functions.FUNCTIONS[f].optimum
        for name in SMALL.split(","):
            entry = data["stats"][f][name]
            assert entry["10"]["regret"]["median"] >= 0 and entry["10"]["auc_log10"]["median"] is not None
            assert entry["5"]["regret"]["median"] >= entry["10"]["regret"]["median"]
            assert len(entry["median_curve"]) == 10
        assert data["ranks"][f]["10"]["test:broken"] == 4  # a failed run ranks last
        assert data["stats"][f]["test:broken"]["10"]["missing"] == 1
    markdown = (tmp_path / "blackbox.md").read_text()
    for heading in ("Simple regret after 5 evaluations", "Simple regret after 10 evaluations",
                    "Mean rank after 10 evaluations", "Log10-regret AUC over 10 evaluations",
                    "Runs that did not finish normally"):
        assert heading in markdown
    assert all(f"| {name} |" in markdown for name in SMALL.split(","))
    assert "this contender always fails" in markdown
    assert (tmp_path / "blackbox.png").stat().st_size > 0
    assert raw["runs"][0]["values"]


def test_regret_curve_and_auc():
    record = {"function": "levy6", "values": [3.0, 5.0, 1.0, 0.0], "status": "ok"}
    curve = blackbox.regret_curve(record, 4)
    assert curve.tolist() == [3.0, 3.0, 1.0, 0.0]
    expected = (math.log10(3 + 1e-12) * 2 + math.log10(1 + 1e-12) + math.log10(1e-12)) / 4
    assert blackbox.auc(curve, 4) == pytest.approx(expected)
    assert blackbox.auc(curve, 5) is None
    exhausted = blackbox.regret_curve({**record, "status": "exhausted"}, 6)
    assert exhausted.tolist() == [3.0, 3.0, 1.0, 0.0, 0.0, 0.0]
