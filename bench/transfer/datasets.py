"""Transfer datasets: a typed registry over offline folders, Debian IDX files and torchvision.

A named dataset is looked for, in order, as an ImageFolder tree under
``zoo.data.shared_data_dir()``, as the Debian package's IDX files, in the
torchvision cache (``$MODELZOO_DATASETS``, default ``~/.cache/modelzoo/datasets``),
then downloaded by torchvision unless ``MODELZOO_OFFLINE=1``. Any folder with
``train/`` and ``test/`` ImageFolder trees works too. Images come out as RGB PIL
images: grayscale ones are replicated to three channels.

Opening an ImageFolder reads every file once (under a second per 10,000 small
JPEGs): its sha256 goes into the feature cache key, its header mode into the
split's grayscale share, and a cheap decode check drops unreadable files (empty,
truncated, not an image), which the split lists in ``skipped``; ``strict=True``
raises on the first one instead.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from bench.transfer.readers import (ArrayReader, FileReader, ImageFile, ImageReader,
                                    IndexedReader, TorchvisionReader, Unreadable,
                                    UnreadableImageError, hash_array, read_idx, scan_images)
from zoo.data import downloads_allowed
from zoo.exits import UserError, first_line

if TYPE_CHECKING:
    from PIL import Image

SPLITS = ("train", "test")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


class DatasetUnavailableError(UserError, RuntimeError):
    """A dataset is neither on disk nor downloadable; the message is one line."""


@dataclass(frozen=True)
class TorchvisionSource:
    """A torchvision dataset class and the constructor kwargs of each split's parts."""

    cls: str
    splits: Mapping[str, tuple[Mapping[str, Any], ...]]


@dataclass(frozen=True)
class IdxSource:
    """Gzipped IDX files as Debian's ``dataset-*`` packages ship them."""

    package: str
    folder: str
    files: Mapping[str, tuple[str, str]]  # split -> (images file, labels file)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    num_classes: int
    resize_mode: str  # "resize": small square images, scaled whole; "crop": the model's eval crop
    homepage: str
    folder: str | None = None  # ImageFolder tree under the shared data folder
    idx: IdxSource | None = None
    torchvision: TorchvisionSource | None = None
    class_names: tuple[str, ...] = ()  # for sources that carry no names (IDX)


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: labels in memory, images read on demand."""

    dataset: str
    split: str
    source: str
    classes: tuple[str, ...]
    labels: np.ndarray
    reader: ImageReader
    grayscale: float = 0.0  # share of the whole split's images stored grayscale (0..1)
    subset_seed: int | None = None
    skipped: tuple[Unreadable, ...] = ()  # files left out because they do not decode

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of what determines this split's features: images, labels, class names."""
        h = hashlib.sha256(json.dumps({"classes": list(self.classes),
                                       "skipped": [u.path for u in self.skipped]}).encode())
        h.update(hash_array(self.labels).encode())
        h.update(self.reader.fingerprint().encode())
        return h.hexdigest()

    def image(self, i: int) -> "Image.Image":
        return self.reader(i)

    def subset(self, n: int | None, seed: int = 0) -> "Split":
        """``n`` examples drawn without replacement (seeded); all of them when n is None."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return Split(self.dataset, self.split, self.source, self.classes, self.labels[idx],
                     IndexedReader(self.reader, idx), self.grayscale, seed, self.skipped)


@dataclass(frozen=True, eq=False)
class TransferData:
    name: str
    source: str
    resize_mode: str
    train: Split
    test: Split
    classes: tuple[str, ...]

    @property
    def grayscale(self) -> float:
        """Share of all images (train and test) stored grayscale."""
        n = len(self.train) + len(self.test)
        return (self.train.grayscale * len(self.train) + self.test.grayscale * len(self.test)
                ) / n if n else 0.0

    @property
    def skipped(self) -> tuple[Unreadable, ...]:
        return self.train.skipped + self.test.skipped


_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
            "truck")
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
            "Bag", "Ankle boot")

REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("cifar10", "CIFAR-10", 10, "resize", "https://www.cs.toronto.edu/~kriz/cifar.html",
                folder="cifar10", class_names=_CIFAR10,
                torchvision=TorchvisionSource("CIFAR10", {"train": ({"train": True},),
                                                          "test": ({"train": False},)})),
    DatasetSpec("fashion-mnist", "Fashion-MNIST", 10, "resize",
                "https://github.com/zalandoresearch/fashion-mnist", folder="fashion-mnist",
                class_names=_FASHION,
                idx=IdxSource("dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist", {
                    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}),
                torchvision=TorchvisionSource("FashionMNIST", {"train": ({"train": True},),
                                                               "test": ({"train": False},)})),
    DatasetSpec("cats-vs-dogs", "Cats vs dogs (Kaggle)", 2, "crop",
                "https://www.kaggle.com/c/dogs-vs-cats", folder="cats-vs-dogs"),
    DatasetSpec("oxford-pets", "Oxford-IIIT Pets", 37, "crop",
                "https://www.robots.ox.ac.uk/~vgg/data/pets/", folder="oxford-pets",
                torchvision=TorchvisionSource("OxfordIIITPet", {"train": ({"split": "trainval"},),
                                                                "test": ({"split": "test"},)})),
    # Kornblith et al. train on train+val (2,040 images) and test on the 6,149 test images.
    DatasetSpec("flowers102", "Oxford Flowers-102", 102, "crop",
                "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/", folder="flowers102",
                torchvision=TorchvisionSource("Flowers102", {
                    "train": ({"split": "train"}, {"split": "val"}),
                    "test": ({"split": "test"},)})),
)}


def list_datasets() -> list[str]:
    return list(REGISTRY)


def download_root() -> Path:
    """Where torchvision's downloaders cache files."""
    default = Path.home() / ".cache" / "modelzoo" / "datasets"
    return Path(os.environ.get("MODELZOO_DATASETS", default))


