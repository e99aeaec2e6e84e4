"""The measured GEMM peak, cached per machine: measuring it takes ~35 s of a small run.

The key is everything the figure depends on: device and thread count, the CPU (or GPU)
model, the versions of the libraries timed (torch, numpy, onnxruntime), the matrix
sizes, and the source of ``peak.py``. The cache keeps the fastest peak ever measured
under a key, because noise on a shared machine only slows a GEMM down; a run with
``--remeasure-peak`` measures again (before and after the models, as without a cache)
and keeps the faster. Writes are atomic.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.latency.records import PeakRecord
from zoo import atomic
from zoo.data import REPO_ROOT

PEAK_LIBRARIES = ("torch", "numpy", "onnxruntime")


def default_cache_dir() -> Path:
    return Path(os.environ.get("MODELZOO_PEAK_CACHE", REPO_ROOT / ".cache" / "peak"))


@dataclass(frozen=True)
class PeakKey:
    device: str
    threads: int
    hardware: str  # CPU model, or GPU name on CUDA
    versions: tuple[tuple[str, str], ...]
    sizes: tuple[int, ...]
    code: str  # sha256 of peak.py: a change to how the peak is measured invalidates

    @classmethod
    def for_machine(cls, device: str, threads: int, hardware: str) -> "PeakKey":
        from zoo.env import library_versions
        from bench.latency import peak

        code = hashlib.sha256(Path(peak.__file__).read_bytes()).hexdigest()[:16]
        versions = tuple(sorted(library_versions(PEAK_LIBRARIES).items()))
        return cls(device, threads, hardware, versions, peak.GEMM_SIZES[device], code)

    def path(self, root: Path) -> Path:
        text = json.dumps(asdict(self), sort_keys=True)
        return root / f"peak-{self.device}-{self.threads}t-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def load(key: PeakKey, root: Path) -> PeakRecord | None:
    """The cached peak for ``key`` (``when="cached"``), or None."""
    try:
        data = json.loads(key.path(root).read_text())
        if data["key"] != json.loads(json.dumps(asdict(key))):
            return None  # a hash collision or a hand-copied file
        record = PeakRecord.from_json(data["record"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return replace(record, when="cached") if record.gflops_per_s else None


def store(key: PeakKey, root: Path, record: PeakRecord) -> Path | None:
    """Keep ``record`` if it is faster than what is cached; the path written, or None."""
    if record.error or not record.gflops_per_s:
        return None
    old = load(key, root)
    if old and old.gflops_per_s >= record.gflops_per_s:
        return None
    path = key.path(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic.write_json(path, {"key": asdict(key), "record": record.to_json()},
                                 default=str)
    except OSError as exc:  # a cache that cannot be written costs a later run 35 s, no more
        print(f"warning: GEMM peak not cached ({path.parent}: {exc.strerror or exc}); "
              "the next run measures it again", file=sys.stderr)
        return None
