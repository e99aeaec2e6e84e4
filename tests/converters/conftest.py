from __future__ import annotations

import pytest

from converters.pipeline import ConvertOptions, convert_model


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """squeezenet1_1 with random weights, converted to every format once per session."""
    root = tmp_path_factory.mktemp("artifacts")
    manifest = convert_model("squeezenet1_1", ConvertOptions(weights="random", out_root=root),
                             log=lambda s: None)
    return root / "squeezenet1_1", manifest
