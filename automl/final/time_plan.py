"""What the end of a run will cost, estimated from what the search measured, so that
`budget.max_time` bounds the whole command and the end of a run stays a small share of it.

After the search come the refit, the ensemble, the baselines, the export, the test evaluation
and the report. On a table all but the refit take a few seconds (END_FIXED_S); the refit takes
what the best trial's training took for its best epochs, scaled to the rows it trains on. So:

- with max_time, the search stops when what is left of max_time is what start-up took plus the
  end's estimate (never before MIN_SEARCH_SHARE of max_time: a tiny budget still searches);
- `refit: "auto"` refits when the estimate is at most REFIT_ALWAYS_S, or when the refit and the
  rest of the end fit in END_SHARE of the search's time (a refit that costs a trial's time is not
  worth a sixth of a short search's budget) and in what is left of max_time; a refit cut for
  time is said in the report. The refit trains in an idle worker, beside the ensemble and the baselines.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from automl.data.base import PreparedData
from automl.store import TrialRecord, best_trial

END_SHARE = 0.15  # the refit and everything after it: at most this share of the search's time
REFIT_ALWAYS_S = 2.0  # a refit estimated to take at most this long always runs: cutting it saves nothing
MIN_SEARCH_SHARE = 0.5  # the reserve never takes the search below this share of max_time
# ensemble, baselines, export, evaluation, report and exit on a small table: 1.2-1.7 s measured on 2 cores
# (docs/time.md), with room for a busier machine
END_FIXED_S = 2.0
ROCKET_S_PER_VALUE = 4e-6  # ROCKET baseline: seconds per series value (rows x length x channels), 10,000 kernels


def trained_rows(data: PreparedData) -> int:
    """Rows a trial trains on, over all of its models: X_train, or every fold's training rows."""
    if data.folds:
        return sum(len(train) for train, _ in data.folds)
    return len(data.X_train)


def refit_rows(data: PreparedData) -> int:
    return len(data.X_train) + len(data.X_val)


# refit "auto": worth its cost while the data are small (a refit is one more full trial)
REFIT_AUTO_MAX_ROWS = 20_000


def refit_wanted(setting: bool | str, rows: int) -> bool:
    """The spec's `refit`: auto refits up to REFIT_AUTO_MAX_ROWS rows (and when the time allows:
    time_plan.decide_refit)."""
    return rows <= REFIT_AUTO_MAX_ROWS if setting == "auto" else bool(setting)


def refit_seconds(trial: TrialRecord, data: PreparedData) -> float | None:
    """The refit's time: the trial's seconds per epoch, per row trained, times the refit's epochs
    (the trial's best) and rows. None when the trial has no timed epoch."""
    if not trial.epochs or trial.started_at is None or trial.finished_at is None:
        return None
    per_epoch = max(0.0, trial.finished_at - trial.started_at) / trial.epochs
    epochs = max(1, int(trial.metrics.get("best_epoch") or trial.epochs))
    return per_epoch * epochs * refit_rows(data) / max(1, trained_rows(data))


def fixed_end_seconds(data: PreparedData) -> float:
    """Everything after the search but the refit: ensemble, baselines, export, evaluation, report."""
    seconds = END_FIXED_S
    if data.profile.modality == "sequence":  # the ROCKET baseline computes features of every series
        rows = len(data.X_train) + len(data.X_val) + len(data.X_test)
        seconds += ROCKET_S_PER_VALUE * rows * math.prod(data.profile.input_shape)
    return seconds


@dataclass(frozen=True)
class RefitDecision:
    run: bool
    estimate_s: float | None
    why: str  # one sentence for the report when the refit is cut


def decide_refit(setting: bool | str, trial: TrialRecord, data: PreparedData, search_s: float,
                 left_s: float | None) -> RefitDecision:
    """Whether `refit: auto` refits `trial` after a search of `search_s` seconds with `left_s` of
    max_time left (None: no max_time). `refit: true` always refits: the user asked for it."""
    estimate = refit_seconds(trial, data)
    if setting is not True and estimate is not None and estimate > REFIT_ALWAYS_S:
        fixed = fixed_end_seconds(data)
        end = estimate + fixed
        if end > END_SHARE * search_s:
            return RefitDecision(False, estimate, f"the refit was cut for time: about {estimate:.0f} s on top of "
                                                  f"{fixed:.0f} s for the rest of the end of the run, over "
                                                  f"{END_SHARE:.0%} of the search's {search_s:.0f} s (set refit: "
                                                  "true to refit anyway)")
        if left_s is not None and end > left_s:
            return RefitDecision(False, estimate, f"the refit was cut for time: it would take about {estimate:.0f} s, "
                                                  f"{max(0.0, left_s):.0f} s of max_time were left")
    return RefitDecision(True, estimate, "")


class SearchReserve:
    """The seconds of max_time the search leaves for start-up and the end of the run, from the
    current best trial; recomputed only when the finished trials change."""

    def __init__(self, max_time: float, started_at: float, data: PreparedData, refit_setting: bool | str,
                 refit_possible: bool, trials: Callable[[], Iterable[TrialRecord]]):
        self.max_time = max_time
        self.startup_s = max(0.0, time.time() - started_at)  # this command, up to the search
        self.data = data
        self.refit_setting = refit_setting
        self.refit_possible = refit_possible
        self._trials = trials
        self._key: Any = None
        self._seconds = 0.0

    def __call__(self, finished: int) -> float:
        if finished != self._key:
            self._key = finished
            self._seconds = self._compute()
        return self._seconds

    def _compute(self) -> float:
        end = fixed_end_seconds(self.data)
        best = best_trial(list(self._trials())) if self.refit_possible else None
        if best is not None:
            search_s = self.max_time - self.startup_s - end
            decision = decide_refit(self.refit_setting, best, self.data, search_s, None)
            if decision.run and decision.estimate_s:
                end += decision.estimate_s
        return min(self.startup_s + end, (1 - MIN_SEARCH_SHARE) * self.max_time)
