"""One registry of ONNX op handlers, filled by ``@register`` in each ops module.

A handler builds Keras layers for a node whose inputs include model tensors;
a folder evaluates a node whose inputs are all known at build time (shape
arithmetic, index tables, constants). An op is supported when it has either;
the README's op list is rendered from these entries, never typed by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from converters.keras.context import BuildContext
    from converters.keras.graph import Node
    from converters.keras.layout import Const

Handler = Callable[["BuildContext", "Node"], None]
# Returns None when the value cannot be known at build time (an Expand to the
# batch size): the node then goes to the op's handler.
FoldFn = Callable[["Node", "list[Const | None]"], "Const | None"]


@dataclass(frozen=True)
class OpEntry:
    """How the builder expresses one ONNX op; ``note`` qualifies it in the README list."""

    op: str
    handler: Handler | None = None
    folder: FoldFn | None = None
    note: str = ""

    @property
    def build_time_only(self) -> bool:
        return self.handler is None


_ENTRIES: dict[str, OpEntry] = {}


def _merge(op: str, *, handler: Handler | None = None, folder: FoldFn | None = None,
           note: str = "") -> None:
    old = _ENTRIES.get(op, OpEntry(op))
    if (handler and old.handler) or (folder and old.folder):
        raise ValueError(f"ONNX op {op!r} registered twice")
    _ENTRIES[op] = OpEntry(op, handler or old.handler, folder or old.folder, note or old.note)


def register(*ops: str, note: str = "") -> Callable[[Handler], Handler]:
    """Decorate a handler building the Keras layers for ``ops``."""
    def decorate(fn: Handler) -> Handler:
        for op in ops:
            _merge(op, handler=fn, note=note)
        return fn
    return decorate


def folds(*ops: str, note: str = "") -> Callable[[FoldFn], FoldFn]:
    """Decorate a function evaluating ``ops`` on values known at build time."""
    def decorate(fn: FoldFn) -> FoldFn:
        for op in ops:
            _merge(op, folder=fn, note=note)
        return fn
    return decorate


def entries() -> dict[str, OpEntry]:
    """Every registered op, sorted by name."""
    return dict(sorted(_ENTRIES.items()))
