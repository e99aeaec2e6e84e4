"""Where a model comes from: one adapter per source, looked up by ``ModelEntry.source``.

An adapter builds the architecture, resolves its pretrained weights and reads what the
source publishes (torchvision's weights meta, timm's ``pretrained_cfg``), like timm's
``build_model_with_cfg``: the rest of the zoo never asks which source a model has. Adapter
modules import torch, so they load on first use: ``import zoo`` stays light.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoo.entry import ModelEntry
    from zoo.sources.base import ModelSource

# source name -> "module:attribute" of its adapter
ADAPTERS: dict[str, str] = {
    "torchvision": "zoo.sources.torchvision:SOURCE",
    "timm": "zoo.sources.timm:SOURCE",
    "user": "zoo.sources.user:USER",
    "module": "zoo.sources.user:MODULE",
}
# name prefix -> source whose ``resolve(name)`` makes the entry (``timm/vit_small_patch16_224``)
PREFIXES: dict[str, str] = {"timm/": "timm"}


@lru_cache(maxsize=None)
def get_source(name: str) -> "ModelSource":
    try:
        module, attr = ADAPTERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown model source {name!r}; known: {', '.join(ADAPTERS)}") from None
    return getattr(importlib.import_module(module), attr)


def source_of(entry: "ModelEntry") -> "ModelSource":
    return get_source(entry.source)
