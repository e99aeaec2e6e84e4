"""Published metadata, read through the entry's source (no download)."""
from __future__ import annotations

import dataclasses
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
    """The source's published meta; an entry's own ``preprocessing`` wins over the source's."""
    from zoo.sources import source_of

    meta = source_of(entry).published_meta(entry, tag)
    if entry.preprocessing is not None:
        meta = dataclasses.replace(meta, preprocessing=entry.preprocessing)
    return meta


def preprocessing_of(entry: ModelEntry) -> Preprocessing:
    return entry.preprocessing or published_meta(entry).preprocessing


def input_shape(entry: ModelEntry, batch: int = 1) -> tuple[int, int, int, int]:
    """NCHW input shape the entry's weights were evaluated at."""
    size = preprocessing_of(entry).crop_size
    return (batch, 3, size, size)
