"""1-D convolutions over time steps or tokens, then a global pooling over the valid steps."""
from __future__ import annotations

from automl.families.base import Family
from automl.families.sequence_input import embed_dim_param, sequence_length
from automl.space import Choice, Float, Int


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
        from automl.families.networks import CNN1dNet

        return CNN1dNet(config, profile)
