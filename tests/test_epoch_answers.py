"""A worker waits for the driver's answer after an epoch only where the strategy may prune the
trial: elsewhere the answer can only say "go on", and waiting for it would tie every epoch to the
driver (its database write, a strategy's ask for another worker, an import)."""
from __future__ import annotations

import pytest

from automl.execution.slots import plan_slots
from automl.execution.threads import ThreadExecutor
from automl.records import Reply, Status, TrialEvent, TrialOutcome
from automl.search import Limits, SearchLoop
from automl.space import Float, SearchSpace
from automl.store import TrialStore
from automl.strategies.random import RandomStrategy

SPACE = SearchSpace((Float("x", 0.0, 1.0),))


class PruneAtEpochTwo(RandomStrategy):
    def should_stop(self, trial_id: str, step: int, loss: float) -> bool:
        return step >= 2


@pytest.mark.parametrize("strategy_cls, awaits", [(RandomStrategy, False), (PruneAtEpochTwo, True)])
def test_requests_await_answers_only_where_the_strategy_prunes(tmp_path, strategy_cls, awaits):
    seen = []

    def run(request, report):
        seen.append(request.awaits_answers)
        for epoch in range(1, 4):
            if report(epoch, {"loss": 1.0 / epoch}):
                return TrialOutcome(Status.PRUNED, 1.0 / epoch, {"loss": 1.0 / epoch}, epochs=epoch)
        return TrialOutcome(Status.COMPLETE, 1 / 3, {"loss": 1 / 3}, epochs=3)

    store = TrialStore(tmp_path / TrialStore.FILENAME)
    loop = SearchLoop(strategy_cls(SPACE, seed=0, max_budget=3.0), label="strategy", space=SPACE, store=store,
                      executor=ThreadExecutor(lambda slot: run, plan_slots("cpu", 1, cpu_count=1)),
                      metric="loss", direction="minimize", limits=Limits(2, None, 10, 3.0))
    try:
        loop.run([])
        trials = store.trials(with_history=True)
    finally:
        store.close()
    assert seen == [awaits, awaits]
    assert [(t.status, t.epochs) for t in trials] == ([("PRUNED", 2)] * 2 if awaits else [("COMPLETE", 3)] * 2)
    assert [len(t.history) for t in trials] == [t.epochs for t in trials]  # every epoch recorded either way


class InterruptedWithEpochsPending:
    """An executor whose first poll is cut by Ctrl-C while a trial's epochs wait to be read."""

    def __init__(self):
        self.polls, self.answers = 0, []

    def capacity(self):
        return 0

    def running(self):
        return ["0000"]

    def idle(self):
        return False

    def stop(self, trial_id):
        pass

    def shutdown(self, wait=5.0):
        pass

    def events(self, timeout=None):
        self.polls += 1
        if self.polls == 1:
            raise KeyboardInterrupt
        return [TrialEvent("epoch", "0000", "w", epoch=epoch, metrics={"loss": 1.0 / epoch}, elapsed=0.1 * epoch,
                           reply=Reply(self.answers.append)) for epoch in (1, 2)]


def test_epochs_that_arrived_are_recorded_on_the_way_out(tmp_path):
    """A stopped trial writes its checkpoint without waiting for the answers to its last epochs:
    the driver leaving on Ctrl-C records the epochs that reached it, so the history the trial
    resumes with has no hole."""
    store = TrialStore(tmp_path / TrialStore.FILENAME)
    store.add_trial("0000", {"x": 0.5}, budget=3.0)
    store.start_trial("0000", "w")
    executor = InterruptedWithEpochsPending()
    loop = SearchLoop(RandomStrategy(SPACE, seed=0, max_budget=3.0), label="strategy", space=SPACE, store=store,
                      executor=executor, metric="loss", direction="minimize", limits=Limits(2, None, 10, 3.0))
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run([])
        history = store.trial("0000").history
    finally:
        store.close()
    assert [(row["epoch"], row["elapsed"]) for row in history] == [(1, 0.1), (2, 0.2)]
    assert executor.answers == [True, True]
