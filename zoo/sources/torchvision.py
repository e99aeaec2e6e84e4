"""torchvision as a model source: every ImageNet classifier of ``torchvision.models``.

Entries are derived, lazily and once per name, from ``torchvision.models.list_models`` and
each builder's weights enum (``DEFAULT`` weights: transforms, meta); the feature layer is
the input of the head (``zoo.heads.find_head``), read from a model built without
allocating weights. ``zoo.catalog`` keeps 16 of them hand-written, as the default set.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from zoo.entry import ModelEntry, Preprocessing, PublishedMeta

if TYPE_CHECKING:
    import torch

    from zoo.entry import WeightsSource

NAME = "torchvision"
# What the builder itself sets when it loads these weights (torchvision's
# ``_ovewrite_named_param``), so random and state-dict models get the same graph.
WEIGHTS_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": True},
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": True},
}
# Modules the pretrained build drops after loading (torchvision does so when the caller did
# not ask for aux_logits): the published num_params counts the model without them.
DROPPED_AFTER_LOAD: dict[str, tuple[str, ...]] = {"googlenet": ("aux1", "aux2")}


@lru_cache(maxsize=1)
def classifier_names() -> tuple[str, ...]:
    """Every ImageNet classifier builder in ``torchvision.models`` (not detection, video...)."""
    import torchvision.models as tvm

    return tuple(tvm.list_models(module=tvm))


def builder_kwargs(name: str, weights: Any) -> dict[str, Any]:
    """Keyword arguments that build ``name`` as ``weights`` were trained."""
    kwargs = dict(WEIGHTS_KWARGS.get(name, {}))
    min_size = weights.meta.get("min_size", (0, 0))[0]
    if name.startswith("vit_") and min_size > 224:  # SWAG ViT: position embedding of 518 px
        kwargs["image_size"] = min_size
    return kwargs


@lru_cache(maxsize=None)
def derive_entry(name: str) -> ModelEntry:
    """The entry of torchvision classifier ``name`` (KeyError if there is none)."""
    import torchvision.models as tvm

    from zoo.heads import empty_init, find_head, head_width

    if name not in classifier_names():
        raise KeyError(name)
    enum = tvm.get_model_weights(name)
    weights = enum.DEFAULT
    kwargs = builder_kwargs(name, weights)
    with empty_init():
        model = tvm.get_model(name, weights=None, **kwargs)
    head, layer = find_head(model)
    dim, classes = head_width(layer)
    family = tvm.get_model_builder(name).__module__.rsplit(".", 1)[-1]
    return ModelEntry(name, family, name, enum.__name__, weights.name, feature_layer=head,
                      feature_dim=dim, builder_kwargs=kwargs, num_classes=classes,
                      feature_at="input")


class TorchvisionSource:
    name = NAME

    def build(self, entry: ModelEntry) -> "torch.nn.Module":
        import torchvision.models as tvm

        return tvm.get_model(entry.builder, weights=None, **entry.builder_kwargs)

    def finish(self, entry: ModelEntry, model: "torch.nn.Module") -> "torch.nn.Module":
        dropped = DROPPED_AFTER_LOAD.get(entry.builder, ())
        for attr in dropped:
            setattr(model, attr, None)
        if dropped:
            model.aux_logits = False
        return model

    def pretrained(self, entry: ModelEntry, tag: str | None
                   ) -> tuple["torch.nn.Module", "WeightsSource"]:
        from zoo.weights import load_imagenet_state, load_strict

        state, source = load_imagenet_state(entry, tag)
        return load_strict(entry, self.build(entry), state, source), source

    def available_offline(self, entry: ModelEntry) -> bool:
        from zoo.weights import torchvision_file_offline

        return torchvision_file_offline(self.published_meta(entry, None).file_name)

    def published_meta(self, entry: ModelEntry, tag: str | None) -> PublishedMeta:
        from zoo.meta import weights_member

        w = weights_member(entry, tag)
        t = w.transforms()
        metrics = w.meta["_metrics"]["ImageNet-1K"]
        return PublishedMeta(
            weights=f"{entry.weights_enum}.{w.name}", url=w.url,
            acc1=float(metrics["acc@1"]), acc5=float(metrics["acc@5"]),
            num_params=int(w.meta["num_params"]), gflops=float(w.meta["_ops"]),
            file_size_mb=float(w.meta["_file_size"]), recipe=str(w.meta.get("recipe", "")),
            preprocessing=Preprocessing(
                resize_size=int(t.resize_size[0]), crop_size=int(t.crop_size[0]),
                mean=tuple(float(x) for x in t.mean), std=tuple(float(x) for x in t.std),
                interpolation=t.interpolation.value))


SOURCE = TorchvisionSource()
