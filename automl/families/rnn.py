"""Recurrent nets (GRU or LSTM) over time steps or tokens.

Text rows are packed to their real length, so padding never enters the recurrence:
the final hidden state is the last real token going forward (and the whole text going
backward), and the mean covers the real steps only.
"""
from __future__ import annotations

from automl.families.base import Family
from automl.families.sequence_input import embed_dim_param, sequence_length
from automl.space import Choice, Float, Int

MAX_STEPS = 1000


class RNNFamily(Family):
    name = "rnn"
    modalities = ("sequence", "text")

    def suits(self, profile):
        if profile.modality not in self.modalities:
            return super().suits(profile)
        steps = sequence_length(profile)
        if steps > MAX_STEPS:
            return False, f"recurrent steps run one after another; too slow for {steps} steps (limit {MAX_STEPS})"
        return True, f"a recurrent net reads the {steps} steps in order, affordable up to {MAX_STEPS} steps"

    def space(self, profile):
        return embed_dim_param(profile) + [
            Choice("cell", ("gru", "lstm")),
            Int("hidden", 16, 128, log=True),  # the recurrence is sequential: wide cells cost minutes an epoch on a CPU
            Int("layers", 1, 2),
            Choice("bidirectional", (False, True)),
            Float("dropout", 0.0, 0.5),
            Choice("pooling", ("last", "mean")),
        ]

    def build(self, config, profile):
        from automl.families.networks import RNNNet

        return RNNNet(config, profile)
