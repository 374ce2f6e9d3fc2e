"""Bag of embeddings for text: word order is ignored, which makes it the fastest text baseline."""
from __future__ import annotations

from automl.families.base import Family
from automl.space import Choice, Condition, Float, Int


class EmbeddingBagFamily(Family):
    name = "embedding_bag"
    modalities = ("text",)

    def suits(self, profile):
        if profile.modality == "text":
            return True, "averaged word embeddings are a fast, strong baseline for text"
        return super().suits(profile)

    def space(self, profile):
        return [
            Int("embed_dim", 16, 128, log=True),
            Choice("pooling", ("mean", "max")),
            Int("depth", 0, 2),
            Int("width", 32, 256, log=True, condition=Condition("depth", (1, 2))),  # no hidden layer, no width
            Float("dropout", 0.0, 0.5),
        ]

    def build(self, config, profile):
        from automl.families.networks import EmbeddingBagNet

        return EmbeddingBagNet(config, profile)
