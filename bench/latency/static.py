"""Static figures per model: parameters, counted FLOPs, artifact sizes."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.latency.records import Job, StaticRecord

if TYPE_CHECKING:
    import torch


def count_flops(model: "torch.nn.Module", shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass at ``shape`` (torch.utils.flop_counter: multiply-add = 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(shape))
    return int(counter.get_total_flops())


def artifact_sizes(folder: Path) -> dict[str, int]:
    """Bytes of each artifact the model's manifest lists (empty without a manifest)."""
    from converters.manifest import load_manifest

    try:
        manifest = load_manifest(folder)
    except (FileNotFoundError, ValueError):
        return {}
    return {a.format: a.size_bytes for a in manifest.artifacts}


def static_figures(job: Job) -> StaticRecord:
    """Params and FLOPs counted on the real module at batch 1; latency rows scale by batch."""
    from zoo.build import build_model, count_params
    from zoo.meta import input_shape, published_meta
    from zoo.registry import get_entry

    entry = get_entry(job.model)
    # FLOPs and parameter counts do not depend on the weights' values.
    model, _ = build_model(entry, weights="random")
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return StaticRecord(
        model=job.model, weights=job.weights_label, params=count_params(model),
        gflops=count_flops(model, input_shape(entry, 1)) / 1e9,
        published_gflops=published_meta(entry).gflops * 2, state_dict_bytes=state_bytes,
        artifact_bytes=artifact_sizes(Path(job.artifacts_root) / job.model))
