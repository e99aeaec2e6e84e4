"""How a failed artifact or step is recorded in a table row: ``Type: first line``.

The errors a user causes are one ``error:`` line and exit 2 through ``zoo.exits.exit_for``
(every command runs under it): ``ConversionError`` and ``UnknownModelError`` derive from
``zoo.exits.UserError``; ``ValueError`` covers bad arguments, corrupt manifests and the
Keras builder's ``UnsupportedOpError`` (which names the op and node).
"""
from __future__ import annotations

from zoo.exits import first_line


def error_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (``Type`` alone when there is none): how a
    table row records an artifact that raised instead of producing numbers."""
    name = type(exc).__name__
    return f"{name}: {first_line(exc, limit)}" if str(exc).strip() else name
