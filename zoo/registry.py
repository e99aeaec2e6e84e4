"""The registry: explicit lookup of catalog entries by name.

It never imports ``zoo.catalog``: the catalog registers into it, and the ``zoo`` package
imports the catalog, so any ``from zoo.registry import ...`` sees every entry.
"""
from __future__ import annotations

import difflib
import fnmatch

from zoo.entry import ModelEntry

_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not in the catalog."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"duplicate catalog entry {entry.name!r}")
    _REGISTRY[entry.name] = entry
    return entry


def list_models(pattern: str = "*") -> list[str]:
    """Names in catalog order that match an fnmatch ``pattern``."""
    return [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint} (`python -m zoo list` shows all {len(_REGISTRY)})"
        ) from None

