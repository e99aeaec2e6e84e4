"""The errors a user can cause: reported as one line, exit code 2, no traceback.

``ValueError`` covers bad arguments, corrupt manifests and the Keras
builder's ``UnsupportedOpError`` (which names the op and node).
"""
from __future__ import annotations

from converters.tf_export import ConversionError
from zoo.registry import UnknownModelError
from zoo.weights import WeightsMismatchError, WeightsUnavailableError

USER_ERRORS: tuple[type[BaseException], ...] = (
    UnknownModelError, WeightsUnavailableError, WeightsMismatchError, ConversionError,
    FileNotFoundError, ValueError,
)
