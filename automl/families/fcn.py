"""The fully convolutional network for time series of Wang et al. (2017), "Time series
classification from scratch with deep neural networks: a strong baseline".

Three convolutions (kernels 8, 5, 3; widths w, 2w, w) with batch norm and ReLU, global
average pooling, then the output layer: no pooling between layers and no dense hidden layer,
so it has few parameters for its receptive field and holds up on a few hundred series.
"""
from __future__ import annotations

import torch
from torch import nn

from automl.families.base import Family, output_size
from automl.families.sequence_input import head, sequence_length
from automl.space import Choice, Float

KERNELS = (8, 5, 3)


def conv_bn_relu(channels_in: int, channels: int, kernel_size: int) -> nn.Sequential:
    # 'same' padding keeps every step, as in the paper (explicit: Conv1d's "same" copies the input for even
    # kernels, with a warning); the bias would only shift the batch norm
    return nn.Sequential(nn.ConstantPad1d(((kernel_size - 1) // 2, kernel_size // 2), 0.0),
                         nn.Conv1d(channels_in, channels, kernel_size, bias=False),
                         nn.BatchNorm1d(channels), nn.ReLU())


class FCNNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        width = config["channels"]
        widths = (width, 2 * width, width)
        channels_in, layers = profile.input_shape[1], []
        for channels, kernel_size in zip(widths, KERNELS):
            layers.append(conv_bn_relu(channels_in, channels, kernel_size))
            channels_in = channels
        self.layers = nn.Sequential(*layers)
        self.head = head(channels_in, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x.transpose(1, 2)).mean(2))


class FCNFamily(Family):
    name = "fcn"
    modalities = ("sequence",)

    def suits(self, profile):
        if profile.modality == "sequence":
            return True, (f"a fully convolutional net with global pooling, a strong baseline on small sets of "
                          f"series, at a cost linear in the {sequence_length(profile)} steps")
        return super().suits(profile)

    def space(self, profile):
        return [
            Choice("channels", (32, 64, 128)),  # the paper's 128 costs seconds an epoch on a CPU for long series
            Float("dropout", 0.0, 0.5),
        ]

    def build(self, config, profile):
        return FCNNet(config, profile)
