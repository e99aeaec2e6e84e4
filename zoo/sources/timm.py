"""timm as a model source: ``timm/<name>`` (``timm/vit_small_patch16_224``, a tag allowed:
``timm/resnet18.a1_in1k``), preprocessing from its ``pretrained_cfg``.

Pretrained weights come from the Hugging Face cache when it holds them
(``huggingface_hub.try_to_load_from_cache``, no network); otherwise they are downloaded
from the hub, announced in our words, as torchvision's are, unless ``MODELZOO_OFFLINE=1``.
Absent and not downloadable: the same one-line error as a missing torchvision file,
pointing at ``WEIGHTS=random`` or a state-dict path.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from zoo.entry import ModelEntry, Preprocessing, PublishedMeta
from zoo.exits import raise_if_exhausted

if TYPE_CHECKING:
    import torch

    from zoo.entry import WeightsSource

NAME = "timm"
PREFIX = "timm/"
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub repos hold
NAN = math.nan


def pretrained_cfg(name: str) -> Any:
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm/{name}: timm has no pretrained_cfg for it")
    return cfg


def cfg_preprocessing(cfg: Any) -> Preprocessing:
    """timm's eval transform in our terms: resize the shorter side to floor(size / crop_pct),
    centre-crop ``size`` (timm's ``crop_mode='center'``, its default)."""
    size = int(cfg.input_size[-1])
    crop_pct = float(cfg.crop_pct or 0.875)
    return Preprocessing(math.floor(size / crop_pct), size, tuple(float(m) for m in cfg.mean),
                         tuple(float(s) for s in cfg.std), str(cfg.interpolation or "bilinear"))


# timm's own switch for models that will be exported (its onnx_export.py sets it): layers
# pick their exportable form, e.g. attention spelled out instead of
# F.scaled_dot_product_attention, whose traced is_causal argument stopped eva02's export
# ("argument 'is_causal' must be bool, not Tensor"). Same parameters, same function.
EXPORT_KWARGS = {"exportable": True}


def skeleton(name: str) -> "torch.nn.Module":
    """``name`` built for its structure (head, parameter count): parameters on the meta
    device, no memory; a real build where the builder computes at init (hybrid ViTs run
    their backbone on a dummy image, which meta parameters cannot). The initialisers'
    draws come from a forked RNG: the caller's is left as it was."""
    import timm
    import torch

    from zoo.heads import empty_init

    with torch.random.fork_rng():
        try:
            with empty_init():
                return timm.create_model(name, pretrained=False)
        except (RuntimeError, NotImplementedError):
            return timm.create_model(name, pretrained=False)


@lru_cache(maxsize=None)
def derive_entry(name: str) -> ModelEntry:
    import timm

    from zoo.heads import find_head, head_width
    from zoo.registry import UnknownModelError

    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise UnknownModelError(f"unknown timm model {name!r}{hint} "
                                "(`python -m zoo list 'timm/PATTERN'` lists them)")
    cfg = pretrained_cfg(name)
    model = skeleton(name)
    classifier = cfg.classifier[0] if isinstance(cfg.classifier, (tuple, list)) else cfg.classifier
    head, layer = find_head(model, classifier)
    dim, classes = head_width(layer)
    notes = "" if cfg.crop_mode in (None, "center") else (
        f"timm evaluates with crop_mode={cfg.crop_mode!r}; converted with a centre crop")
    return ModelEntry(PREFIX + name, type(model).__name__, name, "", cfg.tag or "",
                      feature_layer=head, feature_dim=dim, num_classes=classes,
                      license=f"Apache-2.0 (timm code); weights: "
                              f"{cfg.license or 'see the model card'}",
                      notes=notes, source=NAME, feature_at="input")


def cached_weights(hub_id: str | None) -> str | None:
    """The path of a hub repo's weights in the Hugging Face cache, or None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for file_name in HUB_FILES if hub_id else ():
        found = try_to_load_from_cache(repo_id=hub_id, filename=file_name)
        if isinstance(found, str):
            return found
    return None


def _download(entry: ModelEntry, hub_id: str | None) -> str:
    """The hub repo's weights file fetched into the Hugging Face cache, or one line saying
    why not (downloads off, no hub id, or the download failed)."""
    import sys

    from huggingface_hub.constants import HF_HUB_CACHE

    from zoo.data import downloads_allowed
    from zoo.weights import WeightsUnavailableError

    if not hub_id:
        reason = "timm publishes no Hugging Face repo for it"
    elif not downloads_allowed():
        reason = "downloads are off (MODELZOO_OFFLINE=1)"
    else:
        from huggingface_hub import hf_hub_download

        print(f"{entry.name}: pretrained weights not in the Hugging Face cache; downloading "
              f"{hub_id} from huggingface.co to {HF_HUB_CACHE}", file=sys.stderr)
        failures = []
        for file_name in HUB_FILES:
            try:
                return hf_hub_download(repo_id=hub_id, filename=file_name)
            except Exception as exc:  # offline, no such file in the repo, HTTP errors
                raise_if_exhausted(exc, memory=False)
                failures.append(f"{file_name}: {type(exc).__name__}")
        reason = f"download from huggingface.co failed ({'; '.join(failures)})"
    raise WeightsUnavailableError(
        f"{entry.name}: no pretrained weights {hub_id} in the Hugging Face cache "
        f"{HF_HUB_CACHE} (looked for {', '.join(HUB_FILES)}); {reason}. "
        "Use WEIGHTS=random for seeded random weights or WEIGHTS=path/to/state_dict.pth")


class TimmSource:
    name = NAME

    def list_names(self, pattern: str) -> list[str]:
        import timm

        return list(timm.list_models(pattern or "*"))

    def resolve(self, name: str) -> ModelEntry:
        return derive_entry(name)

    def build(self, entry: ModelEntry) -> "torch.nn.Module":
        import timm

        return timm.create_model(entry.builder, pretrained=False, **EXPORT_KWARGS,
                                 **entry.builder_kwargs)

    def finish(self, entry: ModelEntry, model: "torch.nn.Module") -> "torch.nn.Module":
        return model

    def pretrained(self, entry: ModelEntry, tag: str | None
                   ) -> tuple["torch.nn.Module", "WeightsSource"]:
        import timm

        from zoo.weights import WeightsSource, WeightsUnavailableError

        name = f"{entry.builder.split('.')[0]}.{tag}" if tag else entry.builder
        hub_id = pretrained_cfg(name).hf_hub_id
        path = cached_weights(hub_id) or _download(entry, hub_id)
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": path},
                                  **EXPORT_KWARGS,
                                  **entry.builder_kwargs)
        return model, WeightsSource("imagenet", f"pretrained (timm {hub_id})", path, True)

    def available_offline(self, entry: ModelEntry) -> bool:
        return cached_weights(pretrained_cfg(entry.builder).hf_hub_id) is not None

    def published_meta(self, entry: ModelEntry, tag: str | None) -> PublishedMeta:
        cfg = pretrained_cfg(f"{entry.builder.split('.')[0]}.{tag}" if tag else entry.builder)
        params = sum(p.numel() for p in skeleton(entry.builder).parameters())
        url = f"https://huggingface.co/{cfg.hf_hub_id}" if cfg.hf_hub_id else (cfg.url or "")
        # "timm/<arch>.<tag>" (the list shows the tag), or "none": timm publishes no weights
        return PublishedMeta(weights=cfg.hf_hub_id or "none", url=url,
                             acc1=NAN, acc5=NAN, num_params=params, gflops=NAN,
                             file_size_mb=NAN, recipe=cfg.origin_url or "",
                             preprocessing=cfg_preprocessing(cfg))


SOURCE = TimmSource()
