"""The artifact manifest (``manifest.json``) and atomic artifact folders."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
from dataclasses import asdict, dataclass, field

from converters.env import library_versions
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "manifest.json"
VERSIONED = ("torch", "torchvision", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "keras",
             "ai-edge-litert", "numpy")


@dataclass(frozen=True)
class ArtifactRecord:
    format: str  # onnx | tf_savedmodel | tflite_fp32 | tflite_fp16 | keras
    path: str  # relative to the manifest's folder
    layout: str  # NCHW | NHWC
    precision: str  # fp32 | fp16
    input_permutation: list[int] | None  # canonical NCHW -> this artifact's layout
    size_bytes: int
    sha256: str


@dataclass
class Manifest:
    model: str
    weights: dict[str, Any]
    input_spec: dict[str, Any]
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    host: dict[str, str] = field(default_factory=dict)

    def artifact(self, fmt: str) -> ArtifactRecord:
        for a in self.artifacts:
            if a.format == fmt:
                return a
        raise KeyError(f"{self.model}: no {fmt} artifact in the manifest")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        data = dict(data)
        data["artifacts"] = [ArtifactRecord(**a) for a in data.get("artifacts", [])]
        return cls(**data)

    def write(self, folder: Path) -> Path:
        self.versions = library_versions(VERSIONED)
        self.created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.host = {"machine": platform.machine(), "python": platform.python_version()}
        return write_json_atomic(folder / MANIFEST, self.to_json())


def load_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {folder}: run `make convert` for this model first")
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{path} is corrupt ({exc}); convert the model again") from None



def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file, or of a folder's files in sorted order."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h, size = hashlib.sha256(), 0
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        size += f.stat().st_size
    return size, h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """Yield a hidden staging folder that replaces ``final`` only if the block succeeds.

    A failed or interrupted run leaves no folder that looks finished: the
    staging folder is hidden (``.name.partial-PID``) and removed on error.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    shutil.rmtree(old, ignore_errors=True)
