"""The residual, sequence and text families: spaces, shapes, tracing, training and suits()."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from automl.data.base import Profile
from automl.families.cnn1d import CNN1dFamily
from automl.families.embedding_bag import EmbeddingBagFamily
from automl.families.resmlp import ResMLPFamily
from automl.families.resnet import ResNetFamily, max_stages
from automl.families.rnn import RNNFamily
from automl.families.transformer import TransformerFamily
from automl.plugins import discover
from automl.space import SearchSpace

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]

FAMILIES = {f.name: f for f in (ResMLPFamily(), ResNetFamily(), CNN1dFamily(), RNNFamily(),
                                TransformerFamily(), EmbeddingBagFamily())}
VOCAB = 30


def profile(modality: str, input_shape: tuple[int, ...], n_classes: int | None = 2) -> Profile:
    return Profile(source="test", modality=modality, task="classification" if n_classes else "regression",
                   target="y", n_samples=300, n_train=200, n_val=50, n_test=50, input_shape=input_shape,
                   n_features=int(np.prod(input_shape)), n_classes=n_classes,
                   vocab_size=VOCAB if modality == "text" else None)


SHAPES = {"tabular": (6,), "image": (3, 8, 8), "sequence": (16, 3), "text": (12,)}
CASES = [(name, modality) for name, family in FAMILIES.items() for modality in family.modalities]


def batch(modality: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """Inputs as the data layer delivers them; text rows get different amounts of padding, one is empty."""
    shape = SHAPES[modality]
    if modality != "text":
        return torch.rand(n, *shape, generator=generator) * (1 if modality == "image" else 2) - (
            0 if modality == "image" else 1)
    tokens = torch.randint(1, VOCAB, (n, *shape), generator=generator)
    for row, length in enumerate(torch.linspace(shape[0], 0, n).long()):
        tokens[row, length:] = 0
    return tokens


def configs(space: SearchSpace, n_random: int) -> list[dict]:
    """The two corners of the unit cube (smallest and largest everything) plus a few random configs."""
    rng = np.random.default_rng(0)
    return [space.from_unit({p.name: u for p in space}) for u in (0.0, 1.0)] + \
        [space.sample(rng) for _ in range(n_random)]


@pytest.mark.parametrize("n_classes, out", [(2, 2), (7, 7), (None, 1)], ids=["binary", "multiclass", "regression"])
@pytest.mark.parametrize("name, modality", CASES)
def test_builds_runs_and_traces_for_every_task(name, modality, n_classes, out):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    family, prof = FAMILIES[name], profile(modality, SHAPES[modality], n_classes)
    params = family.space(prof)
    assert params and all("." not in p.name for p in params)
    space = SearchSpace(tuple(params))
    x = batch(modality, 5, generator)
    for config in configs(space, 1):
        assert space.problems(config) == []
        model = family.build(config, prof)
        assert model.train()(x).shape == (5, out), config
        model.eval()
        with torch.no_grad():
            assert model(x[:1]).shape == (1, out)  # a single row works in eval mode (batch norm's running stats)
            eager = model(x)
            traced = torch.jit.trace(model, x[:2])  # as the export does: two example rows, other sizes later
            assert torch.isfinite(eager).all(), config  # the empty text row included
            torch.testing.assert_close(traced(x), eager, rtol=1e-4, atol=1e-5)
            assert traced(x[:1]).shape == (1, out)


def synthetic_task(modality: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """64 rows whose class a tiny model can learn: an above-median mean value, or whether token 2 occurs."""
    x = batch(modality, 64, generator)
    if modality == "text":
        return x, (x == 2).any(1).long()
    score = x.flatten(1).mean(1)
    return x, (score > score.median()).long()


@pytest.mark.parametrize("name, modality", CASES)
def test_a_few_steps_lower_the_training_loss(name, modality):
    torch.manual_seed(0)
    family, prof = FAMILIES[name], profile(modality, SHAPES[modality], 2)
    space = SearchSpace(tuple(family.space(prof)))
    config = space.from_unit({p.name: 0.3 for p in space})  # small, cheap settings
    config.update({k: 0.0 for k in config if "dropout" in k})
    model = family.build(config, prof).train()
    x, y = synthetic_task(modality, torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], (config, losses)


def test_rnn_final_state_is_the_last_real_token_not_the_padding():
    torch.manual_seed(0)
    prof = profile("text", (12,))
    config = {"embed_dim": 16, "cell": "lstm", "hidden": 32, "layers": 2, "bidirectional": True,
              "dropout": 0.0, "pooling": "last"}
    model = RNNFamily().build(config, prof).eval()
    tokens = torch.tensor([[5, 6, 7] + [0] * 9])
    with torch.no_grad():  # the same words without their padding give the same output
        torch.testing.assert_close(model(tokens), model(tokens[:, :3]))
        mean_model = RNNFamily().build({**config, "pooling": "mean"}, prof).eval()
        torch.testing.assert_close(mean_model(tokens), mean_model(tokens[:, :3]))


def test_embedding_bag_width_only_exists_with_hidden_layers():
    space = SearchSpace(tuple(EmbeddingBagFamily().space(profile("text", (12,)))))
    rng = np.random.default_rng(0)
    for _ in range(50):
        config = space.sample(rng)
        assert ("width" in config) == (config["depth"] > 0)


@pytest.mark.parametrize("side, most", [(8, 3), (9, 4), (16, 4), (64, 4)])  # 9 -> 5 -> 3 -> 2
def test_resnet_stages_stop_before_maps_fall_under_two_pixels(side, most):
    prof = profile("image", (1, side, side))
    assert max_stages(prof) == most
    config = {"stages": most, "blocks_per_stage": 1, "channels": 16, "dropout": 0.0}
    model = ResNetFamily().build(config, prof).eval()
    sizes = []
    for module in model:
        if isinstance(module, nn.AdaptiveAvgPool2d):
            module.register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].shape[-1]))
    with torch.no_grad():
        model(torch.rand(1, 1, side, side))
    assert sizes and sizes[0] >= 2


SUITS = [  # family, modality, input shape, suits, words the reason must contain
    ("resmlp", "tabular", (6,), True, "tabular"),
    ("resmlp", "image", (3, 8, 8), False, "image"),
    ("resnet", "image", (3, 32, 32), True, "32"),
    ("resnet", "image", (1, 7, 9), False, "7 px"),
    ("resnet", "tabular", (6,), False, "tabular"),
    ("cnn1d", "sequence", (500, 2), True, "500"),
    ("cnn1d", "text", (5000,), True, "5000"),
    ("cnn1d", "image", (3, 8, 8), False, "image"),
    ("rnn", "sequence", (1000, 2), True, "1000 steps"),
    ("rnn", "text", (1001,), False, "too slow for 1001 steps"),
    ("rnn", "tabular", (6,), False, "tabular"),
    ("transformer", "text", (512,), True, "512"),
    ("transformer", "sequence", (513, 2), False, "quadratic in length"),
    ("transformer", "image", (3, 8, 8), False, "image"),
    ("embedding_bag", "text", (40,), True, "text"),
    ("embedding_bag", "sequence", (40, 2), False, "sequence"),
]


@pytest.mark.parametrize("name, modality, shape, expected, words", SUITS)
def test_suits_answers_with_one_clear_sentence(name, modality, shape, expected, words):
    ok, reason = FAMILIES[name].suits(profile(modality, shape))
    assert ok is expected, reason
    assert words in reason and "\n" not in reason


def test_every_family_is_registered_as_a_plugin():
    registry = discover(())
    assert set(FAMILIES) | {"mlp", "cnn"} <= set(registry.names("families"))
    for name, family in FAMILIES.items():
        assert type(registry.family(name)) is type(family)
