"""A worker waits for the driver's answer after an epoch only where the strategy may prune the
trial: elsewhere the answer can only say "go on", and waiting for it would tie every epoch to the
driver (its database write, a strategy's ask for another worker, an import)."""
from __future__ import annotations

import pytest

from automl.execution.slots import plan_slots
from automl.execution.threads import ThreadExecutor
from automl.records import Status, TrialOutcome
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
