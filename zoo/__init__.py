"""The model catalog: typed entries, weights resolution and preprocessing.

Importing the package fills the registry: ``zoo.catalog`` registers its entries through
``zoo.registry``, which never imports the catalog back (timm's ``models/__init__.py``
does the same), so there is no import cycle and no lazy loader to forget.
"""
from zoo import catalog as _catalog  # noqa: F401  (registers the catalog's entries)
from zoo.entry import ModelEntry, Preprocessing, PublishedMeta, imagenet_preprocessing
from zoo.registry import UnknownModelError, get_entry, list_models

__all__ = ["ModelEntry", "Preprocessing", "PublishedMeta", "UnknownModelError", "get_entry",
           "imagenet_preprocessing", "list_models"]
