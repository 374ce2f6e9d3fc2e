"""ASHA: the rung ladder, asynchronous promotions, stopping mode, the sampler, replay."""
from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from automl.errors import SpecError
from automl.plugins import Plugin, Registry
from automl.space import Choice, Float, SearchSpace
from automl.strategies.asha import ASHAOptions, ASHAStrategy, rung_budgets
from automl.strategies.base import Observation, Status, Suggestion
from automl.strategies.random import RandomStrategy
from automl.strategy_builder import StrategySetup, build_strategy
from automl.testing import check_strategy

SPACE = SearchSpace((Float("x", 0.0, 1.0), Choice("kind", ("a", "b"))))


def make(tmp_path=None, run_budget=9.0, registry=None, **options) -> ASHAStrategy:
    """ASHA with the pre-model settings these tests were written for (bottom rung 1 epoch,
    random sampler) unless `options` say otherwise."""
    options = {"min_budget": 1, "sampler": "random", **options}
    return build_strategy(ASHAStrategy, options, StrategySetup(SPACE, 0, run_budget, tmp_path, parallelism=4),
                          registry=registry)


def objective(config, budget) -> float:
    """Lower x is better at every budget; more epochs help everyone."""
    return config["x"] + (0.2 if config["kind"] == "b" else 0.0) + 1.0 / budget


def observe(suggestion: Suggestion, status: Status = Status.COMPLETE, loss: float | None = None,
            history: tuple[float, ...] = ()) -> Observation:
    if status is not Status.FAILED and loss is None:
        loss = objective(suggestion.config, suggestion.budget)
    return Observation(suggestion.trial_id, status, loss, dict(suggestion.config), suggestion.budget,
                       history=history)


def simulate(strategy, n_trials: int, workers: int = 4, seed: int = 0, finish_all: bool = True):
    """Run `workers` trials at once, finishing them in a random order; returns (suggestions by
    id in creation order, observations in the order told, still pending, how many had been
    told when each trial was asked)."""
    order = random.Random(seed)
    asked: dict[str, Suggestion] = {}
    told_before: dict[str, int] = {}
    told: list[Observation] = []
    pending: list[Suggestion] = []
    while len(asked) < n_trials or (finish_all and pending):
        while len(pending) < workers and len(asked) < n_trials:
            suggestion = strategy.ask()
            assert suggestion.trial_id not in asked, "a trial id was reused"
            asked[suggestion.trial_id] = suggestion
            told_before[suggestion.trial_id] = len(told)
            pending.append(suggestion)
        if not finish_all and len(asked) >= n_trials:
            break
        done = pending.pop(order.randrange(len(pending)))
        told.append(observe(done))
        strategy.tell(told[-1])
    return asked, told, pending, told_before


# -- conformance and options -----------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"mode": "stopping"}, {"sampler": "random", "reduction_factor": 2},
                                     {"min_budget": 9}])
def test_conformance(options):
    check_strategy(ASHAStrategy, options)


def test_rung_ladder():
    assert make().rungs == [1, 3, 9]
    assert rung_budgets(1, 10, 3) == [1, 3, 9, 10]
    assert rung_budgets(1, 8, 2) == [1, 2, 4, 8]
    assert make(min_budget=9).rungs == [9]
    assert make(max_budget=3).rungs == [1, 3]
    assert make(max_budget=3).ask().budget == 1


def test_bad_options_are_clear():
    with pytest.raises(SpecError, match="max_budget"):
        make(max_budget=20)
    with pytest.raises(SpecError, match="min_budget"):
        make(min_budget=10)
    with pytest.raises(ValidationError):
        ASHAOptions(eta=3)  # extra keys are refused
    with pytest.raises(ValidationError, match="its own sampler"):
        ASHAOptions(sampler="asha")


