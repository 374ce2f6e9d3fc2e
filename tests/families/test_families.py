"""Model families and planning: spaces build working modules; family choice and the search space."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from automl.data.base import Profile
from automl.errors import SpecError
from automl.families.base import Family
from automl.families.cnn import CNNFamily, max_blocks
from automl.families.mlp import MLPFamily
from automl.planning import build_space, choose_families, training_params
from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.spec import FamiliesSpec, RangeOverride
from automl.training.trainer import family_params

FAMILIES = {"mlp": MLPFamily(), "cnn": CNNFamily()}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def profile(modality: str, task: str, input_shape: tuple[int, ...], n_classes: int | None = None,
            n_train: int = 600) -> Profile:
    return Profile(source="test", modality=modality, task=task, target="y", n_samples=n_train + 200,
                   n_train=n_train, n_val=100, n_test=100, input_shape=input_shape,
                   n_features=int(np.prod(input_shape)), n_classes=n_classes)


IMAGE = profile("image", "classification", (1, 8, 8), n_classes=10)
TABULAR = profile("tabular", "regression", (5,))


def configs_of(space: SearchSpace, n: int, seed: int = 0) -> list[dict]:
    """n random configs plus the two corners of the unit cube (smallest and largest everything)."""
    rng = np.random.default_rng(seed)
    corners = [space.from_unit({p.name: u for p in space}) for u in (0.0, 1.0)]
    return corners + [space.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("family_name, prof, out", [
    ("mlp", IMAGE, 10),
    ("cnn", IMAGE, 10),
    ("mlp", TABULAR, 1),
])
def test_every_sampled_config_builds_a_module_with_the_right_output_shape(family_name, prof, out):
    torch.manual_seed(0)
    family = FAMILIES[family_name]
    params = family.space(prof)
    assert all("." not in p.name for p in params)  # families use plain names; the planner prefixes them
    space = SearchSpace(tuple(params))
    batch = torch.randn(4, *prof.input_shape)
    for config in configs_of(space, 12):
        assert space.problems(config) == []
        model = family.build(config, prof)
        assert isinstance(model, nn.Module)
        model.train()
        assert model(batch).shape == (4, out), config
        model.eval()
        with torch.no_grad():
            y = model(batch[:1])  # a single sample works in eval mode (batch norm uses running stats)
        assert y.shape == (1, out)
        assert torch.isfinite(y).all()


def test_build_follows_the_config():
    mlp = MLPFamily().build({"depth": 3, "width": 40, "dropout": 0.0, "norm": "layer", "activation": "gelu"}, TABULAR)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 40), (40, 40), (40, 40), (40, 1)]
    assert sum(isinstance(m, nn.LayerNorm) for m in mlp.modules()) == 3
    assert not any(isinstance(m, nn.Dropout) for m in mlp.modules())
    assert any(isinstance(m, nn.GELU) for m in mlp.modules())

    cnn = CNNFamily().build({"blocks": 2, "channels": 16, "convs_per_block": 2, "norm": "batch",
                             "activation": "relu", "dropout": 0.25, "head_width": 32}, IMAGE)
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(1, 16), (16, 16), (16, 32), (32, 32)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn.modules()) == 4
    assert any(isinstance(m, nn.Dropout) and m.p == 0.25 for m in cnn.modules())


def feature_map_sizes(model: nn.Module, x: torch.Tensor) -> list[int]:
    """Spatial size after each max-pool."""
    sizes = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: sizes.append(out.shape[-1]))
             for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    with torch.no_grad():
        model.eval()(x)
    for hook in hooks:
        hook.remove()
    return sizes


def test_cnn_blocks_never_exceed_what_an_8x8_image_allows():
    family = CNNFamily()
    blocks = SearchSpace(tuple(family.space(IMAGE)))["blocks"]
    assert isinstance(blocks, Int)
    assert 1 <= blocks.low <= blocks.high <= 3  # 8 -> 4 -> 2 -> 1: three halvings at most
    config = {"blocks": blocks.high, "channels": 16, "convs_per_block": 1, "norm": "none",
              "activation": "relu", "dropout": 0.0, "head_width": 32}
    sizes = feature_map_sizes(family.build(config, IMAGE), torch.randn(2, 1, 8, 8))
    assert sizes and all(size >= 1 for size in sizes)
    assert len(sizes) == blocks.high


@pytest.mark.parametrize("shape, most", [((3, 2, 2), 1), ((1, 4, 4), 2), ((1, 8, 8), 3), ((3, 7, 9), 2),
                                         ((3, 32, 32), 4), ((1, 1, 1), 1)])
def test_cnn_depth_fits_every_image_size(shape, most):
    prof = profile("image", "classification", shape, n_classes=3)
    assert max_blocks(prof) <= most
    family = CNNFamily()
    space = SearchSpace(tuple(family.space(prof)))
    config = space.from_unit({p.name: 0.0 for p in space})
    config["blocks"] = space["blocks"].high
    model = family.build(config, prof)
    assert model(torch.randn(2, *shape)).shape == (2, 3)


@pytest.mark.parametrize("modality, shape, mlp_ok, cnn_ok", [
    ("tabular", (5,), True, False),
    ("image", (1, 8, 8), True, True),
    ("image", (3, 64, 64), False, True),   # 12288 values: too large for a flat MLP
    ("sequence", (20, 4), False, False),
])
def test_suits_answers_with_a_reason_per_modality(modality, shape, mlp_ok, cnn_ok):
    prof = profile(modality, "classification", shape, n_classes=2)
    for family, expected in ((MLPFamily(), mlp_ok), (CNNFamily(), cnn_ok)):
        ok, reason = family.suits(prof)
        assert ok is expected, (family.name, reason)
        assert isinstance(reason, str) and reason.strip()
    if modality == "image" and not mlp_ok:
        assert "12288" in MLPFamily().suits(prof)[1]
    if modality == "tabular":
        assert "tabular" in CNNFamily().suits(prof)[1]


# --- planning: which families ------------------------------------------------------------------------

def chosen(choices) -> list[str]:
    return [c.family for c in choices if c.chosen]


def test_choose_families_takes_every_family_that_suits_by_default():
    image = choose_families(IMAGE, FAMILIES, FamiliesSpec())
    assert [c.family for c in image] == ["cnn", "mlp"]  # every known family, with a decision
    assert chosen(image) == ["cnn", "mlp"]
    assert all(c.reason for c in image)
    tabular = choose_families(TABULAR, FAMILIES, FamiliesSpec())
    assert chosen(tabular) == ["mlp"]
    cnn = next(c for c in tabular if c.family == "cnn")
    assert not cnn.chosen and "tabular" in cnn.reason
    assert cnn.to_dict() == {"family": "cnn", "chosen": False, "reason": cnn.reason}


def test_choose_families_honours_include_and_exclude():
    included = choose_families(IMAGE, FAMILIES, FamiliesSpec(include=("cnn",)))
    assert chosen(included) == ["cnn"]
    mlp = next(c for c in included if c.family == "mlp")
    assert "include" in mlp.reason

    excluded = choose_families(IMAGE, FAMILIES, FamiliesSpec(exclude=("cnn",)))
    assert chosen(excluded) == ["mlp"]
    assert "excluded" in next(c for c in excluded if c.family == "cnn").reason


@pytest.mark.parametrize("spec", [FamiliesSpec(include=("transformer",)), FamiliesSpec(exclude=("mlp", "xgb"))])
def test_choose_families_rejects_unknown_names(spec):
    with pytest.raises(SpecError) as info:
        choose_families(IMAGE, FAMILIES, spec)
    [(path, message)] = info.value.problems
    assert path == "families"
    unknown = (spec.include or ()) + spec.exclude
    assert any(name in message for name in unknown if name not in FAMILIES)
    assert "cnn" in message and "mlp" in message  # lists the known ones


@pytest.mark.parametrize("prof, spec", [
    (TABULAR, FamiliesSpec(include=("cnn",))),          # asked only for a family that does not fit
    (TABULAR, FamiliesSpec(exclude=("mlp",))),
    (IMAGE, FamiliesSpec(exclude=("mlp", "cnn"))),
])
def test_choose_families_raises_when_nothing_is_left(prof, spec):
    with pytest.raises(SpecError) as info:
        choose_families(prof, FAMILIES, spec)
    [(path, message)] = info.value.problems
    assert path == "families"
    assert "no model family" in message
    assert "cnn" in message and "mlp" in message  # says why each one was left out


# --- planning: the search space -------------------------------------------------------------------------

def test_build_space_prefixes_family_params_and_conditions_them_on_the_family():
    space = build_space(IMAGE, FAMILIES, ["cnn", "mlp"], FamiliesSpec())
    assert space["family"] == Choice("family", ("cnn", "mlp"))
    for name in ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "lr_schedule"):
        assert name in space.names
    assert space["momentum"].condition == Condition("optimizer", ("sgd",))
    for family in ("mlp", "cnn"):
        own = [p.name for p in FAMILIES[family].space(IMAGE)]
        for name in own:
            param = space[f"{family}.{name}"]
            assert param.condition == Condition("family", (family,))

    for u in (0.0, 1.0):  # the corners of the unit cube (what model-based strategies propose) are valid too
        assert space.problems(space.from_unit({p.name: u for p in space})) == []

    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        config = space.sample(rng)
        assert space.problems(config) == []
        family = config["family"]
        seen.add(family)
        other = "mlp" if family == "cnn" else "cnn"
        assert any(k.startswith(f"{family}.") for k in config)
        assert not any(k.startswith(f"{other}.") for k in config)
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
        name, params = family_params(config)
        assert name == family and set(params) == {p.name for p in FAMILIES[family].space(IMAGE)}
    assert seen == {"cnn", "mlp"}


def test_build_space_only_includes_chosen_families():
    space = build_space(IMAGE, FAMILIES, ["mlp"], FamiliesSpec())
    assert space["family"].choices == ("mlp",)
    assert not any(n.startswith("cnn.") for n in space.names)


def test_build_space_offers_only_batch_sizes_the_training_set_can_fill():
    small = profile("tabular", "regression", (5,), n_train=100)
    space = build_space(small, FAMILIES, ["mlp"], FamiliesSpec())
    assert space["batch_size"].choices == (32, 64)
    tiny = profile("tabular", "regression", (5,), n_train=10)
    assert build_space(tiny, FAMILIES, ["mlp"], FamiliesSpec())["batch_size"].choices == (32,)
    assert [p.name for p in training_params(TABULAR)][0] == "optimizer"


class Gated(Family):
    """A family with a conditional parameter of its own."""

    name = "gated"
    modalities = ("tabular",)

    def space(self, profile):
        return [Choice("kind", ("a", "b")), Float("alpha", 0.0, 1.0, condition=Condition("kind", ("a",)))]

    def build(self, config, profile):
        return nn.Linear(profile.input_shape[0], 1)


def test_build_space_keeps_a_family_s_own_conditions_under_the_prefix():
    families = {**FAMILIES, "gated": Gated()}
    space = build_space(TABULAR, families, ["gated", "mlp"], FamiliesSpec())
    assert space["gated.kind"].condition == Condition("family", ("gated",))
    assert space["gated.alpha"].condition == Condition("gated.kind", ("a",))
    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(200):
        config = space.sample(rng)
        assert space.problems(config) == []
        if config["family"] == "gated":
            kinds.add(config["gated.kind"])
            assert ("gated.alpha" in config) == (config["gated.kind"] == "a")
        else:
            assert "gated.kind" not in config and "gated.alpha" not in config
    assert kinds == {"a", "b"}


def test_build_space_applies_overrides():
    spec = FamiliesSpec(overrides={
        "lr": RangeOverride(low=1e-3, high=1e-2),
        "mlp.width": RangeOverride(low=16, high=32),
        "mlp.norm": RangeOverride(choices=("none",)),
        "batch_size": RangeOverride(choices=(32,)),
    })
    space = build_space(TABULAR, FAMILIES, ["mlp"], spec)
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (1e-3, 1e-2, True)
    width = space["mlp.width"]
    assert isinstance(width, Int) and (width.low, width.high) == (16, 32)
    assert width.condition == Condition("family", ("mlp",))
    assert space["mlp.norm"].choices == ("none",)
    assert space["mlp.norm"].condition == Condition("family", ("mlp",))
    rng = np.random.default_rng(2)
    for _ in range(50):
        config = space.sample(rng)
        assert 1e-3 <= config["lr"] <= 1e-2
        assert 16 <= config["mlp.width"] <= 32 and type(config["mlp.width"]) is int
        assert config["mlp.norm"] == "none" and config["batch_size"] == 32


def test_build_space_reports_unknown_override_names_with_their_json_path():
    spec = FamiliesSpec(overrides={"mlp.nope": RangeOverride(low=1), "cnn.blocks": RangeOverride(high=2),
                                   "lr": RangeOverride(low=1e-3)})
    with pytest.raises(SpecError) as info:
        build_space(TABULAR, FAMILIES, ["mlp"], spec)  # cnn is not chosen, so cnn.blocks is unknown too
    problems = dict(info.value.problems)
    assert set(problems) == {"families.overrides.mlp.nope", "families.overrides.cnn.blocks"}
    assert "'mlp.nope'" in problems["families.overrides.mlp.nope"]
    assert "mlp.width" in problems["families.overrides.mlp.nope"]  # lists the known names
    assert "families.overrides.mlp.nope" in str(info.value)


def test_build_space_reports_invalid_overrides_with_their_json_path():
    spec = FamiliesSpec(overrides={
        "optimizer": RangeOverride(low=0, high=1),        # a choice needs choices
        "mlp.dropout": RangeOverride(low=0.0, log=True),  # log scale with low 0
        "lr": RangeOverride(low=0.5),                     # above the current high
    })
    with pytest.raises(SpecError) as info:
        build_space(TABULAR, FAMILIES, ["mlp"], spec)
    assert {path for path, _ in info.value.problems} == {
        "families.overrides.optimizer", "families.overrides.mlp.dropout", "families.overrides.lr"}
