"""A small pre-norm transformer encoder over time steps or tokens, mean-pooled over the valid steps."""
from __future__ import annotations

from automl.families.base import Family
from automl.families.sequence_input import sequence_length
from automl.space import Choice, Float, Int

MAX_LENGTH = 512


class TransformerFamily(Family):
    name = "transformer"
    modalities = ("sequence", "text")

    def suits(self, profile):
        if profile.modality not in self.modalities:
            return super().suits(profile)
        steps = sequence_length(profile)
        if steps > MAX_LENGTH:
            return False, f"attention is quadratic in length; {steps} steps is over the limit of {MAX_LENGTH}"
        return True, f"self-attention relates all {steps} steps at once (quadratic in length, fine up to {MAX_LENGTH})"

    def space(self, profile):
        return [
            Int("d_model", 32, 128, step=16),  # multiples of 16, so divisible by every head count
            Choice("heads", (2, 4)),
            Int("layers", 1, 3),
            Choice("ff_factor", (2, 4)),
            Float("dropout", 0.0, 0.3),
        ]

    def build(self, config, profile):
        from automl.families.networks import TransformerNet

        return TransformerNet(config, profile)
