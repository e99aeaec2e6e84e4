"""The errors a user can cause: reported as one line, exit code 2, no traceback.

``ValueError`` covers bad arguments, corrupt manifests and the Keras
builder's ``UnsupportedOpError`` (which names the op and node).
"""
from __future__ import annotations

import sys
from typing import Callable

from converters.tf_export import ConversionError
from zoo.registry import UnknownModelError
from zoo.exits import ExitCode, first_line
from zoo.weights import WeightsMismatchError, WeightsUnavailableError

USER_ERRORS: tuple[type[BaseException], ...] = (
    UnknownModelError, WeightsUnavailableError, WeightsMismatchError, ConversionError,
    FileNotFoundError, ValueError,
)


def reporting_user_errors(body: Callable[[], int]) -> int:
    """``body()``, with a user error printed as one ``error:`` line and exit code 2."""
    try:
        return body()
    except USER_ERRORS as exc:
        print(f"error: {first_line(exc, 1000)}", file=sys.stderr)
        return ExitCode.BAD_INPUT


def error_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (``Type`` alone when there is none): how a
    table row records an artifact that raised instead of producing numbers."""
    name = type(exc).__name__
    return f"{name}: {first_line(exc, limit)}" if str(exc).strip() else name
