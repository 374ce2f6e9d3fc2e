"""Multi-layer perceptron for tables (and flattened small images)."""
from __future__ import annotations

import math

from automl.families.base import Family, output_size
from automl.space import Choice, Float, Int


class MLPFamily(Family):
    name = "mlp"
    modalities = ("tabular", "image")

    def suits(self, profile):
        if profile.modality == "tabular":
            return True, "the standard strong baseline for tabular data"
        if profile.modality == "image":
            pixels = math.prod(profile.input_shape)
            if pixels <= 4096:
                return True, f"images are small ({pixels} values each), so a flat MLP is a cheap competitor"
            return False, f"images are too large ({pixels} values each) for a flat MLP"
        return super().suits(profile)

    def space(self, profile):
        return [
            Int("depth", 1, 4),
            Int("width", 32, 512, log=True),
            Float("dropout", 0.0, 0.5),
            Choice("norm", ("none", "batch", "layer")),
            Choice("activation", ("relu", "gelu", "silu")),
        ]

    def build(self, config, profile):
        from torch import nn

        from automl.families.base import ACTIVATIONS  # built with torch on first use

        layers: list[nn.Module] = [nn.Flatten()]
        width_in = math.prod(profile.input_shape)
        for _ in range(config["depth"]):
            layers.append(nn.Linear(width_in, config["width"]))
            if config["norm"] == "batch":
                layers.append(nn.BatchNorm1d(config["width"]))
            elif config["norm"] == "layer":
                layers.append(nn.LayerNorm(config["width"]))
            layers.append(ACTIVATIONS[config["activation"]]())
            if config["dropout"] > 0:
                layers.append(nn.Dropout(config["dropout"]))
            width_in = config["width"]
        layers.append(nn.Linear(width_in, output_size(profile)))
        return nn.Sequential(*layers)
