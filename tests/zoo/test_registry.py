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


def test_the_registry_alone_sees_the_whole_catalog():
    """Importing the registry (never the catalog by name) is enough: the package imports the
    catalog, which registers into the registry; no lazy loader, no import cycle."""
    import subprocess
    import sys

    code = ("import sys; from zoo.registry import list_models; "
            "print(len(list_models()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    from zoo.registry import list_models

    assert out == [str(len(list_models())), "False"]  # and the catalog imports no torch
