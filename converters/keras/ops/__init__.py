"""ONNX op handlers and build-time folders, registered by ``@register``/``@folds`` in each module.

``HANDLERS`` (op -> handler building Keras layers), ``FOLDERS`` (op ->
build-time evaluation) and ``SUPPORTED_OPS`` are views of that one registry.
"""
from __future__ import annotations

from converters.keras.ops import (attention, elementwise, fold, fold_math, nn, pool,  # noqa: F401
                                  reduce, reshape, resize, select, tensor)
from converters.keras.ops.registry import FoldFn, Handler, OpEntry, entries

ENTRIES: dict[str, OpEntry] = entries()
HANDLERS: dict[str, Handler] = {op: e.handler for op, e in ENTRIES.items() if e.handler}
FOLDERS: dict[str, FoldFn] = {op: e.folder for op, e in ENTRIES.items() if e.folder}
SUPPORTED_OPS: tuple[str, ...] = tuple(ENTRIES)

__all__ = ["ENTRIES", "FOLDERS", "HANDLERS", "SUPPORTED_OPS", "FoldFn", "Handler", "OpEntry"]
