"""On-disk feature cache: one ``.npz`` per extraction, keyed on what determines the features.

The key (``FeatureKey``) holds:

- the images: ``Split.fingerprint``, a sha256 over every image's relative path,
  size and content sha256 (ImageFolder; files that fail to decode are left out
  and listed), the arrays' bytes (IDX, CIFAR, MNIST), or each listed file's
  content (Pets, Flowers), plus the subset indices;
- the label assignment: the labels array and the class names;
- the weights actually used: a sha256 of the model's state dict (names, dtypes,
  shapes, bytes), so another file at the same path, or changed ImageNet weights,
  is another key; the spec and label stay for reading;
- the preprocessing (``TransformSpec.key``) and the code: ``CACHE_VERSION``, a
  sha256 of the extraction and image-reading sources, and the torch,
  torchvision and Pillow versions.

Every file's content is hashed, not sampled: on /work/shared/data/cifar10/train
(10,000 JPEGs) hashing takes about 0.8 s from disk and 0.1 s from the page cache,
well below the cost of a sampling scheme's blind spots. Modification times are
not in the key: a copy or a ``touch`` changes no feature.

Each entry's ``meta`` holds its full key, so an entry describes itself and a
digest collision reads as a miss. Writes are atomic (temporary file, then
``os.replace``), so an interrupted run never leaves a truncated entry that a
later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from functools import lru_cache
from importlib import metadata, util
from typing import TYPE_CHECKING, Callable

import numpy as np

from zoo.data import REPO_ROOT

if TYPE_CHECKING:
    import torch

CACHE_VERSION = 2  # 2: content, labels, weights digest and code in the key
# Modules whose code turns files into features: a change to them invalidates.
CODE_MODULES = ("bench.transfer.features", "bench.transfer.readers")
LIBRARIES = ("torch", "torchvision", "pillow")


def default_cache_dir() -> Path:
    return Path(os.environ.get("MODELZOO_FEATURE_CACHE", REPO_ROOT / ".cache" / "features"))


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 of the feature-extraction sources and the versions of the libraries they use."""
    h = hashlib.sha256(str(CACHE_VERSION).encode())
    for name in CODE_MODULES:
        spec = util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        h.update(Path(spec.origin).read_bytes())
    for lib in LIBRARIES:
        h.update(f"{lib}=={metadata.version(lib)}".encode())
    return h.hexdigest()[:16]


def weights_digest(model: "torch.nn.Module") -> str:
    """sha256 of the state dict as the model holds it: names, dtypes, shapes and bytes."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    model: str
    feature_layer: str
    weights_spec: str  # WeightsSource.spec: "random:0" or the state-dict file
    weights_label: str
    weights_digest: str  # weights_digest(model): the numbers, wherever they came from
    dataset: str
    dataset_source: str
    split: str
    n: int
    subset_seed: int | None
    content: str  # Split.fingerprint: images, labels, class names, skipped files
    transform: str  # TransformSpec.key
    code: str  # code_version()

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
