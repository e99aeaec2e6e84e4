"""Every catalog model through every converter (slow: `make test-slow`)."""
from __future__ import annotations

import pytest

from converters.pipeline import ConvertOptions, convert_model
from zoo.registry import get_entry, list_models


def _case(name: str):
    entry = get_entry(name)
    if entry.converts_to_tf:
        return name
    # strict: once the model reaches TF (onnx2tf or the Keras export), the flag must go
    return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=entry.notes))


@pytest.mark.slow
@pytest.mark.parametrize("name", [_case(n) for n in list_models()])
def test_catalog_model_converts_and_agrees(name, tmp_path):
    manifest = convert_model(name, ConvertOptions(weights="random", out_root=tmp_path),
                             log=lambda s: None)
    assert len(manifest.artifacts) == 5
    for a in manifest.agreement:
        assert a.passed, a
        if a.precision == "fp32":
            assert a.top1_agreement == 1.0
