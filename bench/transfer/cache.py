"""On-disk feature cache: one ``.npz`` per (model, weights, dataset, split, transform, subset).

Writes are atomic (temporary file, then ``os.replace``), so an interrupted run
never leaves a truncated entry that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from zoo.data import REPO_ROOT

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("MODELZOO_FEATURE_CACHE", REPO_ROOT / ".cache" / "features"))


@dataclass(frozen=True)
class FeatureKey:
    model: str
    feature_layer: str
    weights_spec: str  # WeightsSource.spec: "random:0" or the state-dict file
    weights_label: str
    dataset: str
    dataset_source: str
    split: str
    n: int
    subset_seed: int | None
    transform: str  # TransformSpec.key

    def digest(self) -> str:
        text = json.dumps({"v": CACHE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def path(self, root: Path) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.dataset)
        return root / self.model / f"{safe}-{self.split}-n{self.n}-{self.digest()}.npz"


@dataclass(frozen=True)
class CachedFeatures:
    features: np.ndarray
    labels: np.ndarray
    extract_s: float  # seconds the extraction took when it ran
    load_s: float  # seconds this call spent (extraction or cache read)
    hit: bool
    path: Path


def load(key: FeatureKey, root: Path) -> CachedFeatures | None:
    path = key.path(root)
    if not path.is_file():
        return None
    t0 = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") != asdict(key):
                return None  # a hash collision or a hand-copied file: not ours
            feats, labels = z["features"], z["labels"]
    except (OSError, ValueError, KeyError):
        return None
    return CachedFeatures(feats, labels, float(meta["extract_s"]), time.perf_counter() - t0,
                          True, path)


def save(key: FeatureKey, root: Path, features: np.ndarray, labels: np.ndarray,
         extract_s: float) -> Path:
    path = key.path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"key": asdict(key), "extract_s": extract_s,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, features=features, labels=labels, meta=np.array(meta))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cached_features(key: FeatureKey, root: Path,
                    extract: Callable[[], tuple[np.ndarray, np.ndarray]]) -> CachedFeatures:
    """Features from the cache, else from ``extract()`` (then stored)."""
    hit = load(key, root)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    feats, labels = extract()
    extract_s = time.perf_counter() - t0
    path = save(key, root, feats, labels, extract_s)
    return CachedFeatures(feats, labels, extract_s, extract_s, False, path)
