"""Frozen features at a catalog entry's feature layer (global-average pooled when spatial)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from zoo.entry import ModelEntry, Preprocessing

if TYPE_CHECKING:
    import torch

    from bench.transfer.datasets import Split

RESIZE_MODES = ("resize", "crop")


@dataclass(frozen=True)
class TransformSpec:
    """How images become model inputs; part of the feature cache key."""

    resolution: int
    mode: str  # "resize": whole image scaled to resolution^2; "crop": resize + centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    resize_size: int  # short side before the crop ("crop" mode only)

    @property
    def key(self) -> str:
        return (f"{self.mode}{self.resolution}/{self.resize_size}/{self.interpolation}/"
                f"{','.join(f'{x:.4f}' for x in self.mean)}/{','.join(f'{x:.4f}' for x in self.std)}")


def transform_spec(p: Preprocessing, *, resolution: int | None, mode: str) -> TransformSpec:
    """The entry's normalisation at ``resolution`` (default: its crop size)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    res = resolution or p.crop_size
    resize = round(res * p.resize_size / p.crop_size)  # keeps the published crop ratio
    return TransformSpec(res, mode, p.mean, p.std, p.interpolation, resize)


def build_transform(t: TransformSpec) -> Callable[[Any], "torch.Tensor"]:
    from torchvision import transforms as T

    interp = T.InterpolationMode(t.interpolation)
    if t.mode == "resize":
        size = [T.Resize((t.resolution, t.resolution), interpolation=interp, antialias=True)]
    else:
        size = [T.Resize(t.resize_size, interpolation=interp, antialias=True),
                T.CenterCrop(t.resolution)]
    return T.Compose([*size, T.ToTensor(), T.Normalize(t.mean, t.std)])


class SplitDataset:
    """``torch.utils.data.Dataset`` protocol over a Split: (input tensor, label)."""

    def __init__(self, split: "Split", transform: Callable[[Any], "torch.Tensor"]) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple["torch.Tensor", int]:
        return self.transform(self.split.image(i)), int(self.split.labels[i])


def make_loader(split: "Split", t: TransformSpec, *, batch_size: int, workers: int = 0,
                shuffle: bool = False, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(SplitDataset(split, build_transform(t)),
                                       batch_size=batch_size, shuffle=shuffle, generator=gen,
                                       num_workers=workers, drop_last=False)


class _Stop(Exception):
    """Raised by the hook: nothing after the feature layer needs computing."""


def pool(x: "torch.Tensor") -> "torch.Tensor":
    """Global average pooling of NCHW activations; flattening otherwise."""
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1)


class FeatureTap:
    """Runs ``model`` only up to ``entry.feature_layer`` and returns its pooled output (its
    pooled input for ``feature_at="input"``: a derived entry's head).

    Gradients flow through the returned tensor, so fine-tuning uses it too.
    """

    def __init__(self, model: "torch.nn.Module", entry: ModelEntry) -> None:
        self.model = model
        self.layer = model.get_submodule(entry.feature_layer)
        self._out: "torch.Tensor | None" = None
        self._at_input = entry.feature_at == "input"

    def _hook(self, _module, _inputs, output) -> None:
        self._out = output
        raise _Stop

    def _pre_hook(self, _module, inputs) -> None:
        self._out = inputs[0]
        raise _Stop

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        handle = (self.layer.register_forward_pre_hook(self._pre_hook) if self._at_input
                  else self.layer.register_forward_hook(self._hook))
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        out, self._out = self._out, None
        if out is None:
            raise RuntimeError("the feature layer did not run in the model's forward")
        return pool(out)


def extract_features(model: "torch.nn.Module", entry: ModelEntry, split: "Split",
                     t: TransformSpec, *, batch_size: int = 64, workers: int = 0,
                     device: str = "cpu", label: str = "") -> np.ndarray:
    """``(len(split), feature_dim)`` float32 features, with a progress bar."""
    import torch

    from bench.transfer.progress import progress_bar

    # channels_last: ~1.7x faster convolutions on CPU (oneDNN), same numbers to ~1e-6.
    fmt = torch.channels_last
    tap = FeatureTap(model.eval().to(device, memory_format=fmt), entry)
    chunks = []
    with torch.inference_mode(), progress_bar(label or f"features {split.split}",
                                              len(split)) as advance:
        for x, _ in make_loader(split, t, batch_size=batch_size, workers=workers):
            chunks.append(tap(x.to(device, memory_format=fmt)).float().cpu().numpy())
            advance(len(x))
    feats = np.concatenate(chunks) if chunks else np.zeros((0, entry.feature_dim), np.float32)
    if feats.shape[1] != entry.feature_dim:
        raise RuntimeError(f"{entry.name}: {entry.feature_layer} gave {feats.shape[1]} features, "
                           f"catalog says {entry.feature_dim}")
    return feats.astype(np.float32)