# -- promotion mode ----------------------------------------------------------------------------
def test_promotions_continue_the_best_configs_of_a_rung():
    strategy = make()
    asked, told, _, told_before = simulate(strategy, n_trials=80)
    promotions = [s for s in asked.values() if s.resume_from is not None]
    assert {s.budget for s in promotions} == {3, 9}
    for promotion in promotions:
        source = asked[promotion.resume_from]
        assert list(asked).index(source.trial_id) < list(asked).index(promotion.trial_id)
        assert promotion.config == source.config
        assert promotion.budget == strategy.rungs[strategy.rungs.index(source.budget) + 1]
        # when it was promoted, the source was in the top 1/eta of its rung's results so far
        before = told[:told_before[promotion.trial_id]]
        rung = sorted(o.loss for o in before if o.budget == source.budget)
        source_loss = next(o.loss for o in before if o.trial_id == source.trial_id)
        assert rung.index(source_loss) < len(rung) // 3
    # a config is promoted out of a rung at most once
    lineage = [(tuple(sorted(s.config.items())), s.budget) for s in asked.values()]
    assert len(lineage) == len(set(lineage))
    mean_x = lambda budget: sum(s.config["x"] for s in asked.values() if s.budget == budget) / \
        sum(1 for s in asked.values() if s.budget == budget)
    assert mean_x(9) < mean_x(3) < mean_x(1)


def test_promotion_is_asynchronous():
    strategy = make()
    first = [strategy.ask() for _ in range(3)]
    assert all(s.budget == 1 and s.resume_from is None for s in first)
    for suggestion, loss in zip(first[:2], (0.5, 0.2)):
        strategy.tell(observe(suggestion, loss=loss))
    waiting = strategy.ask()  # two results: the top third is empty, so a new config
    assert waiting.budget == 1 and waiting.resume_from is None
    strategy.tell(observe(first[2], loss=0.9))
    promotion = strategy.ask()  # `waiting` still runs on rung 0: no need to wait for it
    assert promotion.resume_from == first[1].trial_id and promotion.budget == 3
    assert promotion.config == first[1].config
    assert promotion.trial_id == f"{first[1].trial_id}-r1"
    assert strategy.ask().resume_from is None  # first[1] is promoted once only


def test_failed_and_pruned_trials_are_never_promoted():
    strategy = make()
    trials = [strategy.ask() for _ in range(6)]
    strategy.tell(observe(trials[0], Status.FAILED))
    strategy.tell(observe(trials[1], Status.PRUNED, loss=0.01))  # best loss, but stopped short of the rung
    for trial, loss in zip(trials[2:], (0.5, 0.6, 0.7, 0.8)):
        strategy.tell(observe(trial, loss=loss))
    # 5 results at rung 0 -> a top of 1, held by the pruned trial: nothing to promote
    assert strategy.ask().resume_from is None


def test_should_stop_never_stops_in_promotion_mode():
    strategy = make()
    trial = strategy.ask()
    assert strategy.should_stop(trial.trial_id, 1, 1e9) is False


# -- stopping mode ------------------------------------------------------------------------------
def test_stopping_mode_prunes_bad_trials_at_milestones(tmp_path):
    strategy = make(tmp_path, mode="stopping")
    trials = [strategy.ask() for _ in range(8)]
    assert all(t.budget == 9 and t.resume_from is None for t in trials)
    assert strategy.should_stop(trials[0].trial_id, 1, 0.3) is False  # the first at a milestone goes on
    for trial, loss in zip(trials[1:5], (0.5, 0.2, 0.6, 0.4)):
        strategy.should_stop(trial.trial_id, 1, loss)
    bad, good = trials[5], trials[6]
    assert strategy.should_stop(bad.trial_id, 1, 0.9) is True
    assert strategy.should_stop(good.trial_id, 1, 0.1) is False
    assert strategy.should_stop(good.trial_id, 2, 5.0) is False  # not a milestone
    assert strategy.should_stop(good.trial_id, 3, 5.0) is False  # alone at rung 3
    assert strategy.should_stop(trials[7].trial_id, 3, 6.0) is True
    strategy.tell(observe(bad, Status.PRUNED, loss=0.9))
    strategy.tell(observe(good))


