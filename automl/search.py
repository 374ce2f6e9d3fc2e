"""The ask / run / tell loop, shared by `automl run` (the agent) and `automl.optimize`.

It owns the strategy (every call guarded: a plugin that misbehaves is named with what
it did), the budget rules, replay on resume and the handling of executor events. Every
event is committed to the store before the strategy or an observer hears of it.
"""
from __future__ import annotations

import concurrent.futures
import enum
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from automl import interrupts
from automl.call_thread import CallThread, result_in_slices
from automl.errors import PluginError
from automl.files import finite_number
from automl.execution.base import TrialEvent, TrialRequest
from automl.reporting.base import Observers
from automl.space import SearchSpace
from automl.store import TrialRecord, TrialStore, best_trial
from automl.strategies.base import Observation, Status, Strategy, Suggestion
from automl.training.metrics import to_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_trials: int | None
    max_time: float | None
    max_failed: int
    max_budget: float
    max_trial_time: float | None = None  # seconds a trial may run before it is killed
    max_consecutive_failures: int | None = None  # abort the search after this many failures in a row
    retries: int = 0  # runs again of a trial whose worker crashed


class StopCause(str, enum.Enum):
    MAX_TRIALS = "max_trials"
    MAX_TIME = "max_time"
    MAX_FAILED = "max_failed"
    CONSECUTIVE_FAILURES = "max_consecutive_failures"
    STRATEGY_DONE = "strategy_done"


@dataclass(frozen=True)
class SearchEnd:
    """Why the search stopped: a cause to branch on and a sentence for people."""

    cause: StopCause
    message: str

    def __str__(self) -> str:
        return self.message


def epoch_losses(history: Sequence[Mapping[str, Any]], metric: str, direction: str) -> tuple[float, ...]:
    """The loss after each recorded epoch (inf where the metric was not finite), epoch 1 first."""
    losses = []
    for row in history:
        value = finite_number(row.get(metric))
        losses.append(to_loss(value, direction) if value is not None else math.inf)
    return tuple(losses)


def observation_of(record: TrialRecord, metric: str, direction: str, with_history: bool = False) -> Observation:
    """What a strategy is told of a finished trial; `with_history` adds its per-epoch losses."""
    history = epoch_losses(record.history, metric, direction) if with_history else ()
    return Observation(trial_id=record.trial_id, status=Status(record.status), loss=record.loss,
                       config=record.config, budget=record.budget,
                       metrics={k: v for k, v in record.metrics.items() if isinstance(v, (int, float))},
                       resume_from=record.resume_from, history=history)


