"""A plain convolutional network for images: conv blocks with pooling, then a small head."""
from __future__ import annotations

import math

from automl.families.base import Family, output_size
from automl.space import Choice, Float, Int


def max_blocks(profile) -> int:
    """Each block halves the spatial size; stop before it falls under 2 pixels."""
    smallest = min(profile.input_shape[1:])
    return max(1, min(4, int(math.log2(max(smallest, 2)))))


class CNNFamily(Family):
    name = "cnn"
    modalities = ("image",)

    def suits(self, profile):
        if profile.modality == "image":
            return True, f"convolutions exploit the spatial structure of {tuple(profile.input_shape)} images"
        return super().suits(profile)

    def space(self, profile):
        return [
            Int("blocks", 1, max_blocks(profile)),
            Int("channels", 16, 128, log=True),
            Choice("convs_per_block", (1, 2)),
            Choice("norm", ("none", "batch")),
            Choice("activation", ("relu", "gelu", "silu")),
            Float("dropout", 0.0, 0.5),
            Int("head_width", 32, 256, log=True),
        ]

    def build(self, config, profile):
        from torch import nn

        from automl.families.base import ACTIVATIONS  # built with torch on first use

        channels_in = profile.input_shape[0]
        activation = ACTIVATIONS[config["activation"]]
        layers: list[nn.Module] = []
        size = min(profile.input_shape[1:])
        channels = config["channels"]
        for block in range(config["blocks"]):
            width = channels * (2 ** block)  # widen as the maps shrink, the usual VGG/ResNet habit
            for _ in range(config["convs_per_block"]):
                layers.append(nn.Conv2d(channels_in, width, kernel_size=3, padding=1, bias=config["norm"] == "none"))
                if config["norm"] == "batch":
                    layers.append(nn.BatchNorm2d(width))
                layers.append(activation())
                channels_in = width
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if config["dropout"] > 0:
            layers.append(nn.Dropout(config["dropout"]))
        layers += [nn.Linear(channels_in, config["head_width"]), activation(),
                   nn.Linear(config["head_width"], output_size(profile))]
        return nn.Sequential(*layers)
