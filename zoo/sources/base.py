"""The adapter protocol every model source implements."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from zoo.entry import ModelEntry, PublishedMeta
    from zoo.entry import WeightsSource


class ModelSource(Protocol):
    name: str

    def build(self, entry: "ModelEntry") -> "torch.nn.Module":
        """The architecture with the source's own initialisation (no download, train mode)."""

    def finish(self, entry: "ModelEntry", model: "torch.nn.Module") -> "torch.nn.Module":
        """After weights are loaded: what the source's own pretrained build does last."""

    def pretrained(self, entry: "ModelEntry", tag: str | None
                   ) -> tuple["torch.nn.Module", "WeightsSource"]:
        """The model with its published weights; ``WeightsUnavailableError`` (one line) when
        they are neither on this machine nor downloadable."""

    def available_offline(self, entry: "ModelEntry") -> bool:
        """Whether ``pretrained`` would succeed without the network."""

    def published_meta(self, entry: "ModelEntry", tag: str | None) -> "PublishedMeta":
        """What the source publishes for the weights ``tag`` (default: the entry's)."""
