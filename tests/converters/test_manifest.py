"""Atomic artifact folders and manifest round trips."""
from __future__ import annotations

import json

import pytest

from converters.manifest import (ArtifactRecord, Manifest, file_digest, load_manifest,
                                 staged_folder)


def test_staged_folder_replaces_only_on_success(tmp_path):
    final = tmp_path / "model"
    with staged_folder(final) as stage:
        (stage / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with staged_folder(final) as stage:
            (stage / "a.txt").write_text("two")
            raise RuntimeError("conversion failed half way")
    assert (final / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_failed_first_conversion_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with staged_folder(tmp_path / "model") as stage:
            (stage / "model.onnx").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_manifest_round_trip_and_corruption(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"abc")
    size, digest = file_digest(tmp_path / "f.bin")
    assert size == 3 and digest.startswith("ba7816bf")  # sha256("abc")
    m = Manifest("m", {"label": "random weights (seed 0)"}, {"shape": [-1, 3, 8, 8]},
                 [ArtifactRecord("onnx", "f.bin", "NCHW", "fp32", None, size, digest)])
    m.write(tmp_path)
    back = load_manifest(tmp_path)
    assert back.artifact("onnx").sha256 == digest and back.versions["torch"] != "not installed"
    (tmp_path / "manifest.json").write_text("{ truncated")
    with pytest.raises(ValueError, match="corrupt"):
        load_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="make convert"):
        load_manifest(tmp_path / "absent")
    assert json.loads(json.dumps(m.to_json()))["model"] == "m"
