from __future__ import annotations

import pytest

from zoo.entry import ModelEntry
from zoo.registry import UnknownModelError, get_entry, register


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError) as err:
        get_entry("resnet19")
    msg = str(err.value)
    assert "resnet19" in msg and "resnet18" in msg and "\n" not in msg


def test_duplicate_registration_raises():
    entry = get_entry("resnet18")
    with pytest.raises(ValueError, match="duplicate"):
        register(ModelEntry(**{**entry.__dict__}))
