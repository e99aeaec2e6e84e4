"""Image readers: index -> RGB PIL image, whatever the storage. Picklable for DataLoader workers.

Every reader also gives a ``fingerprint()``: a sha256 of what its images are
made of (file contents, array bytes), which the feature cache keys on.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

import numpy as np

from zoo.exits import first_line

if TYPE_CHECKING:
    from PIL import Image

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ImageReader(Protocol):
    def __call__(self, i: int) -> "Image.Image": ...

    def fingerprint(self) -> str: ...


class UnreadableImageError(ValueError):
    """An image file fails to decode; the message is one line naming the file."""


def to_rgb(img: "Image.Image") -> "Image.Image":
    """RGB copy; a grayscale image is replicated to three channels."""
    return img if img.mode == "RGB" else img.convert("RGB")


@dataclass(frozen=True)
class ImageFile:
    """A readable image file as scanned: what the cache key and the grayscale share need."""

    path: str
    size: int
    sha256: str
    mode: str  # PIL mode from the header ("RGB", "L", ...)


@dataclass(frozen=True)
class Unreadable:
    path: str
    reason: str  # one line

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


def _check_decodes(img: "Image.Image") -> None:
    # Cheap but sound checks: PNG's verify() walks every chunk to IEND and checks
    # its CRC (no inflating); a JPEG is decoded at 1/8 scale (DCT scaling), which
    # still reads the whole entropy-coded stream, so truncation is caught.
    if img.format == "PNG":
        img.verify()
        return
    if img.format == "JPEG":
        img.draft(None, (1, 1))
    img.load()


def scan_image(path: str) -> ImageFile | Unreadable:
    """Read ``path`` once: its sha256, mode, and whether it decodes."""
    from PIL import Image

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return Unreadable(path, f"cannot read: {exc.strerror or exc}")
    if not data:
        return Unreadable(path, "empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            mode = img.mode
            _check_decodes(img)
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        if "cannot identify image file" in first:
            first = "not an image PIL can read"
        return Unreadable(path, first[:200])
    return ImageFile(path, len(data), hashlib.sha256(data).hexdigest(), mode)


def scan_images(paths: Iterable[str]) -> list[ImageFile | Unreadable]:
    """:func:`scan_image` of each path, in order."""
    return [scan_image(p) for p in paths]


def one_line(exc: BaseException) -> str:
    """``zoo.exits.first_line`` of an error, also when a DataLoader worker re-raised it.

    Worker errors arrive as ``Caught X in DataLoader worker ...`` followed by the
    original traceback, whose last line holds the original message.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].partition(": ")[2] or lines[-1]
    return first_line(exc, 1000)  # the length every command allows its `error:` line


class FileReader:
    """Image files scanned by :func:`scan_image`; ``root`` makes the fingerprint relocatable."""

    def __init__(self, files: tuple[ImageFile, ...], root: str = "") -> None:
        self.files = files
        self.root = root

    def __call__(self, i: int) -> "Image.Image":
        from PIL import Image

        path = self.files[i].path
        try:
            with Image.open(path) as img:
                return img.convert("RGB")  # a loaded copy, also for RGB files
        except Exception as exc:  # noqa: BLE001 - it passed the scan, so name it and stop
            raise UnreadableImageError(
                f"{path}: cannot decode image ({one_line(exc)[:200]})") from None

    def fingerprint(self) -> str:
        # Relative path, size and content hash: mtimes are left out on purpose,
        # since a copy or a `touch` changes no feature.
        h = hashlib.sha256(b"files\0")
        for f in self.files:
            rel = os.path.relpath(f.path, self.root) if self.root else f.path
            h.update(f"{rel}\0{f.size}\0{f.sha256}\n".encode())
        return h.hexdigest()


class ArrayReader:
    """``N x H x W`` (grayscale) or ``N x H x W x 3`` uint8 images in memory."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __call__(self, i: int) -> "Image.Image":
        from PIL import Image

        return to_rgb(Image.fromarray(np.ascontiguousarray(self.images[i])))

    def fingerprint(self) -> str:
        return hash_array(self.images)


def hash_array(a: Any) -> str:
    """sha256 of an array's dtype, shape and bytes (numpy, or anything ``np.asarray`` takes)."""
    arr = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def _file_list_digest(paths: Iterable[Any]) -> str:
    h = hashlib.sha256(b"paths\0")
    for p in paths:
        data = Path(p).read_bytes()
        h.update(f"{p}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return h.hexdigest()


def _part_fingerprint(part: Any) -> str:
    """What a torchvision dataset's images are made of, where it exposes it."""
    if hasattr(part, "data"):  # CIFAR (ndarray), MNIST family (tensor)
        return hash_array(part.data.numpy() if hasattr(part.data, "numpy") else part.data)
    for attr in ("_images", "_image_files"):  # OxfordIIITPet, Flowers102: file lists
        if hasattr(part, attr):
            return _file_list_digest(getattr(part, attr))
    # Unknown layout: its class, root and length; the labels are keyed separately.
    return hashlib.sha256(f"{type(part).__qualname__}\0{getattr(part, 'root', '')}\0"
                          f"{len(part)}".encode()).hexdigest()


class TorchvisionReader:
    """Concatenated torchvision datasets whose items are ``(PIL image, target)``."""

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0, *(len(p) for p in parts)])

    def __call__(self, i: int) -> "Image.Image":
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        img, _ = self.parts[k][i - int(self.offsets[k])]
        return to_rgb(img)

    def fingerprint(self) -> str:
        return hashlib.sha256("".join(_part_fingerprint(p) for p in self.parts).encode()
                              ).hexdigest()


class IndexedReader:
    def __init__(self, base: ImageReader, indices: np.ndarray) -> None:
        self.base = base
        self.indices = indices

    def __call__(self, i: int) -> "Image.Image":
        return self.base(int(self.indices[i]))

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.base.fingerprint()}{hash_array(self.indices)}".encode()
                              ).hexdigest()


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
