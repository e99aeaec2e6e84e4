"""Published metadata read from torchvision's weights enums (no download)."""
from __future__ import annotations

from functools import lru_cache

from zoo.entry import ModelEntry, Preprocessing, PublishedMeta


def weights_member(entry: ModelEntry, tag: str | None = None):
    """The torchvision ``WeightsEnum`` member for ``tag`` (default: the entry's)."""
    import torchvision.models as tvm

    enum = getattr(tvm, entry.weights_enum)
    tag = tag or entry.default_weights
    try:
        return enum[tag]
    except KeyError:
        raise ValueError(
            f"{entry.name}: no weights {tag!r}; torchvision has {', '.join(enum.__members__)}"
        ) from None


@lru_cache(maxsize=None)
def published_meta(entry: ModelEntry, tag: str | None = None) -> PublishedMeta:
    w = weights_member(entry, tag)
    t = w.transforms()
    metrics = w.meta["_metrics"]["ImageNet-1K"]
    return PublishedMeta(
        weights=f"{entry.weights_enum}.{w.name}",
        url=w.url,
        acc1=float(metrics["acc@1"]),
        acc5=float(metrics["acc@5"]),
        num_params=int(w.meta["num_params"]),
        gflops=float(w.meta["_ops"]),
        file_size_mb=float(w.meta["_file_size"]),
        recipe=str(w.meta.get("recipe", "")),
        preprocessing=Preprocessing(
            resize_size=int(t.resize_size[0]),
            crop_size=int(t.crop_size[0]),
            mean=tuple(float(x) for x in t.mean),
            std=tuple(float(x) for x in t.std),
            interpolation=t.interpolation.value,
        ),
    )


def input_shape(entry: ModelEntry, batch: int = 1) -> tuple[int, int, int, int]:
    """NCHW input shape the entry's weights were evaluated at."""
    size = published_meta(entry).preprocessing.crop_size
    return (batch, 3, size, size)
