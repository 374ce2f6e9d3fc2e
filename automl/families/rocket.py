"""Random convolution kernels (ROCKET, Dempster et al. 2020) and a trained linear head.

The kernels are drawn once from a fixed seed and never trained: lengths 7, 9 and 11,
mean-centred normal weights over all channels, uniform biases in [-1, 1] (the inputs are
standardised per channel), dilations spread exponentially up to the series length, and
'same' padding on half of the kernels. Each kernel gives two features: the proportion of
positive values (PPV) and the maximum of its output. Only a normalisation and a linear layer
learn, so a few dozen series are enough, where end-to-end nets overfit them.
Kernels sharing a length and dilation run as one convolution; the unpadded ones read the
padded output without its edges, which is the same numbers. The modules are in networks.py.
"""
from __future__ import annotations

from automl.families.base import Family
from automl.families.sequence_input import sequence_length
from automl.space import Choice, Float

MAX_STEPS = 5000


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
        from automl.families.networks import RocketNet

        return RocketNet(config, profile)
