"""A trial whose worker crashes again on its retries is FAILED with the epochs its history shows:
every attempt's epoch rows count, not only those of the attempt that crashed last."""
from __future__ import annotations

from automl.execution.processes import ProcessExecutor, plan_slots
from automl.search import Limits, SearchLoop
from automl.space import Choice, SearchSpace
from automl.store import TrialStore
from automl.strategies.random import RandomStrategy
from tests.execution.test_executor_contract import setup


def test_a_trial_that_crashes_on_every_retry_counts_the_epochs_of_every_attempt(tmp_path):
    """Epochs 1-2, crash; 3-4 (as from the checkpoint), crash; a crash before any epoch: FAILED at epoch 4."""
    space = SearchSpace((Choice("mode", ("crash_resumed",)), Choice("counter", (str(tmp_path / "crashes"),))))
    store = TrialStore(tmp_path / TrialStore.FILENAME)
    executor = ProcessExecutor(setup, plan_slots("cpu", 1, cpu_count=1))
    try:
        SearchLoop(RandomStrategy(space, seed=0, max_budget=8.0), label="strategy 'random'", space=space,
                   store=store, executor=executor, metric="loss", direction="minimize",
                   limits=Limits(max_trials=1, max_time=None, max_failed=1, max_budget=8.0, retries=2)).run([])
        [trial], attempts = store.trials(with_history=True), store.attempts()
    finally:
        executor.shutdown()
        store.close()
    assert (tmp_path / "crashes").read_text() == "3"
    assert [a["reason"] for a in attempts] == ["crashed", "crashed"]  # each one run again
    assert (trial.status, trial.reason) == ("FAILED", "crashed")  # the third: no retry left
    assert [h["epoch"] for h in trial.history] == [1, 2, 3, 4]
    assert trial.epochs == 4  # was the last attempt's count of epochs: 0