def _shared_folder(spec: DatasetSpec) -> Path | None:
    from zoo.data import shared_data_dir

    return shared_data_dir() / spec.folder if spec.folder else None


def open_dataset(name_or_path: str, *, strict: bool = False) -> TransferData:
    """A registry name (``cifar10``) or a folder holding ``train/`` and ``test/`` trees.

    ``strict``: an unreadable image file raises ``UnreadableImageError`` instead
    of being skipped.
    """
    spec = REGISTRY.get(name_or_path)
    if spec is None:
        path = Path(name_or_path)
        if path.is_dir():
            return open_folder(path, strict=strict)
        raise DatasetUnavailableError(
            f"unknown dataset {name_or_path!r}: use one of {', '.join(REGISTRY)} "
            f"or a folder with train/ and test/ ImageFolder trees")
    folder = _shared_folder(spec)
    if folder is not None and all((folder / s).is_dir() for s in SPLITS):
        return open_folder(folder, name=spec.name, resize_mode=spec.resize_mode, strict=strict)
    if spec.idx is not None and _idx_present(spec.idx):
        return open_idx(spec)
    if spec.torchvision is not None:
        return open_torchvision(spec)
    raise DatasetUnavailableError(_missing_message(spec, "torchvision has no downloader for it"))


def _missing_message(spec: DatasetSpec, reason: str) -> str:
    folder = _shared_folder(spec)
    where = [f"put an ImageFolder tree at {folder}/{{train,test}}/<class>/<image>"]
    if spec.idx is not None:
        where.append(f"`apt-get install {spec.idx.package}` (IDX files in {spec.idx.folder})")
    if spec.torchvision is not None:
        where.append(f"run once online to cache torchvision.datasets.{spec.torchvision.cls} "
                     f"under {download_root()}")
    return (f"{spec.name}: not found offline and {reason}; "
            f"{' or '.join(where)} ({spec.homepage})")


def open_folder(path: Path, *, name: str | None = None, resize_mode: str = "crop",
                strict: bool = False) -> TransferData:
    """``path/train`` and ``path/test`` as ImageFolder trees with the same classes."""
    path = Path(path)
    missing = [s for s in SPLITS if not (path / s).is_dir()]
    if missing:
        raise DatasetUnavailableError(
            f"{path}: no {' or '.join(missing)} folder; expected {path}/{{train,test}}/<class>/<image>")
    train, test = (_folder_split(path / s, name or path.name, s, strict) for s in SPLITS)
    if train.classes != test.classes:
        raise DatasetUnavailableError(
            f"{path}: train and test class folders differ ({len(train.classes)} vs {len(test.classes)})")
    return TransferData(name or path.name, f"ImageFolder {path}", resize_mode, train, test,
                        train.classes)


