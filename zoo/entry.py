"""Typed catalog entries: one frozen dataclass per backbone, whatever its source."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class Preprocessing:
    """Eval-time preprocessing: resize the shorter side, centre-crop, normalise."""

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # "bilinear" | "bicubic" | "nearest"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Preprocessing":
        return cls(int(data["resize_size"]), int(data["crop_size"]),
                   tuple(float(x) for x in data["mean"]), tuple(float(x) for x in data["std"]),
                   str(data["interpolation"]))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_preprocessing(crop_size: int = 224, resize_size: int | None = None,
                           interpolation: str = "bilinear") -> Preprocessing:
    """ImageNet mean/std; resize to crop / 0.875 (224 -> 256) unless given."""
    resize = resize_size if resize_size is not None else int(round(crop_size / 0.875))
    return Preprocessing(resize, crop_size, IMAGENET_MEAN, IMAGENET_STD, interpolation)


@dataclass(frozen=True)
class PublishedMeta:
    """What a source publishes for an entry's default weights (NaN where it publishes none:
    timm's ``pretrained_cfg`` carries no accuracy, a user's model no meta at all)."""

    weights: str  # e.g. "MobileNet_V2_Weights.IMAGENET1K_V1"
    url: str
    acc1: float
    acc5: float
    num_params: int  # 0 where unpublished
    gflops: float
    file_size_mb: float
    recipe: str
    preprocessing: Preprocessing

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelEntry:
    """One backbone: where it comes from (``source``) and what the zoo needs to know of it.

    ``source`` names an adapter in ``zoo.sources`` (``torchvision``, ``timm``, ``user``,
    ``module``) that builds the model and reads its published meta; ``builder`` is that
    source's name for the architecture (a torchvision builder, a timm model name,
    ``/path/file.py:factory``). ``feature_layer`` is the PyTorch module path of the frozen
    feature used for transfer learning: its output (``feature_at="output"``), global-average
    pooled when spatial, or its input (``"input"``: the head's input, as derived entries
    give it); ``feature_dim`` its width. ``preprocessing`` overrides the source's own
    (a user's model takes it from flags). ``overrides`` names each hand-written field that
    differs from what the source derives, with the reason (checked by a test).
    """

    name: str
    family: str
    builder: str
    weights_enum: str  # torchvision WeightsEnum class name ("" for other sources)
    default_weights: str  # torchvision: member of weights_enum; timm: pretrained tag
    feature_layer: str
    feature_dim: int
    license: str = "BSD-3-Clause (torchvision code and weights)"
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    num_classes: int = 1000
    notes: str = ""
    # Capability: a SavedModel/TFLite that runs and agrees is made, by onnx2tf or, where it
    # fails, by the Keras model's export (checked by the slow test).
    converts_to_tf: bool = True
    source: str = "torchvision"
    feature_at: str = "output"  # "output" | "input" of feature_layer
    preprocessing: Preprocessing | None = None
    overrides: tuple[tuple[str, str], ...] = ()  # (field, reason it is typed by hand)

    @property
    def folder(self) -> str:
        """The artifact folder, relative to the output root: the name, each part made safe
        (``timm/vit_small_patch16_224`` -> ``timm/vit_small_patch16_224/``), so every
        command that looks for ``out / name`` finds it."""
        return "/".join(safe_name(part) for part in self.name.split("/") if part)

    @property
    def slug(self) -> str:
        """The artifacts' file stem: the folder's last part (``vit_small_patch16_224``)."""
        return self.folder.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["builder_kwargs"] = dict(self.builder_kwargs)
        data["overrides"] = [list(o) for o in self.overrides]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelEntry":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if kwargs.get("preprocessing") is not None:
            kwargs["preprocessing"] = Preprocessing.from_json(kwargs["preprocessing"])
        kwargs["overrides"] = tuple(tuple(o) for o in kwargs.get("overrides", ()))
        return cls(**kwargs)


def safe_name(text: str) -> str:
    """Letters, digits, ``_``, ``-`` and ``.`` only, never starting with a dot: a name that
    is one path component on every file system."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.replace("/", "-")).strip("-")
    return cleaned.lstrip(".") or "model"


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "imagenet" | "random" | "file" | "factory" (a user's model as built) | "module"
    label: str  # "imagenet (ResNet18_Weights.IMAGENET1K_V1)", "random weights (seed 0)", ...
    location: str  # file the state dict came from, or "" for random
    pretrained: bool
    seed: int | None = None
    recipe: str = ""  # random weights: what BN statistics were set from (zoo.build)
    # a user's model handed over in train mode, put in eval mode (``zoo.build.eval_mode``)
    eval_note: str = ""

    @property
    def spec(self) -> str:
        """A ``weights=`` value that rebuilds exactly these weights."""
        if self.kind in ("factory", "module"):
            return self.kind
        return f"random:{self.seed}" if self.kind == "random" else self.location

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "location": self.location,
                "pretrained": self.pretrained, "seed": self.seed, "recipe": self.recipe,
                "spec": self.spec, **({"eval_note": self.eval_note} if self.eval_note else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "WeightsSource":
        """What ``to_json`` wrote (``spec`` is derived again, so it is not read back)."""
        return cls(data["kind"], data["label"], data["location"], bool(data["pretrained"]),
                   data.get("seed"), data.get("recipe", ""), data.get("eval_note", ""))
