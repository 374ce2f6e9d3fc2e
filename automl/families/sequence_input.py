"""Shared pieces of the sequence and text families: the input stem and masked pooling.

Sequences arrive as float (n, length, channels) with every step valid; text arrives as
int64 token ids (n, length) with padding (id 0) at the end. The stem turns both into
(n, length, width) features plus a boolean mask of the steps that count. Position 0 is
always counted, so an empty text pools to a finite vector (its padding embedding, zero)
instead of dividing by zero or masking every attention key, which gives NaN.
Everything here is plain tensor arithmetic so `torch.jit.trace` keeps the batch size free.
"""
from __future__ import annotations

import torch
from torch import nn

from automl.data.base import Profile
from automl.space import Int


def sequence_length(profile: Profile) -> int:
    return profile.input_shape[0]


def valid_steps(tokens: torch.Tensor) -> torch.Tensor:
    """True for real tokens, and for position 0 so that no row is empty."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    return (tokens != 0) | (positions == 0)


class InputStem(nn.Module):
    """Text -> embedding (padding_idx 0); sequences -> raw channels, or a linear projection when asked."""

    def __init__(self, profile: Profile, embed_dim: int | None = None, project: bool = False):
        super().__init__()
        self.text = profile.modality == "text"
        if self.text:
            if not profile.vocab_size or embed_dim is None:
                raise ValueError("text input needs profile.vocab_size and an embed_dim")
            self.encode: nn.Module = nn.Embedding(profile.vocab_size, embed_dim, padding_idx=0)
            self.width = embed_dim
        elif project:
            self.encode = nn.Linear(profile.input_shape[1], embed_dim)
            self.width = embed_dim
        else:
            self.encode = nn.Identity()
            self.width = profile.input_shape[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.text:
            return self.encode(x), valid_steps(x)
        return self.encode(x), torch.ones_like(x[..., 0], dtype=torch.bool)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid steps of (n, length, width) -> (n, width)."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the valid steps; position 0 is always valid, so the result is finite."""
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)


POOLS = {"mean": masked_mean, "max": masked_max}


def embed_dim_param(profile: Profile, low: int = 16, high: int = 128) -> list[Int]:
    """The embedding width, only for text (sequences keep their own channels)."""
    return [Int("embed_dim", low, high, log=True)] if profile.modality == "text" else []


def head(width: int, out: int, dropout: float) -> nn.Sequential:
    """Dropout then the output layer, shared by every pooled family."""
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(*layers, nn.Linear(width, out))
