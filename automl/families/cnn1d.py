"""1-D convolutions over time steps or tokens, then a global pooling over the valid steps."""
from __future__ import annotations

import torch
from torch import nn

from automl.families.base import ACTIVATIONS, Family, output_size
from automl.families.sequence_input import POOLS, InputStem, embed_dim_param, head, sequence_length
from automl.space import Choice, Float, Int


class ConvBlock(nn.Module):
    """Conv1d ('same' length, so the step mask stays aligned) -> optional BN -> activation -> dropout."""

    def __init__(self, channels_in: int, channels: int, kernel_size: int, norm: str, activation: str,
                 dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(channels_in, channels, kernel_size, padding=kernel_size // 2,
                                             bias=norm == "none")]
        if norm == "batch":
            layers.append(nn.BatchNorm1d(channels))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CNN1dNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        self.stem = InputStem(profile, config.get("embed_dim"))
        channels_in, blocks = self.stem.width, []
        for _ in range(config["blocks"]):
            blocks.append(ConvBlock(channels_in, config["channels"], config["kernel_size"], config["norm"],
                                    config["activation"], config["dropout"]))
            channels_in = config["channels"]
        self.blocks = nn.Sequential(*blocks)
        self.pool = POOLS[config["pooling"]]
        self.head = head(channels_in, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mask = self.stem(x)
        # padded steps are zero embeddings, so they only blur the edges of the last real tokens
        features = self.blocks(features.transpose(1, 2)).transpose(1, 2)
        return self.head(self.pool(features, mask))


class CNN1dFamily(Family):
    name = "cnn1d"
    modalities = ("sequence", "text")

    def suits(self, profile):
        if profile.modality in self.modalities:
            return True, (f"1-D convolutions find local patterns in {sequence_length(profile)} steps "
                          f"at a cost linear in length")
        return super().suits(profile)

    def space(self, profile):
        return embed_dim_param(profile) + [
            Int("blocks", 1, 3),
            Int("channels", 16, 128, log=True),
            Choice("kernel_size", (3, 5, 7)),
            Choice("norm", ("batch", "none")),
            Choice("activation", ("relu", "gelu", "silu")),
            Float("dropout", 0.0, 0.5),
            Choice("pooling", ("max", "mean")),
        ]

    def build(self, config, profile):
        return CNN1dNet(config, profile)
