"""Image preprocessing from an entry's published transforms, as NCHW float32 arrays."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from zoo.entry import Preprocessing


def make_transform(p: Preprocessing):
    """torchvision's own eval transform (resize, centre crop, normalise)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(crop_size=p.crop_size, resize_size=p.resize_size, mean=p.mean,
                               std=p.std, interpolation=InterpolationMode(p.interpolation))


def load_batch(paths: Iterable[Path], p: Preprocessing) -> np.ndarray:
    """Read image files and return an NCHW float32 batch."""
    from PIL import Image

    transform = make_transform(p)
    arrays = []
    for path in paths:
        with Image.open(path) as img:
            arrays.append(transform(img.convert("RGB")).numpy())
    return np.stack(arrays).astype(np.float32)


def preprocess_images(images: Iterable[np.ndarray], p: Preprocessing) -> np.ndarray:
    """Same as ``load_batch`` for HWC uint8 arrays already in memory."""
    from PIL import Image

    transform = make_transform(p)
    return np.stack([transform(Image.fromarray(a).convert("RGB")).numpy() for a in images]
                    ).astype(np.float32)
