"""Where the offline sample photos live."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGENET_CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def downloads_allowed() -> bool:
    """False when ``MODELZOO_OFFLINE`` is set: weights and datasets then come from disk only."""
    return os.environ.get("MODELZOO_OFFLINE", "0").lower() not in ("1", "true", "yes")


def shared_data_dir() -> Path:
    """``$MODELZOO_DATA``, else ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("MODELZOO_DATA", REPO_ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class SamplePhotos:
    source: str
    images: list[np.ndarray]  # HWC uint8 RGB
    names: list[str]


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def sample_photos(n: int = 16) -> SamplePhotos:
    """``n`` real photos: evenly spaced ImageNet samples, else scikit-image's photos."""
    folder = shared_data_dir() / "imagenet-sample"
    files = sorted(folder.glob("*.JPEG")) if folder.is_dir() else []
    if files:
        step = max(1, len(files) // n)
        chosen = files[::step][:n]
        return SamplePhotos(str(folder), [_read_rgb(p) for p in chosen], [p.name for p in chosen])
    return skimage_photos(n)


def skimage_photos(n: int = 16) -> SamplePhotos:
    from skimage import data

    names = ["chelsea", "astronaut", "coffee", "rocket", "immunohistochemistry",
             "hubble_deep_field", "retina", "colorwheel"][:n]
    images = [np.ascontiguousarray(getattr(data, k)()[..., :3]) for k in names]
    return SamplePhotos("scikit-image bundled photos", images, names)


def cat_photo() -> np.ndarray:
    """scikit-image's photo of Chelsea the cat (HWC uint8)."""
    from skimage import data

    return data.chelsea()
