"""Grid search: exact points, conditional expansion, order, resolution, replay."""
from __future__ import annotations


import pydantic
import pytest

from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.strategies.base import Observation, Status
from automl.strategies.grid import GridStrategy, _Permutation
from automl.testing import MIXED_SPACE, check_strategy

# 2 kinds x 3 values of x, and 3 values of m only where kind == "b": 3 + 3 * 3 = 12 points
SMALL = SearchSpace((
    Choice("kind", ("a", "b")),
    Float("x", 0.0, 1.0),
    Float("m", 0.5, 0.9, condition=Condition("kind", ("b",))),
))


def make(space=SMALL, seed=0, **options) -> GridStrategy:
    strategy = GridStrategy(space, seed=seed, max_budget=4.0, options=GridStrategy.Options.model_validate(options))
    strategy.parallelism = 4
    return strategy


def ask_all(strategy: GridStrategy) -> list:
    suggestions = []
    while (suggestion := strategy.ask()) is not None:
        suggestions.append(suggestion)
        assert len(suggestions) <= 10_000, "the grid never ends"
    return suggestions


def key(config) -> tuple:
    return tuple(sorted(config.items()))


@pytest.mark.parametrize("options", [None, {"shuffle": False}, {"resolution": 2}, {"resolution": 1}])
def test_conformance(options):
    check_strategy(GridStrategy, options)


def test_a_small_grid_has_exactly_its_points_all_distinct_and_inside_the_space():
    strategy = make(resolution=3)
    assert strategy.size == 12
    suggestions = ask_all(strategy)
    configs = [dict(s.config) for s in suggestions]
    assert len(configs) == 12 and len({key(c) for c in configs}) == 12
    assert all(SMALL.problems(c) == [] for c in configs)
    assert sum(c["kind"] == "a" for c in configs) == 3  # m is not expanded where it is inactive
    assert {c["x"] for c in configs} == {0.0, 0.5, 1.0}
    assert {c["m"] for c in configs if "m" in c} == {0.5, 0.7, 0.9}
    assert len({s.trial_id for s in suggestions}) == 12
    assert all(s.budget == 4.0 for s in suggestions)


def test_is_finished_once_every_point_is_suggested_then_ask_returns_none():
    strategy = make(resolution=2)  # 2 + 2 * 2 = 6 points
    for _ in range(5):
        assert not strategy.is_finished()
        strategy.ask()
    assert not strategy.is_finished()
    strategy.ask()
    assert strategy.is_finished() and strategy.ask() is None


def test_the_order_is_reproducible_for_a_seed_and_shuffled():
    def order(seed, **options):
        return [key(s.config) for s in ask_all(make(seed=seed, resolution=3, **options))]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == sorted(order(2))
    plain = order(1, shuffle=False)
    assert [dict(c)["kind"] for c in plain] == ["a"] * 3 + ["b"] * 9  # grid order, unshuffled
    assert plain != order(1)


def test_the_resolution_option_sets_the_values_per_numeric_parameter():
    space = SearchSpace((
        Float("x", 0.0, 1.0),
        Float("lr", 1e-4, 1e-1, log=True),
        Int("depth", 1, 7, step=2),
        Int("width", 16, 256, log=True),
    ))
    configs = [s.config for s in ask_all(make(space, resolution=4))]
    values = {name: sorted({c[name] for c in configs}) for name in space.names}
    assert values["x"] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert values["lr"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])  # log-spaced
    assert values["depth"] == [1, 3, 5, 7]  # the step is respected
    assert values["width"][0] == 16 and values["width"][-1] == 256 and len(values["width"]) == 4
    assert len(configs) == 4 ** 4 and all(space.problems(dict(c)) == [] for c in configs)

    middle = [s.config for s in ask_all(make(space, resolution=1))]
    assert len(middle) == 1 and middle[0]["x"] == 0.5 and middle[0]["lr"] == pytest.approx(10 ** -2.5)


def test_int_grids_are_deduplicated():
    space = SearchSpace((Int("n", 1, 3), Int("m", 4, 4), Float("f", 2.0, 2.0)))
    configs = [s.config for s in ask_all(make(space, resolution=10))]
    assert sorted(c["n"] for c in configs) == [1, 2, 3]
    assert all(c["m"] == 4 and c["f"] == 2.0 for c in configs)


def test_replay_skips_told_and_pending_points_and_continues_with_new_ids():
    first = make(seed=4, resolution=3)
    history = [first.ask() for _ in range(7)]

    replayed = make(seed=4, resolution=3)
    for suggestion in history[:5]:
        replayed.tell(Observation(suggestion.trial_id, Status.COMPLETE, 1.0, dict(suggestion.config)))
    for suggestion in history[5:]:
        replayed.resume_pending(suggestion)
    rest = ask_all(replayed)
    assert len(rest) == 12 - 7 and replayed.is_finished()
    seen = {key(s.config) for s in history}
    assert not seen & {key(s.config) for s in rest}
    assert not {s.trial_id for s in history} & {s.trial_id for s in rest}


def test_a_huge_grid_is_never_listed():
    space = SearchSpace(tuple(Float(f"p{i}", 0.0, 1.0) for i in range(12)))  # 5 ** 12: 244 million points
    strategy = make(space)
    assert strategy.size == 5 ** 12
    configs = [strategy.ask().config for _ in range(200)]
    assert len({key(c) for c in configs}) == 200


@pytest.mark.parametrize("n", [1, 2, 3, 12, 100, 1025])
def test_the_permutation_is_a_bijection(n):
    permutation = _Permutation(n, seed=3)
    assert sorted(permutation(i) for i in range(n)) == list(range(n))


def test_bad_options_are_refused():
    with pytest.raises(pydantic.ValidationError):
        GridStrategy.Options(resolution=0)
    with pytest.raises(pydantic.ValidationError):
        GridStrategy.Options(steps=3)


def test_mixed_space_size():
    # kind a / c: 5 lr x 5 dropout x 5 width x 4 depth; kind b also 5 momentum values
    assert make(MIXED_SPACE).size == (2 + 5) * 5 * 5 * 5 * 4
