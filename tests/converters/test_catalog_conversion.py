"""Every catalog model through every converter (slow: `make test-slow`)."""
from __future__ import annotations

import pytest

from converters.pipeline import ConvertOptions, convert_model
from zoo.registry import list_models


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_catalog_model_converts_and_agrees(name, tmp_path):
    manifest = convert_model(name, ConvertOptions(weights="random", out_root=tmp_path),
                             log=lambda s: None)
    assert len(manifest.artifacts) == 5
    for a in manifest.agreement:
        assert a["passed"], a
        if a["precision"] == "fp32":
            assert a["top1_agreement"] == 1.0