class SearchLoop:
    def __init__(self, strategy: Strategy, *, label: str, space: SearchSpace, store: TrialStore, executor,
                 limits: Limits, metric: str, direction: str, observers: Observers | None = None,
                 prior_elapsed: float = 0.0, call_timeout: float = 600.0,
                 fallback: Callable[[], Strategy] | None = None, fallback_name: str = "random",
                 after_outcome: Callable[[list[TrialRecord]], None] | None = None,
                 time_reserve: Callable[[int], float] | None = None, keep_executor: bool = False,
                 start_time: float | None = None):
        # fallback: builds the strategy that takes over, once, from one that breaks; after_outcome: told
        # every trial once an outcome is committed and told (checkpoint retention: automl/retention.py);
        # time_reserve(trials finished): the seconds of max_time kept for start-up and the end of the run;
        # keep_executor: a normal end leaves the idle workers to the caller (the refit trains in one);
        # start_time: when the search's clock started (default now), e.g. when the workers got their setup
        self.strategy = strategy
        self.label = label  # "strategy 'x' from <source>", for errors
        self.space = space
        self.store = store
        self.executor = executor
        self.limits = limits
        self.metric = metric
        self.direction = direction
        self.observers = observers or Observers([])
        self.prior_elapsed = prior_elapsed
        self.start_time = time.time() if start_time is None else start_time
        self.call_timeout = call_timeout
        self.fallback = fallback
        self.fallback_name = fallback_name
        self.after_outcome = after_outcome
        self.time_reserve = time_reserve
        self.keep_executor = keep_executor
        self._finished = 0  # trials finished in this command: the reserve changes only then
        self.fell_back = False
        self._calls = CallThread()
        self._resubmit: list[TrialRequest] = []
        self._running: dict[str, TrialRequest] = {}
        self._failures_in_a_row = 0
        self._started_at: dict[str, float] = {}  # trial id -> first start, for epoch timings
        self.counts_full_trainings = bool(getattr(strategy, "partial_trials", False))  # see trials_used

    def elapsed(self) -> float:
        return self.prior_elapsed + time.time() - self.start_time

    # -- guarded strategy calls ----------------------------------------------------------------------
    # Every call runs in one dedicated thread so that a call that never returns can be
    # abandoned after `call_timeout` seconds; calls stay sequential, so strategies need
    # no locking. With a fallback, a strategy that breaks is replaced once (the new one is
    # rebuilt by replay) instead of ending the run.
    def _plugin_error(self, what: str) -> PluginError:
        return PluginError(f"{self.label} {what}; the trials finished so far are kept in {self.store.path}")

    def _call_once(self, method: str, *args, default=None):
        function = getattr(self.strategy, method, None)
        if function is None:
            return default
        future = self._calls.submit(function, *args)
        try:
            return result_in_slices(future, self.call_timeout)
        except concurrent.futures.TimeoutError:
            self._calls.shutdown()  # the stuck thread is abandoned, a fresh one serves the fallback
            self._calls = CallThread()
            raise self._plugin_error(f"did not return from {method}() within {self.call_timeout:g} s") from None
        except Exception as error:
            raise self._plugin_error(f"raised in {method}(): {type(error).__name__}: {error}") from error

    def _guarded(self, action, retry: bool = True):
        try:
            return action()
        except PluginError as error:
            if self.fallback is None or self.fell_back:
                raise
            self._switch_to_fallback(error)
            return action() if retry else None

    def _call(self, method: str, *args, default=None):
        # a tell or resume_pending that failed is covered by the fallback's replay: no retry
        retry = method not in ("tell", "resume_pending")
        return self._guarded(lambda: self._call_once(method, *args, default=default), retry=retry)

    def _switch_to_fallback(self, error: PluginError) -> None:
        log.warning("%s; falling back to the %s strategy", error, self.fallback_name)
        self.store.set_meta("strategy_fallback", {"error": str(error), "fallback": self.fallback_name,
                                                  "after_trials": self.store.counts()["total"]})
        self.fell_back = True
        self.strategy = self.fallback()
        self.label = f"fallback strategy {self.fallback_name!r}"
        self._replay_into_strategy(self._call_once)

    def _observation(self, record: TrialRecord) -> Observation:
        return observation_of(record, self.metric, self.direction, self._wants_history())

    def _wants_history(self) -> bool:
        return bool(getattr(self.strategy, "wants_history", False))

    def _replay_into_strategy(self, call) -> list[TrialRecord]:
        """Tell the strategy every finished trial in creation order and announce the interrupted
        ones; returns the interrupted ones. A strategy that wants the epoch history also hears the
        recorded epochs of an interrupted trial through should_stop, as it did before (answers unused)."""
        interrupted = []
        for record in self.store.trials(with_history=self._wants_history()):
            if record.finished:
                call("tell", self._observation(record))
                continue
            interrupted.append(record)
            call("resume_pending", Suggestion(record.trial_id, record.config, record.budget, record.resume_from))
            if self._wants_history():
                for epoch, loss in enumerate(epoch_losses(record.history, self.metric, self.direction), start=1):
                    call("should_stop", record.trial_id, epoch, loss)
        return interrupted

    def _ask(self) -> Suggestion | None:
        return self._guarded(self._ask_once)

    def _ask_once(self) -> Suggestion | None:
        suggestion = self._call_once("ask")
        if suggestion is None:
            return None
        if not isinstance(suggestion, Suggestion):
            raise self._plugin_error(f"returned {suggestion!r} from ask(), not a Suggestion or None")
        problems = self.space.problems(dict(suggestion.config))
        if problems:
            raise self._plugin_error(f"suggested a config outside the search space ({'; '.join(problems)}): "
                                     f"{dict(suggestion.config)!r}")
        budget = suggestion.budget
        if budget is not None and not (isinstance(budget, (int, float)) and 0 < budget <= self.limits.max_budget):
            raise self._plugin_error(f"suggested budget {budget!r}, outside (0, {self.limits.max_budget:g}]")
        if not isinstance(suggestion.trial_id, str) or not suggestion.trial_id or \
                self.store.trial(suggestion.trial_id) is not None:
            raise self._plugin_error(f"suggested trial id {suggestion.trial_id!r}, which is empty or already used")
        if suggestion.resume_from is not None and self.store.trial(suggestion.resume_from) is None:
            raise self._plugin_error(f"asked to resume from unknown trial {suggestion.resume_from!r}")
        return suggestion

    # -- resume ---------------------------------------------------------------------------------------
    def replay(self) -> list[TrialRequest]:
        """Rebuild the strategy from the store; return interrupted trials to run again."""
        resubmit = []
        for record in self._replay_into_strategy(self._call):
            self.store.reset_trial(record.trial_id)
            resubmit.append(TrialRequest(record.trial_id, record.config, record.budget or self.limits.max_budget,
                                         record.resume_from, time_limit=self.limits.max_trial_time))
        if resubmit:
            log.info("resuming %d interrupted trial(s) from their checkpoints", len(resubmit))
        return resubmit

    # -- the loop ---------------------------------------------------------------------------------------
    def _reserve(self) -> float:
        return self.time_reserve(self._finished) if self.time_reserve is not None else 0.0

    def _out_of_time(self) -> bool:
        return self.limits.max_time is not None and self.elapsed() >= self.limits.max_time - self._reserve()

    def trials_used(self, counts: Mapping[str, int]) -> float:
        """What max_trials counts: trials, or full trainings for a rung-ladder strategy."""
        return self.store.full_trainings(self.limits.max_budget) if self.counts_full_trainings else counts["total"]

    def budget_left(self) -> SearchEnd | None:
        """Why no new trial may start, or None."""
        limits = self.limits
        if limits.max_consecutive_failures is not None and self._failures_in_a_row >= limits.max_consecutive_failures:
            return SearchEnd(StopCause.CONSECUTIVE_FAILURES,
                             f"max_consecutive_failures ({limits.max_consecutive_failures}) trials failed in a row")
        counts = self.store.counts()
        if limits.max_trials is not None and self.trials_used(counts) >= limits.max_trials - 1e-9:
            unit = " full trainings" * self.counts_full_trainings
            return SearchEnd(StopCause.MAX_TRIALS, f"max_trials ({limits.max_trials}{unit}) reached")
        if self._out_of_time():
            reserve = self._reserve()
            kept = f" ({reserve:.0f} s of it kept for start-up and the end of the run)" if reserve >= 0.5 else ""
            return SearchEnd(StopCause.MAX_TIME, f"max_time ({limits.max_time:g} s) reached{kept}")
        if counts.get("FAILED", 0) >= limits.max_failed:
            return SearchEnd(StopCause.MAX_FAILED, f"max_failed ({limits.max_failed}) failed trials reached")
        return None

    def run(self, resubmit: Sequence[TrialRequest] = ()) -> SearchEnd:
        """Run until a budget or the strategy ends the search; returns why it stopped."""
        self._resubmit = list(resubmit)
        shutdown = True
        try:
            with interrupts.deferred():
                end = self._loop()
            shutdown = not self.keep_executor  # every worker is idle: the loop ends only then
            return end
        except BaseException:
            self._record_finished()
            raise
        finally:
            if shutdown:
                self.executor.shutdown()
            self._calls.shutdown()

    def _loop(self) -> SearchEnd:
        executor = self.executor
        strategy_done = False
        while True:
            interrupts.raise_pending()  # a safe point: Ctrl-C or SIGTERM noted since the last one
            for event in executor.events(timeout=0):  # tell the strategy everything before asking again
                self._handle(event)
            stop = self.budget_left()
            # fill the slots free now; a slot freed meanwhile waits until its outcome is recorded
            for _ in range(executor.capacity()):
                if self._resubmit and not self._out_of_time():  # they count already: no trial budget needed
                    request = self._resubmit.pop(0)
                elif stop is not None or strategy_done:
                    break
                else:
                    suggestion = self._ask()
                    if suggestion is None:
                        strategy_done = not executor.running()
                        break
                    budget = suggestion.budget if suggestion.budget is not None else self.limits.max_budget
                    self.store.add_trial(suggestion.trial_id, dict(suggestion.config), budget=budget,
                                         resume_from=suggestion.resume_from, family=suggestion.config.get("family"))
                    request = TrialRequest(suggestion.trial_id, dict(suggestion.config), budget, suggestion.resume_from)
                request = replace(request, time_limit=self.limits.max_trial_time, awaits_answers=self._prunes())
                self._running[request.trial_id] = request
                executor.submit(request)
                self.observers.trial_started(request.trial_id, request.config, request.budget)
                stop = self.budget_left()
            if executor.idle() and not (self._resubmit and not self._out_of_time()):
                if stop is not None:
                    return stop
                if strategy_done or self._call("is_finished", default=False):
                    return SearchEnd(StopCause.STRATEGY_DONE, "the strategy has nothing more to suggest")
            for event in executor.events(timeout=0.5):
                self._handle(event)
            if self._out_of_time():
                for trial_id in executor.running():
                    executor.stop(trial_id)

    def _retry(self, request: TrialRequest, outcome) -> TrialRequest | None:
        """A crashed worker is retried up to `retries` times (from the trial's checkpoint); out of
        memory once, with half the batch size. Anything else is the trial's own result."""
        if outcome.status != "FAILED":
            return None
        if outcome.reason == "crashed" and request.attempt < self.limits.retries:
            return replace(request, attempt=request.attempt + 1)
        batch_size = request.config.get("batch_size")
        if outcome.reason == "oom" and "batch_size" not in request.overrides and isinstance(batch_size, int) \
                and batch_size > 1:
            return replace(request, attempt=request.attempt + 1, overrides={"batch_size": batch_size // 2})
        return None

    def _record_finished(self) -> None:
        """On the way out after an error: keep the outcomes of trials that had already ended, and the
        epochs that arrived (a stopped trial's last checkpoint may hold them: it does not wait for their
        answers). Trials still running stay RUNNING in the store and resume from their checkpoints."""
        for event in self.executor.events(timeout=0):
            try:
                if event.kind == "finished":
                    self._handle(event)
                elif event.kind == "epoch":
                    self.store.add_epoch(event.trial_id, event.epoch, dict(event.metrics), event.elapsed or 0.0)
            except Exception:
                log.debug("while recording trial %s on the way out", event.trial_id, exc_info=True)
            finally:
                if event.kind == "epoch":
                    event.answer(True)

    def _prunes(self) -> bool:
        """Whether the strategy may stop a trial after an epoch: only then does a worker wait for each answer."""
        return getattr(type(self.strategy), "should_stop", None) is not Strategy.should_stop

    def _handle(self, event: TrialEvent) -> None:
        store = self.store
        if event.kind == "started":
            self._started_at[event.trial_id] = store.start_trial(event.trial_id, event.worker)
        elif event.kind == "epoch":
            elapsed = event.elapsed
            if elapsed is None:  # a transport without the worker's clock: read once per trial, not per epoch
                started = self._started_at.get(event.trial_id) or store.trial(event.trial_id).started_at or time.time()
                elapsed = time.time() - started
            store.add_epoch(event.trial_id, event.epoch, dict(event.metrics), elapsed)
            value = event.metrics.get(self.metric, math.nan)
            loss = to_loss(value, self.direction) if math.isfinite(value) else math.inf
            stop = False
            try:  # the worker waits for this answer: a strategy that never prunes is not asked
                if self._prunes():
                    stop = bool(self._call("should_stop", event.trial_id, event.epoch, loss, default=False))
            finally:
                event.answer(stop)
            self.observers.epoch(event.trial_id, event.epoch, event.metrics)  # after the answer: off the worker's path
        elif event.kind == "finished":
            outcome = event.outcome
            request = self._running.pop(event.trial_id, None)
            retry = self._retry(request, outcome) if request is not None else None
            if retry is not None:
                store.add_attempt(event.trial_id, request.attempt, outcome.reason, outcome.error,
                                  dict(request.overrides))
                store.reset_trial(event.trial_id)
                self._resubmit.insert(0, retry)
                log.warning("trial %s %s; running it again (attempt %d%s)", event.trial_id, outcome.reason,
                            retry.attempt + 1, f", with {dict(retry.overrides)}" if retry.overrides else "")
                return
            self._failures_in_a_row = self._failures_in_a_row + 1 if outcome.status == "FAILED" else 0
            # a crashed attempt counts only its own epochs: the rows of the trial's earlier attempts count too
            epochs = max([outcome.epochs] + [h["epoch"] for h in store.history(event.trial_id)])
            store.finish_trial(event.trial_id, outcome.status, loss=outcome.loss, metrics=outcome.metrics,
                               epochs=epochs, reason=outcome.reason, error=outcome.error)
            self._finished += 1
            record = store.trial(event.trial_id)
            if outcome.status == "FAILED":
                last_line = (outcome.error or "").strip().splitlines()[-1:] or [""]
                log.warning("trial %s failed (%s): %s", event.trial_id, outcome.reason, last_line[0])
            self._call("tell", self._observation(record))  # store.trial() holds the epoch history
            trials = store.trials()
            self.observers.trial_finished(record, best_trial(trials), sum(1 for t in trials if t.finished),
                                          self.elapsed())
            if self.after_outcome is not None:
                self.after_outcome(trials)


def metrics_of(result: float | Mapping[str, Any], metric: str) -> dict[str, float]:
    """An objective's return value as metrics: a number is the metric itself."""
    if isinstance(result, Mapping):
        return {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}
    return {metric: float(result)}
