"""Atomic artifact folders and manifest round trips."""
from __future__ import annotations

import json

import pytest

from converters.agreement import Agreement
from converters.manifest import (ArtifactRecord, Manifest, file_digest, load_manifest,
                                 staged_folder)
from zoo.weights import WeightsSource

RANDOM = WeightsSource("random", "random weights (seed 0)", "", False, 0)


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
    m = Manifest("m", RANDOM, {"shape": [-1, 3, 8, 8]},
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


def test_manifest_written_with_plain_dicts_loads_typed_and_writes_back_the_same(tmp_path):
    """Manifests from before the typed fields: weights and agreement rows were dicts."""
    old = {"model": "m", "input_spec": {},
           "weights": {"kind": "random", "label": "random weights (seed 3)", "location": "",
                       "pretrained": False, "seed": 3, "spec": "random:3"},
           "agreement": [{"artifact": "tflite_fp16", "precision": "fp16", "n_images": 16,
                          "max_abs_err": None, "mean_abs_err": None, "ref_max_abs": None,
                          "torch_fp32_vs_fp64": 1e-6, "top1_agreement": 0.0, "tolerance": None,
                          "passed": False, "error": "non-finite output (3 NaN, 0 Inf)"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    m = load_manifest(tmp_path)
    assert m.weights == WeightsSource("random", "random weights (seed 3)", "", False, 3)
    assert m.weights.spec == "random:3"
    (row,) = m.agreement
    assert isinstance(row, Agreement) and not row.passed and row.max_abs_err != row.max_abs_err
    data = m.to_json()
    assert data["weights"] == dict(old["weights"], recipe="")  # no recipe: an older one
    # the same row, saying it was not measured against PyTorch's fp64 run (null)
    assert data["agreement"] == [dict(old["agreement"][0], max_abs_err_exact=None,
                                      rounding_floor=None, n_decided=None, top1_decided=None)]
    assert json.dumps(data, allow_nan=False)  # NaN statistics are written as null again


def _folder_with_artifacts(tmp_path):
    """An artifact folder of small real files: a file artifact, a folder artifact, a side file."""
    from converters.manifest import FileRecord, file_record

    (tmp_path / "m.onnx").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "saved_model" / "variables").mkdir(parents=True)
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"graph" * 100)
    (tmp_path / "saved_model" / "variables" / "v.data").write_bytes(b"\x01" * 300)
    (tmp_path / "tf_tensor_map.json").write_text("{}\n")
    records = []
    for fmt, name, layout in (("onnx", "m.onnx", "NCHW"), ("tf_savedmodel", "saved_model", "NHWC")):
        f = file_record(tmp_path, tmp_path / name)
        records.append(ArtifactRecord(fmt, f.path, layout, "fp32", None, f.size_bytes, f.sha256,
                                      f.mtime_ns))
    side = [file_record(tmp_path, tmp_path / "tf_tensor_map.json")]
    assert isinstance(side[0], FileRecord)
    manifest = Manifest("m", RANDOM, {}, records, side_files=side)
    manifest.write(tmp_path)
    return load_manifest(tmp_path)


def _overwrite_middle(path, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = b"\xff" * n
    path.write_bytes(bytes(data))  # same size: only the sha256 can tell


def _counting_digest(monkeypatch):
    import converters.manifest as m

    hashed = []
    real = m.file_digest
    monkeypatch.setattr(m, "file_digest", lambda p: hashed.append(p.name) or real(p))
    return hashed


def test_verify_trusts_size_and_mtime_else_hashes(tmp_path, monkeypatch):
    import os

    from converters.manifest import verify_artifacts

    manifest = _folder_with_artifacts(tmp_path)
    hashed = _counting_digest(monkeypatch)
    assert verify_artifacts(tmp_path, manifest) == [] and hashed == []  # the fast path
    # touched, same bytes: the mtime differs, so the full check runs and finds it intact
    st = (tmp_path / "m.onnx").stat()
    os.utime(tmp_path / "m.onnx", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert verify_artifacts(tmp_path, manifest) == [] and hashed == ["m.onnx"]
    assert verify_artifacts(tmp_path, manifest, full=True) == []
    assert sorted(hashed[1:]) == ["m.onnx", "saved_model", "tf_tensor_map.json"]


def test_verify_names_each_damaged_file(tmp_path):
    from converters.manifest import verify_artifacts

    manifest = _folder_with_artifacts(tmp_path)
    _overwrite_middle(tmp_path / "m.onnx")
    (tmp_path / "saved_model" / "variables" / "v.data").write_bytes(b"\x01" * 299)
    (tmp_path / "tf_tensor_map.json").unlink()
    damage = verify_artifacts(tmp_path, manifest)
    assert [(d.format, d.path.name, d.kind) for d in damage] == [
        ("onnx", "m.onnx", "sha256 differs"), ("tf_savedmodel", "saved_model", "size differs"),
        ("side file", "tf_tensor_map.json", "missing")]
    assert str(damage[0]) == f"{tmp_path / 'm.onnx'} is damaged (sha256 differs from manifest)"
    assert str(damage[1]).endswith("is damaged (size differs from manifest: 799 bytes, "
                                   "manifest says 800)")
    assert verify_artifacts(tmp_path, manifest, formats=("tf_savedmodel",), side_files=False
                            ) == damage[1:2]
    assert [d.path.name for d in verify_artifacts(tmp_path, Manifest("m", RANDOM, {}),
                                                  required=["x.layers.json"])] == ["x.layers.json"]


def test_manifest_without_mtimes_still_loads_and_is_fully_checked(tmp_path, monkeypatch):
    """A manifest written before mtimes and side files were recorded."""
    from converters.manifest import verify_artifacts

    manifest = _folder_with_artifacts(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["side_files"]
    for a in data["artifacts"]:
        del a["mtime_ns"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    old = load_manifest(tmp_path)
    assert old.artifact("onnx").mtime_ns is None and old.side_files == []
    hashed = _counting_digest(monkeypatch)
    assert verify_artifacts(tmp_path, old) == [] and sorted(hashed) == ["m.onnx", "saved_model"]
    _overwrite_middle(tmp_path / "m.onnx")
    assert [d.kind for d in verify_artifacts(tmp_path, old)] == ["sha256 differs"]
    assert manifest.artifact("onnx").mtime_ns is not None


def test_act_on_damage_refuses_in_one_line_or_logs_a_line_per_file(tmp_path):
    from converters.manifest import (Damage, DamagedArtifactsError, act_on_damage)

    damage = [Damage("onnx", tmp_path / "m.onnx", "sha256 differs"),
              Damage("keras", tmp_path / "m.keras", "missing", "listed in manifest.json")]
    with pytest.raises(DamagedArtifactsError) as info:
        act_on_damage(damage, "refuse", remedy="rerun with --on-damaged reconvert", log=print)
    text = str(info.value)
    assert "\n" not in text and "m.onnx is damaged (sha256 differs from manifest)" in text
    assert "m.keras is missing" in text and text.endswith("rerun with --on-damaged reconvert")
    lines: list[str] = []
    act_on_damage(damage, "reconvert", remedy="", log=lines.append)
    assert lines == [f"{tmp_path / 'm.onnx'} is damaged (sha256 differs from manifest): "
                     "reconverting",
                     f"{tmp_path / 'm.keras'} is missing (listed in manifest.json): reconverting"]
    act_on_damage([], "refuse", remedy="", log=lines.append)  # nothing damaged: nothing done
    assert len(lines) == 2
