"""The small-data time-series families (rocket, fcn) and the family choice on small sequence sets."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from automl.families.fcn import FCNFamily
from automl.families.rnn import RNNFamily
from automl.families.rocket import RocketFamily
from automl.families.transformer import TransformerFamily
from automl.planning import SMALL_SEQUENCE_SET, choose_families
from automl.plugins import discover
from automl.space import SearchSpace
from automl.spec import FamiliesSpec
from tests.families.test_new_families import profile

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]

FAMILIES = {f.name: f for f in (RocketFamily(), FCNFamily())}


@pytest.mark.parametrize("steps, channels, n_classes, out", [(16, 3, 2, 2), (5, 1, None, 1), (120, 2, 5, 5)],
                         ids=["binary", "regression-shorter-than-kernels", "multiclass-long"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_builds_runs_and_traces(name, steps, channels, n_classes, out):
    torch.manual_seed(0)
    family, prof = FAMILIES[name], profile("sequence", (steps, channels), n_classes)
    assert family.suits(prof)[0]
    space = SearchSpace(tuple(family.space(prof)))
    x = torch.randn(5, steps, channels)
    smallest = space.from_unit({p.name: 0.0 for p in space})  # the sizes take one code path: keep them cheap
    for dropout in (0.0, 0.5):
        config = {**smallest, "dropout": dropout}
        assert space.problems(config) == []
        model = family.build(config, prof)
        assert model.train()(x).shape == (5, out)
        model.eval()
        with torch.no_grad():
            eager = model(x)
            assert torch.isfinite(eager).all(), config
            traced = torch.jit.trace(model, x[:2])  # as the export does; other batch sizes later
            torch.testing.assert_close(traced(x), eager, rtol=1e-4, atol=1e-5)
            assert traced(x[:1]).shape == (1, out)


def test_rocket_kernels_are_fixed_saved_and_the_same_in_every_build():
    prof = profile("sequence", (40, 2))
    config = {"kernels": 500, "dropout": 0.0}
    first, second = RocketFamily().build(config, prof), RocketFamily().build(config, prof)
    x = torch.randn(8, 40, 2)
    # a refit or an export rebuilds the configuration: it must see the features the search saw
    torch.testing.assert_close(first.kernels(x), second.kernels(x))
    trainable = {name for name, p in first.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("head.") for name in trainable)
    assert any(name.startswith("kernels.weight_") for name in first.state_dict())  # exported with the model
    assert first.kernels.features >= 2 * 500  # a PPV and a max per kernel


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_learns_a_shape_that_a_mean_does_not_show(name):
    """Noisy sine waves of random phase; the class is the frequency, and every series has mean about 0."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    steps, n = 60, 64
    y = torch.arange(n) % 2
    phase = torch.rand(n, 1, generator=generator) * 6.3
    frequency = torch.where(y == 1, 0.8, 0.2)[:, None]
    x = (torch.sin(torch.arange(steps)[None] * frequency + phase)
         + torch.randn(n, steps, generator=generator) * 0.3).unsqueeze(-1)
    family, prof = FAMILIES[name], profile("sequence", (steps, 1))
    config = SearchSpace(tuple(family.space(prof))).from_unit({"kernels": 0.0, "channels": 0.0, "dropout": 0.0})
    model = family.build(config, prof).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert (model.eval()(x).argmax(1) == y).float().mean() >= 0.95


def test_the_families_are_installed_entry_points():
    names = discover().names("families")
    assert {"rocket", "fcn"} <= set(names)


SEQUENCE_FAMILIES = {f.name: f for f in (RocketFamily(), FCNFamily(), RNNFamily(), TransformerFamily())}


def test_small_sequence_sets_leave_out_recurrent_and_attention_nets_with_a_reason():
    small = profile("sequence", (150, 1))  # 200 training series
    choices = {c.family: c for c in choose_families(small, SEQUENCE_FAMILIES, FamiliesSpec())}
    assert [n for n, c in choices.items() if c.chosen] == ["fcn", "rocket"]
    assert "200 training series" in choices["rnn"].reason and "too few" in choices["transformer"].reason

    large = replace(small, n_train=SMALL_SEQUENCE_SET + 1)
    assert all(c.chosen for c in choose_families(large, SEQUENCE_FAMILIES, FamiliesSpec()))
    # a spec that names them gets them, however few the series
    asked = choose_families(small, SEQUENCE_FAMILIES, FamiliesSpec(include=("rnn", "rocket")))
    assert sorted(c.family for c in asked if c.chosen) == ["rnn", "rocket"]
