"""The registry: explicit lookup of catalog entries by name.

It never imports ``zoo.catalog``: the catalog registers into it, and the ``zoo`` package
imports the catalog, so any ``from zoo.registry import ...`` sees every entry.

Three scopes of names: the curated catalog (``list_models()``, the default set of
catalog-wide runs, known without importing torch); every torchvision classifier
(``list_models(everything=True)``, derived on first use by ``zoo.sources.torchvision``);
and prefixed names a source resolves on demand (``timm/<name>``). ``get_entry`` accepts all.
"""
from __future__ import annotations

import difflib
import fnmatch

from zoo.entry import ModelEntry
from zoo.exits import UserError

_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(UserError, KeyError):
    """Raised for a model name that is not in the catalog."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"duplicate catalog entry {entry.name!r}")
    _REGISTRY[entry.name] = entry
    return entry


def curated_names() -> list[str]:
    return list(_REGISTRY)


def all_names() -> list[str]:
    """The curated catalog, then every other torchvision classifier (imports torchvision)."""
    from zoo.sources.torchvision import classifier_names

    return list(_REGISTRY) + [n for n in classifier_names() if n not in _REGISTRY]


def list_models(pattern: str = "*", *, everything: bool = False) -> list[str]:
    """Names that match an fnmatch ``pattern``: the curated catalog, in catalog order, or with
    ``everything`` every torchvision classifier too. ``timm/PATTERN`` lists timm's models."""
    for prefix, source in _prefixed(pattern):
        from zoo.sources import get_source

        return [prefix + n for n in get_source(source).list_names(pattern[len(prefix):])]
    names = all_names() if everything else list(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def _prefixed(name: str) -> list[tuple[str, str]]:
    from zoo.sources import PREFIXES

    return [(p, s) for p, s in PREFIXES.items() if name.startswith(p)][:1]


def get_entry(name: str) -> ModelEntry:
    """The curated entry, a derived torchvision classifier, or a prefixed source's model."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    from zoo.sources import get_source

    for prefix, source in _prefixed(name):
        return get_source(source).resolve(name[len(prefix):])
    from zoo.sources.torchvision import derive_entry

    try:
        return derive_entry(name)
    except KeyError:
        names = all_names()
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}{hint} (`python -m zoo list --all` shows all {len(names)}; "
        f"timm models as timm/<name>; your own as path/to/file.py:factory)") from None
