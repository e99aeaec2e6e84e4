"""The model catalog: typed entries, weights resolution and preprocessing."""
from zoo.entry import ModelEntry, Preprocessing, PublishedMeta
from zoo.registry import UnknownModelError, get_entry, list_models

__all__ = ["ModelEntry", "Preprocessing", "PublishedMeta", "UnknownModelError", "get_entry",
           "list_models"]
