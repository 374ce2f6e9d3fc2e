"""The fully convolutional network for time series of Wang et al. (2017), "Time series
classification from scratch with deep neural networks: a strong baseline".

Three convolutions (kernels 8, 5, 3; widths w, 2w, w) with batch norm and ReLU, global
average pooling, then the output layer: no pooling between layers and no dense hidden layer,
so it has few parameters for its receptive field and holds up on a few hundred series.
"""
from __future__ import annotations

from automl.families.base import Family
from automl.families.sequence_input import sequence_length
from automl.space import Choice, Float


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
        from automl.families.networks import FCNNet

        return FCNNet(config, profile)
