"""Calibration photos for int8 artifacts, and the typed record the manifest keeps of them.

Light on purpose (no ONNX Runtime, no torch): ``converters.manifest`` reads these records
back, and the accuracy bench uses ``photo_digest`` to leave calibration photos out of its
evaluation, wherever the same photos lie on disk.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from zoo.data import shared_data_dir
from zoo.jsonrecord import known_fields

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
# Every 10th imagenet-sample photo (indices 0, 10, ..., 990): 100 photos, one per 10 classes.
# Fixed, so a manifest names the same set on every machine; evaluation leaves them out.
DEFAULT_STRIDE = 10
DIGEST_CHARS = 16  # of each photo's content sha256: enough to tell 1000s of photos apart


class CalibrationDataError(ValueError):
    """No usable calibration photos (a missing folder, no images): bad input, exit 2."""


@dataclass(frozen=True)
class CalibrationSet:
    """Which photos calibrated an int8 artifact.

    ``sha256`` hashes the list (each relative path and its content digest, in order): two
    manifests with the same value were calibrated on the same photos. ``digests`` (content
    sha256, first 16 hex characters) lets an evaluation recognise those photos by content.
    """

    source: str  # the folder the photos were read from
    files: tuple[str, ...]  # paths relative to ``source``, sorted
    digests: tuple[str, ...]
    sha256: str
    rule: str = ""  # how the files were chosen ("every 10th file of ...", "all images in ...")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CalibrationSet":
        return cls(**{**data, "files": tuple(data["files"]), "digests": tuple(data["digests"])})


@dataclass(frozen=True)
class FallbackStep:
    """One step of automatic mixed precision: the layers in float after it, and what the
    int8 artifact then measured."""

    # every layer in float after this step: ONNX node names (onnx_int8), output tensor
    # names (tflite_int8)
    float_layers: tuple[str, ...]
    added: tuple[str, ...]  # the layers this step put back in float (the worst ranked)
    agreement: float  # top-1 agreement with fp32 on the tuning photos
    n_photos: int
    latency_ms: float  # batch 1, one thread, median (the artifact's runtime, CPU)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FallbackStep":
        return cls(**{**data, "float_layers": tuple(data["float_layers"]),
                      "added": tuple(data["added"])})


@dataclass(frozen=True)
class Quantization:
    """How an int8 artifact was made (``converters.quantize``)."""

    tool: str  # "onnxruntime.quantization.quantize_static"
    quant_format: str  # "QDQ"
    method: str  # minmax | percentile | entropy
    per_channel: bool
    activations: str  # uint8 | int8
    weights: str  # int8, or int7 (int8 storage, 7-bit range: ``reduce_range``)
    calibration: CalibrationSet
    options: dict[str, Any]  # the calibrator's own settings (histogram bins, percentile)
    keep_float: tuple[str, ...] = ()  # layers left in float (mixed precision)
    target: float | None = None  # the top-1 agreement automatic mixed precision aimed at
    fallback: tuple[FallbackStep, ...] = ()  # its steps, the plain int8 model first

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Quantization":
        kwargs = known_fields(cls, data, tuples=("keep_float",))
        kwargs["calibration"] = CalibrationSet.from_json(data["calibration"])
        kwargs["fallback"] = tuple(FallbackStep.from_json(f) for f in data.get("fallback", ()))
        return cls(**kwargs)

    @property
    def label(self) -> str:
        """``minmax, per-channel, U8S8, 100 photos (sha256 1a2b3c4d)`` for tables."""
        cal = self.calibration
        act = "U8" if self.activations == "uint8" else "S8"
        kept = f", {len(self.keep_float)} layers float" if self.keep_float else ""
        return (f"{self.method}, {'per-channel' if self.per_channel else 'per-tensor'}, "
                f"{act}S{self.weights[3:]}, {len(cal.files)} photos (sha256 {cal.sha256[:8]})"
                f"{kept}")


def imagenet_sample_dir() -> Path:
    return shared_data_dir() / "imagenet-sample"


def image_files(folder: Path) -> list[Path]:
    """Every image under ``folder`` (recursively), sorted by relative path."""
    return sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def photo_digest(path: Path) -> str:
    """The content digest a ``CalibrationSet`` lists (sha256, first 16 hex characters)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:DIGEST_CHARS]


def choose_calibration(calib: Path | None = None) -> tuple[Path, list[Path], str]:
    """(folder, files, rule): every image in ``calib``, or by default every 10th photo of
    the imagenet-sample folder. One line (CalibrationDataError) when there are none."""
    if calib is not None:
        folder = Path(calib)
        if not folder.is_dir():
            raise CalibrationDataError(f"--calib {folder}: no such folder")
        files, rule = image_files(folder), f"all images in {folder}"
    else:
        folder = imagenet_sample_dir()
        files = image_files(folder)[::DEFAULT_STRIDE] if folder.is_dir() else []
        rule = f"every {DEFAULT_STRIDE}th file of {folder.name} (sorted)"
        if not files:
            raise CalibrationDataError(
                f"no calibration photos: {folder} is missing or empty; pass --calib DIR "
                "(a folder of real photos, disjoint from the evaluation photos)")
    if not files:
        raise CalibrationDataError(f"--calib {folder}: no images "
                                   f"({', '.join(IMAGE_SUFFIXES)}) in it")
    return folder, files, rule


def calibration_set(folder: Path, files: list[Path], rule: str = "") -> CalibrationSet:
    """The record of ``files`` (inside ``folder``): relative names, digests and list hash."""
    names = tuple(p.relative_to(folder).as_posix() for p in files)
    digests = tuple(photo_digest(p) for p in files)
    h = hashlib.sha256()
    for name, digest in zip(names, digests):
        h.update(f"{name}\t{digest}\n".encode())
    return CalibrationSet(str(folder), names, digests, h.hexdigest(), rule)