def test_stopping_mode_replay_reads_the_epoch_history(tmp_path):
    original = make(tmp_path, mode="stopping")
    assert original.wants_history and not make().wants_history
    trials = [original.ask() for _ in range(9)]
    for trial, loss in zip(trials, [0.1 * i for i in range(1, 10)]):
        pruned = original.should_stop(trial.trial_id, 1, loss)
        original.tell(observe(trial, Status.PRUNED if pruned else Status.COMPLETE, loss=loss, history=(loss,)))

    rebuilt = make(tmp_path, mode="stopping")
    blind = make(tmp_path, mode="stopping")
    for trial, loss in zip(trials, [0.1 * i for i in range(1, 10)]):
        rebuilt.tell(observe(trial, loss=loss, history=(loss,)))
        blind.tell(observe(trial, loss=loss))
    nxt = rebuilt.ask()
    assert nxt == blind.ask() == original.ask()  # the sampler goes on where it stopped
    assert nxt.trial_id not in {t.trial_id for t in trials}
    # 10 losses at rung 0 -> keep 3; 0.35 has 3 better: stopped, as the original would
    assert rebuilt.should_stop(nxt.trial_id, 1, 0.35) is True
    assert original.should_stop(nxt.trial_id, 1, 0.35) is True
    assert blind.should_stop(nxt.trial_id, 1, 0.35) is False  # without the history nothing is known


# -- the sampler ----------------------------------------------------------------------------------
def test_new_configs_come_from_the_sampler():
    strategy = make(sampler="random")
    sampler = RandomStrategy(SPACE, seed=0, max_budget=9.0)
    for _ in range(4):
        ours, theirs = strategy.ask(), sampler.ask()
        assert (ours.trial_id, ours.config) == (theirs.trial_id, theirs.config)


def test_an_unknown_sampler_is_a_clear_error_when_built():
    with pytest.raises(SpecError, match=r"strategy.options.sampler: .*'nope'.*known: .*random"):
        make(sampler="nope")
    with pytest.raises(SpecError, match=r"strategy.options.sampler_options.unknown"):
        make(sampler_options={"unknown": 1})


def test_the_sampler_is_built_by_the_caller_and_handed_in(tmp_path):
    strategy = make(tmp_path, sampler="random")
    assert isinstance(strategy.inner["sampler"], RandomStrategy)
    assert strategy.inner["sampler"].workdir == tmp_path / "sampler" and strategy.inner["sampler"].parallelism == 4
    with pytest.raises(ValueError, match="sampler handed in"):
        ASHAStrategy(SPACE, seed=0, max_budget=9.0, options=ASHAOptions())


class Recorder(RandomStrategy):
    name = "recorder"
    told: list[Observation] = []

    def tell(self, observation):
        super().tell(observation)
        Recorder.told.append(observation)


def test_the_sampler_is_told_each_proposal_once_at_the_bottom_rung(monkeypatch):
    registry = Registry()
    registry.add(Plugin("strategies", "recorder", "the test", lambda: Recorder))
    monkeypatch.setattr(Recorder, "told", [])
    asked, _, _, _ = simulate(make(sampler="recorder", registry=registry), n_trials=40)
    proposed = [s.trial_id for s in asked.values() if s.resume_from is None]
    assert sorted(o.trial_id for o in Recorder.told) == sorted(proposed)
    assert {o.budget for o in Recorder.told} == {1}


# -- replay ----------------------------------------------------------------------------------------
def test_replay_goes_on_without_re_promoting_or_reusing_ids():
    original = make()
    asked, told, pending, _ = simulate(original, n_trials=40, finish_all=False)
    assert {s.budget for s in pending if s.resume_from} == {3, 9}  # interrupted promotions to both rungs

    rebuilt = make()
    finished = {o.trial_id: o for o in told}
    for trial_id in asked:  # the agent replays in creation order, then resumes the interrupted ones
        if trial_id in finished:
            rebuilt.tell(finished[trial_id])
    for suggestion in asked.values():
        if suggestion.trial_id not in finished:
            rebuilt.resume_pending(suggestion)

    following = [rebuilt.ask() for _ in range(15)]
    assert following == [original.ask() for _ in range(15)]  # the same state as the uninterrupted run
    assert not {s.trial_id for s in following} & set(asked)
    runs = [(tuple(sorted(s.config.items())), s.budget) for s in [*asked.values(), *following]]
    assert len(runs) == len(set(runs)), "a config was promoted to a rung twice (or a config repeated)"
