"""Shared pieces of the sequence and text families' search spaces (their torch modules, the input
stem and the masked pooling, are in networks.py)."""
from __future__ import annotations

from automl.data.base import Profile
from automl.space import Int


def sequence_length(profile: Profile) -> int:
    return profile.input_shape[0]


def embed_dim_param(profile: Profile, low: int = 16, high: int = 128) -> list[Int]:
    """The embedding width, only for text (sequences keep their own channels)."""
    return [Int("embed_dim", low, high, log=True)] if profile.modality == "text" else []
