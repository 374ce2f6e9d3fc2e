"""Resume by replay: what a rebuilt strategy hears from the store, and why the search stops."""
from __future__ import annotations

import math

from automl.records import Status
from automl.search import Limits, SearchLoop, StopCause
from automl.space import Float, SearchSpace
from automl.store import TrialStore
from automl.strategies.random import RandomStrategy

SPACE = SearchSpace((Float("x", 0.0, 1.0),))


class Listener(RandomStrategy):
    name = "listener"

    def __init__(self, space, wants_history: bool, **context):
        super().__init__(space, **context)
        self.wants_history = wants_history
        self.heard: list[tuple] = []

    def tell(self, observation):
        super().tell(observation)
        self.heard.append(("tell", observation.trial_id, observation.history, observation.resume_from))

    def resume_pending(self, suggestion):
        super().resume_pending(suggestion)
        self.heard.append(("resume_pending", suggestion.trial_id))

    def should_stop(self, trial_id, step, loss):
        self.heard.append(("should_stop", trial_id, step, loss))
        return True


class NoExecutor:
    def shutdown(self):
        pass


def store_with_history(path) -> TrialStore:
    """Trial a finished after 3 epochs, b (promoted from a) interrupted after 2: accuracy, maximised."""
    store = TrialStore(path / TrialStore.FILENAME)
    for trial_id, resume_from in (("a", None), ("b", "a")):
        store.add_trial(trial_id, {"x": 0.5}, budget=3, resume_from=resume_from)
        store.start_trial(trial_id, "w")
    for epoch, accuracy in enumerate((0.5, 0.7, 0.6), start=1):
        store.add_epoch("a", epoch, {"accuracy": accuracy, "val_loss": 1.0}, float(epoch))
    for epoch, accuracy in enumerate((0.8, math.nan), start=1):
        store.add_epoch("b", epoch, {"accuracy": accuracy, "val_loss": 1.0}, float(epoch))
    store.finish_trial("a", Status.COMPLETE, loss=-0.7, metrics={"accuracy": 0.7}, epochs=3)
    return store


def loop(store, strategy) -> SearchLoop:
    return SearchLoop(strategy, label="strategy 'listener'", space=SPACE, store=store, executor=NoExecutor(),
                      limits=Limits(max_trials=2, max_time=None, max_failed=5, max_budget=3.0),
                      metric="accuracy", direction="maximize")


def test_a_strategy_that_wants_the_history_hears_every_recorded_epoch(tmp_path):
    store = store_with_history(tmp_path)
    strategy = Listener(SPACE, True, seed=0, max_budget=3.0)
    resubmit = loop(store, strategy).replay()
    assert [r.trial_id for r in resubmit] == ["b"] and resubmit[0].resume_from == "a"
    assert strategy.heard == [
        ("tell", "a", (-0.5, -0.7, -0.6), None),  # losses: the maximised accuracy negated
        ("resume_pending", "b"),
        ("should_stop", "b", 1, -0.8), ("should_stop", "b", 2, math.inf),  # NaN ranks last
    ]
    assert store.trial("b").status == Status.PENDING
    store.close()


def test_other_strategies_hear_no_history(tmp_path):
    store = store_with_history(tmp_path)
    strategy = Listener(SPACE, False, seed=0, max_budget=3.0)
    loop(store, strategy).replay()
    assert strategy.heard == [("tell", "a", (), None), ("resume_pending", "b")]
    store.close()


def test_the_search_end_carries_a_cause_to_branch_on(tmp_path):
    store = store_with_history(tmp_path)
    end = loop(store, Listener(SPACE, False, seed=0, max_budget=3.0)).budget_left()
    assert end.cause is StopCause.MAX_TRIALS and str(end) == "max_trials (2) reached"
    store.close()
