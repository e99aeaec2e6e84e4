"""Typed catalog entries: one frozen dataclass per backbone."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Preprocessing:
    """Eval-time preprocessing, taken from the torchvision weights' transforms."""

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # "bilinear" | "bicubic" | "nearest"


@dataclass(frozen=True)
class PublishedMeta:
    """What torchvision publishes for the entry's default ImageNet weights."""

    weights: str  # e.g. "MobileNet_V2_Weights.IMAGENET1K_V1"
    url: str
    acc1: float
    acc5: float
    num_params: int
    gflops: float
    file_size_mb: float
    recipe: str
    preprocessing: Preprocessing

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelEntry:
    """One backbone of the catalog.

    ``feature_layer`` is the PyTorch module path whose output, global-average
    pooled when it is spatial, is the frozen feature used for transfer
    learning; ``feature_dim`` its width.
    """

    name: str
    family: str
    builder: str  # torchvision.models builder function name
    weights_enum: str  # torchvision WeightsEnum class name
    default_weights: str  # member of weights_enum, e.g. "IMAGENET1K_V1"
    feature_layer: str
    feature_dim: int
    license: str = "BSD-3-Clause (torchvision code and weights)"
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    num_classes: int = 1000
    notes: str = ""
    # Capability: onnx2tf 1.28 yields a SavedModel/TFLite that runs (checked by the slow test).
    converts_to_tf: bool = True
