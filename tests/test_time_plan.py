"""budget.max_time bounds the whole command: the search keeps time for start-up and the end of the
run, and `refit: auto` refits only when the refit is worth its time."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from automl.execution.slots import plan_slots
from automl.execution.threads import ThreadExecutor
from automl.final.time_plan import (END_FIXED_S, MIN_SEARCH_SHARE, SearchReserve, decide_refit, fixed_end_seconds,
                                    refit_seconds)
from automl.records import Status, TrialOutcome
from automl.search import Limits, SearchLoop, StopCause
from automl.space import Float, SearchSpace
from automl.store import TrialRecord, TrialStore
from automl.strategies.random import RandomStrategy

SPACE = SearchSpace((Float("x", 0.0, 1.0),))


def table(train=800, val=200, test=200, folds=None):
    profile = SimpleNamespace(modality="tabular", input_shape=(10,))
    return SimpleNamespace(X_train=np.zeros((train, 10)), X_val=np.zeros((val, 10)), X_test=np.zeros((test, 10)),
                           folds=folds, profile=profile)


def trial(seconds: float, epochs: int = 10, best_epoch: int = 10) -> TrialRecord:
    return TrialRecord("0001", 1, "mlp", {}, 10.0, None, Status.COMPLETE, 0.1, {"accuracy": 0.9, "best_epoch": best_epoch},
                       epochs, None, None, "w", 0.0, 100.0, 100.0 + seconds)


def test_the_refit_estimate_is_the_trials_time_per_epoch_and_row_scaled_to_the_refit():
    # 10 epochs in 20 s on 800 rows; the refit: the 5 best epochs on 1000 rows
    assert refit_seconds(trial(20.0, best_epoch=5), table()) == 20.0 / 10 * 5 * 1000 / 800
    # cross-validation: the trial trained 5 fold models on 4/5 of the rows each; the refit one model on all
    folds = tuple((np.arange(800), np.arange(200)) for _ in range(5))
    assert refit_seconds(trial(20.0), table(train=1000, val=0, folds=folds)) == 20.0 * 1000 / 4000
    assert refit_seconds(trial(20.0, epochs=0), table()) is None  # nothing timed: no estimate


def test_auto_cuts_a_refit_that_costs_more_than_its_share_of_a_short_search_and_says_why():
    expensive = trial(20.0)  # about 25 s to refit
    cut = decide_refit("auto", expensive, table(), search_s=60.0, left_s=None)
    assert not cut.run and "cut for time" in cut.why and "refit: true" in cut.why
    assert decide_refit("auto", expensive, table(), search_s=3600.0, left_s=None).run  # a long search pays for it
    assert decide_refit(True, expensive, table(), search_s=60.0, left_s=0.0).run  # asked for: always
    assert decide_refit("auto", trial(1.0), table(), search_s=5.0, left_s=0.0).run  # about 1 s: never worth a cut
    affordable = trial(4.0)  # about 5 s: within 15 % of a 600 s search
    assert decide_refit("auto", affordable, table(), search_s=600.0, left_s=None).run
    late = decide_refit("auto", affordable, table(), search_s=600.0, left_s=6.0)  # max_time nearly spent
    assert not late.run and "of max_time were left" in late.why


def test_the_reserve_holds_start_up_the_end_and_an_affordable_refit_never_more_than_half_of_max_time():
    data = table()
    started = time.time() - 3.0  # the command started 3 s ago
    finished: list[TrialRecord] = []
    reserve = SearchReserve(600.0, started, data, "auto", True, lambda: finished)
    assert 3.0 <= reserve(0) - fixed_end_seconds(data) < 10.0
    finished.append(trial(20.0))  # a refit of about 25 s is worth it for a 600 s budget
    assert reserve(1) >= 3.0 + END_FIXED_S + 24.0
    assert SearchReserve(600.0, started, data, "auto", False, lambda: finished)(1) < reserve(1)  # no refit wanted
    tiny = SearchReserve(4.0, started, data, "auto", True, lambda: finished)
    assert tiny(1) == MIN_SEARCH_SHARE * 4.0


def run_loop(tmp_path, reserve, max_trials=50):
    store = TrialStore(tmp_path / TrialStore.FILENAME)
    executor = ThreadExecutor(lambda slot: (lambda request, report: TrialOutcome(Status.COMPLETE, 0.5, {"loss": 0.5})),
                              plan_slots("cpu", 1, cpu_count=1))
    loop = SearchLoop(RandomStrategy(SPACE, seed=0, max_budget=1.0), label="strategy 'random'", space=SPACE,
                      store=store, executor=executor, metric="loss", direction="minimize",
                      limits=Limits(max_trials, 10_000.0, 10, 1.0), time_reserve=reserve)
    try:
        return loop.run([]), store.counts()["total"]
    finally:
        store.close()


def test_the_search_stops_when_what_is_left_of_max_time_is_the_reserve(tmp_path):
    end, trials = run_loop(tmp_path / "a", lambda finished: 0.0 if finished < 3 else 10_000.0)
    assert end.cause is StopCause.MAX_TIME and trials == 3  # recomputed as trials finish
    assert "kept for start-up and the end of the run" in str(end)
    end, trials = run_loop(tmp_path / "b", lambda finished: 0.0, max_trials=5)
    assert end.cause is StopCause.MAX_TRIALS and trials == 5