def _folder_split(root: Path, name: str, split: str, strict: bool) -> Split:
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DatasetUnavailableError(f"{root}: {first_line(exc, 1000)}") from None
    scanned = scan_images(p for p, _ in folder.samples)
    bad = [s for s in scanned if isinstance(s, Unreadable)]
    if bad and strict:
        raise UnreadableImageError(f"{bad[0].path}: unreadable image ({bad[0].reason}); "
                                   f"{len(bad)} unreadable file(s) in {root} (--strict)")
    keep = [i for i, s in enumerate(scanned) if isinstance(s, ImageFile)]
    files = tuple(f for f in scanned if isinstance(f, ImageFile))
    labels = np.asarray(folder.targets, dtype=np.int64)[keep]
    gray = sum(f.mode in GRAY_MODES for f in files) / len(files) if files else 0.0
    return Split(name, split, f"ImageFolder {root}", tuple(folder.classes), labels,
                 FileReader(files, str(root)), grayscale=gray, skipped=tuple(bad))


def _idx_present(src: IdxSource) -> bool:
    return all((Path(src.folder) / f).is_file() for pair in src.files.values() for f in pair)


def open_idx(spec: DatasetSpec) -> TransferData:
    assert spec.idx is not None
    splits = []
    for s in SPLITS:
        img_file, lbl_file = (Path(spec.idx.folder) / f for f in spec.idx.files[s])
        images, labels = read_idx(img_file), read_idx(lbl_file).astype(np.int64)
        source = f"Debian package {spec.idx.package} ({img_file.parent})"
        splits.append(Split(spec.name, s, source, spec.class_names, labels, ArrayReader(images),
                            grayscale=float(images.ndim == 3)))
    return TransferData(spec.name, splits[0].source, spec.resize_mode, splits[0], splits[1],
                        spec.class_names)


def open_torchvision(spec: DatasetSpec) -> TransferData:
    """The torchvision dataset from its cache, downloading it when allowed."""
    assert spec.torchvision is not None
    root = download_root() / spec.name
    try:
        parts = {s: _tv_parts(spec, root, s, download=False) for s in SPLITS}
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        if not downloads_allowed():
            raise DatasetUnavailableError(
                _missing_message(spec, "downloads are off (MODELZOO_OFFLINE=1)")) from None
        try:
            parts = {s: _tv_parts(spec, root, s, download=True) for s in SPLITS}
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, RuntimeError, ...
            reason = f"torchvision's download failed ({exc.__class__.__name__})"
            raise DatasetUnavailableError(_missing_message(spec, reason)) from None
    source = f"torchvision.datasets.{spec.torchvision.cls} ({root})"
    splits = [_tv_split(spec, source, s, parts[s]) for s in SPLITS]
    return TransferData(spec.name, source, spec.resize_mode, splits[0], splits[1],
                        splits[0].classes)


def _tv_parts(spec: DatasetSpec, root: Path, split: str, *, download: bool) -> list[Any]:
    import torchvision.datasets as tvd

    assert spec.torchvision is not None
    cls = getattr(tvd, spec.torchvision.cls)
    return [cls(root=str(root), download=download, **kw) for kw in spec.torchvision.splits[split]]


def _tv_split(spec: DatasetSpec, source: str, split: str, parts: list[Any]) -> Split:
    labels = np.concatenate([_tv_labels(p) for p in parts]).astype(np.int64)
    classes = tuple(getattr(parts[0], "classes", None) or spec.class_names
                    or (str(i) for i in range(spec.num_classes)))
    return Split(spec.name, split, source, classes, labels, TorchvisionReader(tuple(parts)),
                 grayscale=float(spec.torchvision is not None
                                 and spec.torchvision.cls == "FashionMNIST"))


def _tv_labels(dataset: Any) -> np.ndarray:
    for attr in ("targets", "_labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr))
    return np.asarray([dataset[i][1] for i in range(len(dataset))])
