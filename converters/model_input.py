"""What ``convert_model`` accepts: a catalog name, an entry, or any ``nn.Module``.

Like nobuco's ``pytorch_to_keras(model, ...)``, the pipeline takes what the user has; the
catalog is one way to get a model. Each input becomes an entry (recorded in the manifest,
so parity rebuilds the model with no catalog look-up), the module and its weights' source.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from zoo.entry import ModelEntry, Preprocessing
from zoo.weights import WeightsSource

if TYPE_CHECKING:
    import torch

ModelLike = Union[str, ModelEntry, "torch.nn.Module"]


@dataclass(frozen=True)
class ModelInput:
    entry: ModelEntry
    model: "torch.nn.Module"  # eval mode
    weights: WeightsSource


def describe(model: ModelLike) -> str:
    """A short name for status lines, before the model is resolved."""
    if isinstance(model, str):
        return model
    return model.name if isinstance(model, ModelEntry) else type(model).__name__


def resolve_model(model: ModelLike, *, weights: str | None, name: str | None = None,
                  preprocessing: Preprocessing | None = None) -> ModelInput:
    """Build (or take) the model. An ``nn.Module`` keeps its own weights; ``preprocessing``
    (default ImageNet's, 224 px) and ``name`` (default its class name) describe it."""
    import torch

    from zoo.build import build_model
    from zoo.registry import get_entry

    if isinstance(model, torch.nn.Module):
        from zoo.sources.user import module_entry

        entry = module_entry(model, name=name or type(model).__name__,
                             preprocessing=preprocessing)
        from zoo.build import eval_mode

        label = f"in-memory {type(model).__name__} (its own weights)"
        return ModelInput(entry, *eval_mode(model, WeightsSource("module", label, "", False),
                                            user=True))
    if name is not None or preprocessing is not None:
        raise ValueError("name= and preprocessing= describe an nn.Module; a catalog entry "
                         "has its own")
    entry = model if isinstance(model, ModelEntry) else get_entry(model)
    built, source = build_model(entry, weights=weights)
    return ModelInput(entry, built, source)
