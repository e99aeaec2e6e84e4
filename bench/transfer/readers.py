"""Image readers: index -> RGB PIL image, whatever the storage. Picklable for DataLoader workers."""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ImageReader(Protocol):
    def __call__(self, i: int) -> "Image.Image": ...


def to_rgb(img: "Image.Image") -> "Image.Image":
    """RGB copy; a grayscale image is replicated to three channels."""
    return img if img.mode == "RGB" else img.convert("RGB")


class FileReader:
    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths

    def __call__(self, i: int) -> "Image.Image":
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return img.convert("RGB")  # a loaded copy, also for RGB files

    def mode(self, i: int) -> str:
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return img.mode


class ArrayReader:
    """``N x H x W`` (grayscale) or ``N x H x W x 3`` uint8 images in memory."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __call__(self, i: int) -> "Image.Image":
        from PIL import Image

        return to_rgb(Image.fromarray(np.ascontiguousarray(self.images[i])))


class TorchvisionReader:
    """Concatenated torchvision datasets whose items are ``(PIL image, target)``."""

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0, *(len(p) for p in parts)])

    def __call__(self, i: int) -> "Image.Image":
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        img, _ = self.parts[k][i - int(self.offsets[k])]
        return to_rgb(img)


class IndexedReader:
    def __init__(self, base: ImageReader, indices: np.ndarray) -> None:
        self.base = base
        self.indices = indices

    def __call__(self, i: int) -> "Image.Image":
        return self.base(int(self.indices[i]))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz`` or plain), as LeCun's MNIST format defines it."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    arr = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    return arr.reshape(shape)
