"""Labelled ImageNet photos for the accuracy bench, with calibration photos left out.

Two layouts are read, both labelled by WordNet id (``n01440764``):

- a flat folder of ``<wnid>_<anything>.<ext>`` files, as ``imagenet-sample`` is (one photo
  per class; its sorted file order is the class index 0..999);
- an ImageFolder, ``<folder>/<wnid>/*.<ext>``, as a real ImageNet val folder is after the
  usual ``valprep.sh``.

ImageNet's class index is the position of the wnid in the sorted list of all 1000 wnids.
That list is read from ``imagenet-sample`` (its file names), or from an ImageFolder that has
all 1000 class folders itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from converters.calibration import image_files, imagenet_sample_dir, photo_digest

WNID = re.compile(r"^(n\d{8})")
NUM_CLASSES = 1000


class PhotosError(ValueError):
    """No labelled photos to evaluate on (a missing folder, no images, unknown classes):
    bad input, exit 2."""


@dataclass(frozen=True)
class LabelledPhotos:
    source: str  # the folder
    layout: str  # "flat <wnid>_*.ext" | "ImageFolder <wnid>/"
    files: tuple[Path, ...]
    labels: tuple[int, ...]  # ImageNet class index of each file
    left_out: int  # calibration photos found in the folder and left out
    total: int  # images in the folder before leaving any out
    unreadable: tuple[str, ...] = ()  # "name: why" of each image that does not decode, skipped

    def __len__(self) -> int:
        return len(self.files)

    @property
    def name(self) -> str:
        return set_name(Path(self.source))


def set_name(folder: Path) -> str:
    """A short name for result files: the folder's name (``imagenet-sample``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(folder).name) or "photos"


def imagenet_wnids(folder: Path | None = None) -> list[str]:
    """The 1000 ImageNet wnids in class-index order, from ``folder`` (an ImageFolder with all
    1000 classes) or else the imagenet-sample file names."""
    if folder is not None:
        dirs = sorted(d.name for d in folder.iterdir() if d.is_dir() and WNID.match(d.name))
        if len(dirs) == NUM_CLASSES:
            return dirs
    sample = imagenet_sample_dir()
    wnids = sorted({m.group(1) for p in (sample.iterdir() if sample.is_dir() else [])
                    if (m := WNID.match(p.name))})
    if len(wnids) != NUM_CLASSES:
        raise PhotosError(f"cannot map wnids to ImageNet class indices: {sample} does not hold "
                          f"one photo per class ({len(wnids)} wnids), and the folder does "
                          f"not have all {NUM_CLASSES} class folders")
    return wnids


def _wnid_of(path: Path, folder: Path) -> str | None:
    """The file's wnid: its class folder's name (ImageFolder), else its own name's prefix."""
    rel = path.relative_to(folder).parts
    for part in (rel[0] if len(rel) > 1 else "", path.name):
        if m := WNID.match(part):
            return m.group(1)
    return None


def labelled_photos(folder: Path | None = None, *, exclude: frozenset[str] = frozenset(),
                    limit: int | None = None) -> LabelledPhotos:
    """Every labelled image of ``folder`` (default imagenet-sample), leaving out those whose
    content digest (``converters.calibration.photo_digest``) is in ``exclude``; ``limit``
    keeps that many, evenly spaced."""
    folder = Path(folder) if folder is not None else imagenet_sample_dir()
    if not folder.is_dir():
        raise PhotosError(f"--photos {folder}: no such folder")
    files = image_files(folder)
    if not files:
        raise PhotosError(f"--photos {folder}: no images in it")
    wnids = [_wnid_of(p, folder) for p in files]
    unlabelled = [p.name for p, w in zip(files, wnids) if w is None]
    if unlabelled:
        raise PhotosError(f"--photos {folder}: {len(unlabelled)} images without a wnid label "
                          f"(e.g. {unlabelled[0]}); expected <wnid>_*.jpg files or <wnid>/ "
                          "class folders")
    index = {w: i for i, w in enumerate(imagenet_wnids(folder))}
    unknown = sorted({w for w in wnids if w not in index})
    if unknown:
        raise PhotosError(f"--photos {folder}: {len(unknown)} wnids are not ImageNet-1k "
                          f"classes (e.g. {unknown[0]})")
    bad = _unreadable(files)
    calib = [p not in bad and bool(exclude) and photo_digest(p) in exclude for p in files]
    kept = [(p, index[w]) for p, w, c in zip(files, wnids, calib) if not c and p not in bad]
    if not kept:
        raise PhotosError(f"--photos {folder}: no readable image that is not a calibration "
                          f"photo ({len(bad)} unreadable)")
    if limit is not None and 0 < limit < len(kept):
        step = len(kept) / limit
        kept = [kept[int(i * step)] for i in range(limit)]
    layout = "ImageFolder <wnid>/" if any(len(p.relative_to(folder).parts) > 1 for p in files) \
        else "flat <wnid>_*"
    return LabelledPhotos(str(folder), layout, tuple(p for p, _ in kept),
                          tuple(lab for _, lab in kept), sum(calib), len(files),
                          tuple(f"{p.name}: {why}" for p, why in bad.items()))


def _unreadable(files: list[Path]) -> dict[Path, str]:
    """The images that cannot be decoded (empty, truncated, not an image) and why: each is
    skipped and counted, so one damaged file costs one photo, not a model's whole row."""
    from bench.transfer.readers import Unreadable, scan_image

    return {Path(r.path): r.reason for r in map(scan_image, map(str, files))
            if isinstance(r, Unreadable)}
