"""Random convolution kernels (ROCKET, Dempster et al. 2020) and a trained linear head.

The kernels are drawn once from a fixed seed and never trained: lengths 7, 9 and 11,
mean-centred normal weights over all channels, uniform biases in [-1, 1] (the inputs are
standardised per channel), dilations spread exponentially up to the series length, and
'same' padding on half of the kernels. Each kernel gives two features: the proportion of
positive values (PPV) and the maximum of its output. Only a normalisation and a linear layer
learn, so a few dozen series are enough, where end-to-end nets overfit them.
Kernels sharing a length and dilation run as one convolution; the unpadded ones read the
padded output without its edges, which is the same numbers.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from automl.families.base import Family, output_size
from automl.families.sequence_input import head, sequence_length
from automl.space import Choice, Float

LENGTHS = (7, 9, 11)
SEED = 0  # fixed: every trial, refit and export of a configuration gets the same kernels
MAX_STEPS = 5000


def dilations(steps: int, length: int, count: int = 8) -> list[int]:
    """Up to `count` distinct dilations, exponentially spaced, whose kernel still fits in `steps`."""
    top = math.log2(max((steps - 1) / (length - 1), 1.0))
    return sorted({int(2 ** (top * i / max(count - 1, 1))) for i in range(count)})


class RandomKernels(nn.Module):
    """(n, length, channels) -> (n, 2 * kernels) PPV and max features of fixed random kernels."""

    def __init__(self, steps: int, channels: int, kernels: int):
        super().__init__()
        generator = torch.Generator().manual_seed(SEED)
        groups = [(length, dilation) for length in LENGTHS for dilation in dilations(steps, length)]
        per_group = max(2, math.ceil(kernels / len(groups)))
        # (dilation, padding, kernels kept padded) of weight_i / bias_i: the first half of each group,
        # or all of it when the series is shorter than the kernel's span and nothing unpadded is left
        self.groups: list[tuple[int, int, int]] = []
        for i, (length, dilation) in enumerate(groups):
            weight = torch.randn(per_group, channels, length, generator=generator)
            weight -= weight.mean(dim=(1, 2), keepdim=True)
            bias = torch.rand(per_group, generator=generator) * 2 - 1
            self.register_buffer(f"weight_{i}", weight)  # buffers: saved and traced, never trained
            self.register_buffer(f"bias_{i}", bias)
            span = (length - 1) * dilation  # even: the lengths are odd, so 'same' padding is span / 2
            self.groups.append((dilation, span // 2, per_group // 2 if steps > span else per_group))
        self.per_group, self.features = per_group, 2 * per_group * len(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        steps = x.shape[2]
        features = []
        for i, (dilation, padding, kept) in enumerate(self.groups):
            out = nn.functional.conv1d(x, getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}"),
                                       padding=padding, dilation=dilation)
            parts = [out[:, :kept]] + ([out[:, kept:, padding:steps - padding]] if kept < self.per_group else [])
            for part in parts:
                features += [(part > 0).to(x.dtype).mean(2), part.amax(2)]
        return torch.cat(features, 1)


class RocketNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        steps, channels = profile.input_shape
        self.kernels = RandomKernels(steps, channels, config["kernels"])
        # PPV lies in [0, 1] and max is unbounded: standardise both so one learning rate fits
        self.norm = nn.BatchNorm1d(self.kernels.features, affine=False)
        self.head = head(self.kernels.features, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.kernels(x)))


class RocketFamily(Family):
    name = "rocket"
    modalities = ("sequence",)

    def suits(self, profile):
        if profile.modality != "sequence":
            return super().suits(profile)
        steps = sequence_length(profile)
        if steps > MAX_STEPS:
            return False, f"every kernel reads every step each epoch; too slow for {steps} steps (limit {MAX_STEPS})"
        return True, ("fixed random convolution kernels with a linear head learn from few series, since only "
                      "the head is trained")

    def space(self, profile):
        return [
            Choice("kernels", (500, 1000, 2000)),
            Float("dropout", 0.0, 0.5),
        ]

    def build(self, config, profile):
        return RocketNet(config, profile)
