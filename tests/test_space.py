"""Search spaces: sampling, validation (`problems`), unit mapping, overrides, serialisation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from automl.space import Choice, Condition, Float, Int, SearchSpace

FAMILY_A = Condition("family", ("a",))
FAMILY_B = Condition("family", ("b",))


def make_space() -> SearchSpace:
    """Two branches, one of them with a second level of conditions (b.kind -> b.alpha)."""
    return SearchSpace((
        Choice("family", ("a", "b")),
        Float("lr", 1e-4, 1e-1, log=True),
        Float("dropout", 0.0, 0.5),
        Choice("flag", (True, False)),
        Choice("n", (1, 2, 3)),
        Int("a.depth", 1, 5, condition=FAMILY_A),
        Int("a.width", 8, 64, step=8, condition=FAMILY_A),
        Int("a.units", 1, 1000, log=True, condition=FAMILY_A),
        Choice("b.kind", ("x", "y"), condition=FAMILY_B),
        Float("b.alpha", 0.0, 1.0, condition=Condition("b.kind", ("x",))),
    ))


def valid_a() -> dict:
    return {"family": "a", "lr": 0.01, "dropout": 0.1, "flag": True, "n": 2,
            "a.depth": 3, "a.width": 16, "a.units": 10}


def valid_b(kind: str = "x") -> dict:
    config = {"family": "b", "lr": 0.01, "dropout": 0.1, "flag": False, "n": 1, "b.kind": kind}
    if kind == "x":
        config["b.alpha"] = 0.5
    return config


# --- sampling ---------------------------------------------------------------

def test_samples_always_belong_to_the_space_and_respect_conditions():
    space = make_space()
    rng = np.random.default_rng(0)
    families, kinds = set(), set()
    for _ in range(500):
        config = space.sample(rng)
        assert space.problems(config) == [], config
        assert space.contains(config)
        family = config["family"]
        families.add(family)
        a_keys = {"a.depth", "a.width", "a.units"}
        if family == "a":
            assert a_keys <= set(config)
            assert "b.kind" not in config and "b.alpha" not in config
        else:
            assert not a_keys & set(config)
            kinds.add(config["b.kind"])
            assert ("b.alpha" in config) == (config["b.kind"] == "x")
    assert families == {"a", "b"}
    assert kinds == {"x", "y"}


def test_sampling_is_reproducible_for_a_seed():
    space = make_space()
    first = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    again = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert first == again


def test_known_valid_configs_have_no_problems():
    space = make_space()
    assert space.problems(valid_a()) == []
    assert space.problems(valid_b("x")) == []
    assert space.problems(valid_b("y")) == []


def test_int_with_step_samples_only_grid_values_and_reaches_all_of_them():
    param = Int("w", 8, 64, step=8)
    rng = np.random.default_rng(1)
    seen = {param.sample(rng) for _ in range(400)}
    assert seen == {8, 16, 24, 32, 40, 48, 56, 64}
    assert all(type(v) is int for v in seen)


def test_int_with_step_not_reaching_high_never_goes_past_the_last_grid_value():
    param = Int("w", 0, 10, step=3)
    assert param.values == [0, 3, 6, 9]
    rng = np.random.default_rng(2)
    seen = {param.sample(rng) for _ in range(300)}
    assert seen == {0, 3, 6, 9}
    assert param.from_unit(1.0) == 9
    assert param.problem(10) is not None  # in range but off the grid
    assert param.problem(9) is None


def test_int_log_scale_samples_are_integers_in_range_and_log_distributed():
    param = Int("units", 1, 1000, log=True)
    rng = np.random.default_rng(3)
    draws = [param.sample(rng) for _ in range(2000)]
    assert all(type(v) is int and 1 <= v <= 1000 for v in draws)
    # log-uniform: about half the mass below sqrt(1000) ~ 31.6 (uniform would put ~3% there)
    below = np.mean([v < 32 for v in draws])
    assert 0.4 < below < 0.6
    assert param.from_unit(0.0) == 1
    assert param.from_unit(1.0) == 1000


def test_float_log_scale_samples_are_log_distributed():
    param = Float("lr", 1e-4, 1e-1, log=True)
    rng = np.random.default_rng(4)
    draws = np.array([param.sample(rng) for _ in range(2000)])
    assert ((draws >= 1e-4) & (draws <= 1e-1)).all()
    below_geometric_mean = np.mean(draws < math.sqrt(1e-4 * 1e-1))
    assert 0.4 < below_geometric_mean < 0.6


def test_invalid_param_definitions_are_rejected():
    with pytest.raises(ValueError):
        Float("x", 1.0, 0.0)
    with pytest.raises(ValueError):
        Float("x", 0.0, 1.0, log=True)  # log needs low > 0
    with pytest.raises(ValueError):
        Int("x", 5, 1)
    with pytest.raises(ValueError):
        Int("x", 1, 5, step=0)
    with pytest.raises(ValueError):
        Int("x", 0, 5, log=True)
    with pytest.raises(ValueError):
        Int("x", 1, 64, step=2, log=True)
    with pytest.raises(ValueError):
        Choice("x", ())


# --- problems() --------------------------------------------------------------

def only_problem(space: SearchSpace, config: dict) -> str:
    found = space.problems(config)
    assert len(found) == 1, found
    assert not space.contains(config)
    return found[0]


@pytest.mark.parametrize("name, value", [
    ("lr", 0.5),               # above high
    ("lr", 1e-5),              # below low
    ("dropout", -0.01),
    ("dropout", float("nan")),
    ("dropout", "0.1"),        # a string is not a number
    ("a.depth", 6),
    ("a.depth", 0),
    ("a.width", 12),           # in range, off the step grid
    ("a.width", 72),
    ("a.units", 1001),
    ("a.depth", 3.0),          # a float is not an int
    ("a.depth", True),         # a bool is not an int
])
def test_problems_catches_bad_values(name, value):
    config = valid_a()
    config[name] = value
    message = only_problem(make_space(), config)
    assert name in message


def test_problems_accepts_numpy_integers_for_int_params():
    config = valid_a()
    config["a.depth"] = np.int64(2)
    assert make_space().problems(config) == []


def test_problems_reports_a_missing_active_parameter():
    config = valid_a()
    del config["a.width"]
    assert only_problem(make_space(), config) == "a.width is missing"


def test_problems_reports_a_missing_nested_conditional_parameter():
    config = valid_b("x")
    del config["b.alpha"]
    assert only_problem(make_space(), config) == "b.alpha is missing"


def test_problems_reports_an_inactive_parameter_that_is_given():
    config = valid_a()
    config["b.kind"] = "x"
    message = only_problem(make_space(), config)
    assert "b.kind" in message and "inactive" in message

    nested = valid_b("y")
    nested["b.alpha"] = 0.3  # b.alpha only applies when b.kind == "x"
    message = only_problem(make_space(), nested)
    assert "b.alpha" in message and "inactive" in message


def test_problems_reports_unknown_parameters():
    config = valid_a()
    config["zzz"] = 1
    message = only_problem(make_space(), config)
    assert "zzz" in message and "not a parameter" in message


@pytest.mark.parametrize("name, value", [
    ("n", True),      # True == 1 in Python, but it is not the choice 1
    ("n", 1.0),
    ("flag", 1),      # 1 == True in Python, but it is not the choice True
    ("flag", 0),
    ("family", "c"),
])
def test_problems_compares_choice_types_not_just_equality(name, value):
    config = valid_a()
    config[name] = value
    found = make_space().problems(config)
    assert found, config
    assert name in found[0]


def test_problems_rejects_a_non_mapping():
    found = make_space().problems([("family", "a")])
    assert len(found) == 1 and "mapping" in found[0]


def test_active_drops_parameters_of_other_branches():
    space = make_space()
    config = {**valid_a(), "b.kind": "x", "b.alpha": 0.2}
    assert space.active(config) == valid_a()


# --- from_unit -----------------------------------------------------------------

def test_from_unit_maps_0_and_1_to_the_bounds():
    space = make_space()
    low = space.from_unit({name: 0.0 for name in space.names})
    high = space.from_unit({name: 1.0 for name in space.names})
    assert low == {"family": "a", "lr": pytest.approx(1e-4), "dropout": 0.0, "flag": True, "n": 1,
                   "a.depth": 1, "a.width": 8, "a.units": 1}
    assert high == {"family": "b", "lr": pytest.approx(1e-1), "dropout": 0.5, "flag": False, "n": 3,
                    "b.kind": "y"}
    # out-of-range units are clipped rather than leaving the space
    assert space["dropout"].from_unit(-3.0) == 0.0
    assert space["dropout"].from_unit(7.0) == 0.5
    assert space["a.depth"].from_unit(2.0) == 5


def test_from_unit_drops_inactive_params_and_defaults_missing_units_to_the_middle():
    space = make_space()
    config = space.from_unit({"family": 0.9, "b.kind": 0.1})
    assert config["family"] == "b" and config["b.kind"] == "x"
    assert "b.alpha" in config and not any(k.startswith("a.") for k in config)
    assert config["dropout"] == pytest.approx(0.25)
    assert config["b.alpha"] == pytest.approx(0.5)


# Regression: exp(log(low) + u * (log(high) - log(low))) can round one ulp outside [low, high]
# (e.g. 1e-6..1e-2 at u=1 gave 0.010000000000000014), which `problems()` then rejected.
@pytest.mark.parametrize("low, high", [(1e-4, 3e-2), (1e-6, 1e-2), (1e-4, 1e-1), (1e-5, 1e-1), (0.1, 10.0)])
def test_log_float_from_unit_bounds_stay_inside_the_space(low, high):
    """The endpoints of the unit cube must give configs that `problems()` accepts."""
    param = Float("x", low, high, log=True)
    space = SearchSpace((param,))
    for u in (0.0, 1.0):
        config = {"x": param.from_unit(u)}
        assert space.problems(config) == [], (u, config)
    assert param.from_unit(0.0) == pytest.approx(low)
    assert param.from_unit(1.0) == pytest.approx(high)


def test_to_unit_inverts_from_unit():
    space = make_space()
    rng = np.random.default_rng(5)
    for _ in range(50):
        config = space.sample(rng)
        units = {p.name: p.to_unit(config[p.name]) for p in space if p.name in config}
        assert all(0.0 <= u <= 1.0 for u in units.values())
        back = space.from_unit(units)
        assert set(back) == set(config)
        for name, value in config.items():
            if isinstance(value, float):
                assert back[name] == pytest.approx(value, rel=1e-9)
            else:
                assert back[name] == value


# --- with_override ---------------------------------------------------------------

def test_with_override_narrows_a_range_and_keeps_name_and_condition():
    space = make_space()
    narrowed = space.with_override("a.width", low=16, high=32)
    param = narrowed["a.width"]
    assert isinstance(param, Int)
    assert (param.low, param.high, param.step) == (16, 32, 8)
    assert param.condition == FAMILY_A
    assert narrowed.names == space.names  # order (and so parent-before-child) kept
    assert space["a.width"].low == 8  # the original is untouched
    rng = np.random.default_rng(6)
    for _ in range(100):
        config = narrowed.sample(rng)
        if config["family"] == "a":
            assert config["a.width"] in (16, 24, 32)


def test_with_override_only_low_or_high_keeps_the_other_bound():
    space = make_space()
    assert (space.with_override("lr", low=1e-3)["lr"].low, space.with_override("lr", low=1e-3)["lr"].high) == (1e-3, 1e-1)
    assert space.with_override("dropout", high=0.2)["dropout"].low == 0.0
    assert space.with_override("dropout", high=0.2)["dropout"].high == 0.2


def test_with_override_can_switch_log_scale():
    space = make_space()
    assert space.with_override("lr", low=1e-3, log=False)["lr"].log is False
    assert space.with_override("b.alpha", low=0.01, log=True)["b.alpha"].log is True


def test_with_override_choices_replace_the_domain_and_keep_the_condition():
    space = make_space()
    replaced = space.with_override("a.depth", choices=[2, 4])
    param = replaced["a.depth"]
    assert isinstance(param, Choice)
    assert param.choices == (2, 4)
    assert param.condition == FAMILY_A
    config = valid_a()
    config["a.depth"] = 3
    assert replaced.problems(config)
    config["a.depth"] = 4
    assert replaced.problems(config) == []
    only_b = space.with_override("b.kind", choices=["y"])
    assert only_b["b.kind"].choices == ("y",)


@pytest.mark.parametrize("name, kwargs", [
    ("lr", {"low": 1.0, "high": 1e-3}),     # low > high
    ("lr", {"low": 1.0}),                    # new low above the old high
    ("dropout", {"log": True}),              # log scale with low == 0
    ("a.width", {"log": True}),              # log int with step 8
    ("family", {"low": 0, "high": 1}),       # a choice needs choices
])
def test_with_override_rejects_bad_overrides(name, kwargs):
    with pytest.raises(ValueError):
        make_space().with_override(name, **kwargs)


def test_with_override_of_an_unknown_name_raises_key_error():
    with pytest.raises(KeyError):
        make_space().with_override("nope", low=1)


# --- serialisation and construction ----------------------------------------------------

def test_to_dict_from_dict_round_trip_through_json():
    space = make_space()
    data = json.loads(json.dumps(space.to_dict()))
    again = SearchSpace.from_dict(data)
    assert again == space
    assert again.to_dict() == space.to_dict()
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert [space.sample(rng_a) for _ in range(20)] == [again.sample(rng_b) for _ in range(20)]


def test_to_dict_describes_each_param():
    items = {item["name"]: item for item in make_space().to_dict()}
    assert items["a.width"] == {"name": "a.width", "type": "int", "low": 8, "high": 64, "log": False, "step": 8,
                                "condition": {"parent": "family", "values": ["a"]}}
    assert items["lr"] == {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True}
    assert items["flag"] == {"name": "flag", "type": "choice", "choices": [True, False]}


def test_from_dict_rejects_an_unknown_type():
    with pytest.raises(ValueError):
        SearchSpace.from_dict([{"name": "x", "type": "complex"}])


def test_duplicate_parameter_names_raise():
    with pytest.raises(ValueError, match="duplicate"):
        SearchSpace((Float("x", 0, 1), Int("x", 0, 3)))


def test_a_condition_on_a_later_or_unknown_parent_raises():
    with pytest.raises(ValueError, match="before"):
        SearchSpace((Int("child", 1, 3, condition=Condition("parent", ("a",))), Choice("parent", ("a", "b"))))
    with pytest.raises(ValueError):
        SearchSpace((Int("child", 1, 3, condition=Condition("ghost", ("a",))),))


def test_lookup_and_names():
    space = make_space()
    assert len(space) == 10
    assert space.names[0] == "family"
    assert space["lr"].name == "lr"
    with pytest.raises(KeyError):
        space["nope"]
