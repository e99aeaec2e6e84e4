"""Which models a sweep covers: a source's models (``--models`` patterns select among them),
``--max-params`` on the published parameter count, and timm's default selection.

timm's default: one model per timm *family*, a family being the timm module that defines
it (``timm.list_modules()``: ``resnet``, ``vision_transformer``, ``efficientnet``...), its
member the architecture with the fewest parameters among those timm publishes ImageNet-1k
weights for (``timm.list_models(pretrained=True)``, ``pretrained_cfg.num_classes ==
1000``; timm's tiny ``test_*`` networks left out). timm's metadata holds no parameter
counts, so each candidate is built on the ``meta`` device (no memory, no weights; ~0.5 s
each here, ~8 min for timm 1.0's ~950 candidates) and counted once; the counts are cached
in ``<out>/timm-params-<version>.json``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from zoo import atomic

SOURCES = ("torchvision", "timm")
_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}


def parse_params(text: str) -> int:
    """``100M``, ``5.5M``, ``2e7``, ``300k`` -> a parameter count; ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGbB]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--max-params {text!r}: give a positive count such as 100M, 5.5M "
                         "or 2e7")
    return int(float(m.group(1)) * _SUFFIX[m.group(2).upper()])


def num_params(model: str) -> int:
    """The source's published parameter count (0 where it publishes none)."""
    from zoo.meta import published_meta
    from zoo.registry import get_entry

    return published_meta(get_entry(model)).num_params


def select_models(source: str, patterns: Sequence[str] | None, *, max_params: int | None,
                  cache_dir: Path) -> list[str]:
    """The sweep's models, in order: ``patterns`` (names, fnmatch patterns or your own
    ``file.py:factory``) or the source's default set, then those within ``max_params``."""
    from zoo.cli import expand_models
    from zoo.sources.user import is_user_target

    given = [v.strip() for item in patterns or [] for v in item.split(",") if v.strip()]
    models: list[str] = []
    for g in given:  # in the order given
        found = [g] if is_user_target(g) else expand_models([_prefixed(source, g)], [])
        models += [m for m in found if m not in models]
    if not given:
        models = default_models(source, cache_dir=cache_dir)
    if max_params is None:
        return models
    counts = _timm_counts(cache_dir) if source == "timm" else {}
    return [m for m in models if is_user_target(m)
            or 0 < counts.get(m, 0) <= max_params
            or (m not in counts and 0 < num_params(m) <= max_params)]


def _prefixed(source: str, name: str) -> str:
    return f"timm/{name}" if source == "timm" and not name.startswith("timm/") else name


def default_models(source: str, *, cache_dir: Path) -> list[str]:
    if source == "torchvision":
        from zoo.registry import list_models

        return list_models(everything=True)
    counts = _timm_counts(cache_dir)
    smallest: dict[str, tuple[int, str]] = {}
    for name, family in _timm_candidates():
        n = counts.get(f"timm/{name}", 0)
        if n and (family not in smallest or n < smallest[family][0]):
            smallest[family] = (n, name)
    return [f"timm/{name}" for _, (_, name) in sorted(smallest.items())]


def _timm_candidates() -> list[tuple[str, str]]:
    """(architecture, module) of every architecture with published ImageNet-1k weights."""
    import timm
    import timm.models

    out = []
    for module in timm.list_modules():
        archs = {n.split(".")[0] for n in timm.list_models(module=module, pretrained=True)
                 if getattr(timm.models.get_pretrained_cfg(n), "num_classes", 0) == 1000
                 and not n.startswith("test_")}  # timm's own tiny test networks
        out += [(a, module) for a in sorted(archs)]
    return out


def _timm_counts(cache_dir: Path) -> dict[str, int]:
    """Parameter count of every candidate (built on the meta device), cached per timm version."""
    import timm

    path = Path(cache_dir) / f"timm-params-{timm.__version__}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    counts = {f"timm/{a}": _meta_count(a) for a, _ in _timm_candidates()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, counts, indent=0, sort_keys=True)
    return counts


def _meta_count(arch: str) -> int:
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(arch)
    except Exception:  # noqa: BLE001  a builder that computes with tensors: not counted
        return 0
    return sum(p.numel() for p in model.parameters())
