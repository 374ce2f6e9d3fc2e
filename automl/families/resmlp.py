"""ResNet-style MLP for tables (Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data").

Linear(in, d) -> blocks of x + Dropout(Linear(Dropout(ReLU(Linear(Norm(x)))))) -> Norm -> ReLU -> Linear(out).
The residual path keeps deeper stacks trainable where a plain MLP of the same depth stalls.
"""
from __future__ import annotations

import math

from automl.families.base import Family, output_size
from automl.space import Choice, Float, Int


class ResMLPFamily(Family):
    name = "resmlp"
    modalities = ("tabular",)

    def suits(self, profile):
        if profile.modality == "tabular":
            return True, "residual MLP blocks are a strong deep baseline for tabular data"
        return super().suits(profile)

    def space(self, profile):
        return [
            Int("blocks", 1, 4),
            Int("width", 32, 256, log=True),
            Int("hidden_factor", 1, 4),
            Float("hidden_dropout", 0.0, 0.5),
            Float("residual_dropout", 0.0, 0.3),
            Choice("norm", ("batch", "layer")),
        ]

    def build(self, config, profile):
        from torch import nn

        from automl.families.networks import NORMS, ResidualBlock

        width = config["width"]
        blocks = [ResidualBlock(width, width * config["hidden_factor"], config["norm"],
                                config["hidden_dropout"], config["residual_dropout"])
                  for _ in range(config["blocks"])]
        return nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(profile.input_shape), width), *blocks,
            NORMS[config["norm"]](width), nn.ReLU(), nn.Linear(width, output_size(profile)))
