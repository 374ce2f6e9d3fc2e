"""Recurrent nets (GRU or LSTM) over time steps or tokens.

Text rows are packed to their real length, so padding never enters the recurrence:
the final hidden state is the last real token going forward (and the whole text going
backward), and the mean covers the real steps only.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from automl.families.base import Family, output_size
from automl.families.sequence_input import InputStem, embed_dim_param, head, masked_mean, sequence_length
from automl.space import Choice, Float, Int

MAX_STEPS = 1000
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        self.stem = InputStem(profile, config.get("embed_dim"))
        layers, directions = config["layers"], 2 if config["bidirectional"] else 1
        self.rnn = CELLS[config["cell"]](
            self.stem.width, config["hidden"], num_layers=layers, batch_first=True,
            bidirectional=config["bidirectional"], dropout=config["dropout"] if layers > 1 else 0.0)
        self.directions = directions
        self.pool_last = config["pooling"] == "last"
        self.head = head(config["hidden"] * directions, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mask = self.stem(x)
        length = features.shape[1]
        if self.stem.text:
            lengths = mask.sum(1).cpu()  # pack_padded_sequence wants the lengths on the CPU
            packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
            packed_out, state = self.rnn(packed)
            outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=length)
        else:
            outputs, state = self.rnn(features)
        if self.pool_last:
            hidden = state[0] if isinstance(state, tuple) else state  # an LSTM also returns its cell state
            # the last layer's final state per direction -> (n, directions * hidden)
            pooled = hidden[-self.directions:].transpose(0, 1).flatten(1)
        else:
            pooled = masked_mean(outputs, mask)
        return self.head(pooled)


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
        return RNNNet(config, profile)
