"""A small pre-norm transformer encoder over time steps or tokens, mean-pooled over the valid steps."""
from __future__ import annotations

import torch
from torch import nn

from automl.families.base import Family, output_size
from automl.families.sequence_input import InputStem, head, masked_mean, sequence_length
from automl.space import Choice, Float, Int

MAX_LENGTH = 512


class TransformerNet(nn.Module):
    def __init__(self, config, profile):
        super().__init__()
        d_model = config["d_model"]
        self.stem = InputStem(profile, d_model, project=True)
        self.position = nn.Parameter(torch.zeros(1, sequence_length(profile), d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, config["heads"], d_model * config["ff_factor"],
                                           config["dropout"], batch_first=True, norm_first=True)
        # pre-norm leaves the last layer's output unnormalised, hence the final LayerNorm
        self.encoder = nn.TransformerEncoder(layer, config["layers"], norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.head = head(d_model, output_size(profile), config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, mask = self.stem(x)
        # sequences have no padding; for text the mask keeps position 0, so no row masks every key (NaN)
        padding = ~mask if self.stem.text else None
        encoded = self.encoder(features + self.position, src_key_padding_mask=padding)
        return self.head(masked_mean(encoded, mask))


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
        return TransformerNet(config, profile)
