"""The family contract.

A family proposes parameters with plain names (`width`); the agent prefixes them with
the family name (`mlp.width`) and makes them conditional on `family == name`, so
families never collide. `build` receives the unprefixed values back.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from automl.data.base import Profile
from automl.space import Param

if TYPE_CHECKING:
    from torch import nn


def __getattr__(name: str):
    """`ACTIVATIONS`, built on first use: the contract itself loads no torch, so discovery,
    `automl plugins` and `validate --no-data` stay quick (PEP 562)."""
    if name == "ACTIVATIONS":
        from torch import nn

        globals()["ACTIVATIONS"] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
        return globals()["ACTIVATIONS"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Family:
    name: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = ()

    def suits(self, profile: Profile) -> tuple[bool, str]:
        """Whether this family fits the data, and a sentence saying why (shown in the report)."""
        if profile.modality in self.modalities:
            return True, f"handles {profile.modality} data"
        return False, f"made for {', '.join(self.modalities)} data, not {profile.modality}"

    def space(self, profile: Profile) -> list[Param]:
        raise NotImplementedError

    def build(self, config: Mapping[str, Any], profile: Profile) -> nn.Module:
        raise NotImplementedError


def output_size(profile: Profile) -> int:
    """Logits per class for classification (one for binary too: keeps CE uniform), one value for regression."""
    return profile.n_classes if profile.task == "classification" else 1
