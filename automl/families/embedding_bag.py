"""Bag of embeddings for text: word order is ignored, which makes it the fastest text baseline."""
from __future__ import annotations

import torch
from torch import nn

from automl.families.base import Family, output_size
from automl.families.sequence_input import POOLS, InputStem, head
from automl.space import Choice, Condition, Float, Int


class EmbeddingBagNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        self.stem = InputStem(profile, config["embed_dim"])
        self.pool = POOLS[config["pooling"]]
        layers: list[nn.Module] = []
        width_in = self.stem.width
        for _ in range(config["depth"]):
            layers += [nn.Linear(width_in, config["width"]), nn.ReLU()]
            if config["dropout"] > 0:
                layers.append(nn.Dropout(config["dropout"]))
            width_in = config["width"]
        self.hidden = nn.Sequential(*layers)
        head_dropout = config["dropout"] if config["depth"] == 0 else 0.0  # hidden layers already end in dropout
        self.head = head(width_in, output_size(profile), head_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded, mask = self.stem(x)
        return self.head(self.hidden(self.pool(embedded, mask)))


class EmbeddingBagFamily(Family):
    name = "embedding_bag"
    modalities = ("text",)

    def suits(self, profile):
        if profile.modality == "text":
            return True, "averaged word embeddings are a fast, strong baseline for text"
        return super().suits(profile)

    def space(self, profile):
        return [
            Int("embed_dim", 16, 128, log=True),
            Choice("pooling", ("mean", "max")),
            Int("depth", 0, 2),
            Int("width", 32, 256, log=True, condition=Condition("depth", (1, 2))),  # no hidden layer, no width
            Float("dropout", 0.0, 0.5),
        ]

    def build(self, config, profile):
        return EmbeddingBagNet(config, profile)
