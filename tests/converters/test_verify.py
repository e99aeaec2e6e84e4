"""Artifacts are verified against their manifest before reuse; a damaged one is named, then
reconverted or refused (``--on-damaged``)."""
from __future__ import annotations

import json
import shutil

import pytest

from converters.manifest import file_digest, load_manifest, verify_artifacts
from converters.pipeline import check_existing, is_complete
from tests.conftest import run_cli

MODEL = "squeezenet1_1"


@pytest.fixture
def out_root(converted, tmp_path):
    """A copy of the converted model under ``tmp_path/out`` (times kept: the fast path holds)."""
    folder, _ = converted
    shutil.copytree(folder, tmp_path / "out" / MODEL)
    return tmp_path / "out"


def corrupt_middle(path, n: int = 64) -> None:
    """Overwrite ``n`` bytes in the middle of a file in place (its size stays the same)."""
    with path.open("r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        fh.write(b"\xff" * n)


def test_fresh_conversion_verifies_on_the_fast_path(converted, monkeypatch):
    import converters.manifest as m

    folder, _ = converted
    manifest = load_manifest(folder)
    assert {f.path for f in manifest.side_files} == {"tf_tensor_map.json",
                                                     f"{MODEL}.layers.json"}
    assert all(a.mtime_ns for a in manifest.artifacts)
    monkeypatch.setattr(m, "file_digest", lambda p: pytest.fail(f"hashed {p}: no fast path"))
    assert verify_artifacts(folder, manifest) == []
    assert is_complete(folder, manifest.weights.spec)


def test_corrupted_onnx_is_named_and_not_reused(out_root):
    folder = out_root / MODEL
    spec = load_manifest(folder).weights.spec
    corrupt_middle(folder / f"{MODEL}.onnx")
    (damage,) = verify_artifacts(folder, load_manifest(folder))
    assert (damage.format, damage.path, damage.kind) == ("onnx", folder / f"{MODEL}.onnx",
                                                         "sha256 differs")
    existing = check_existing(folder, spec)
    assert existing.complete and existing.damage == [damage] and not existing.reusable
    assert not is_complete(folder, spec)
    (folder / "tf_tensor_map.json").unlink()  # a side file parity needs
    assert [d.path.name for d in check_existing(folder, spec).damage] == [
        f"{MODEL}.onnx", "tf_tensor_map.json"]
    (folder / "manifest.json").write_text('{"model": "squeezenet1_1", "weig')  # truncated
    (damage,) = check_existing(folder, spec).damage
    assert str(damage) == f"{folder / 'manifest.json'} is damaged (not a readable manifest)"


def test_random_weights_of_an_older_recipe_are_converted_again_not_rebuilt(out_root):
    from converters.parity.run import _rebuild

    folder = out_root / MODEL
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    del data["weights"]["recipe"]  # as manifests from before the recipe was recorded
    path.write_text(json.dumps(data))
    manifest = load_manifest(folder)
    existing = check_existing(folder, manifest.weights.spec)
    assert not existing.complete and not existing.damage
    with pytest.raises(ValueError, match=f"^{MODEL}: its artifacts hold random weights with BN "
                       "statistics from one batch of noise; this version sets them from 8 "
                       r"scikit-image photos \+ 8 seeded N\(0,1\) images: convert again$"):
        _rebuild(manifest)


def test_a_tflite_fp16_file_from_before_its_weights_were_checked_is_converted_again(
        converted, out_root):
    folder = out_root / MODEL
    spec = load_manifest(folder).weights.spec
    assert load_manifest(folder).artifact("tflite_fp16").fp32_kept == []  # checked, none kept
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    for record in data["artifacts"]:
        record.pop("fp32_kept", None)  # as manifests from before the check
    path.write_text(json.dumps(data))
    existing = check_existing(folder, spec)
    assert not existing.complete and not existing.damage


def test_parity_cli_refuses_a_damaged_artifact(out_root):
    onnx_path = out_root / MODEL / f"{MODEL}.onnx"
    corrupt_middle(onnx_path)
    before = onnx_path.read_bytes()
    proc = run_cli("converters", "parity", MODEL, "--weights", "random", "--out", "out",
                   "--on-damaged", "refuse", cwd=out_root.parent)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, lines
    assert lines[0].startswith(f"error: out/{MODEL}/{MODEL}.onnx is damaged (sha256 differs "
                               "from manifest)")
    assert "--on-damaged reconvert" in lines[0] and f"converters convert {MODEL}" in lines[0]
    assert onnx_path.read_bytes() == before and not (out_root / MODEL / "parity").exists()


def test_parity_cli_reconverts_a_damaged_artifact(out_root):
    onnx_path = out_root / MODEL / f"{MODEL}.onnx"
    corrupt_middle(onnx_path)
    proc = run_cli("converters", "parity", MODEL, "--weights", "random", "--out", "out",
                   cwd=out_root.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (f"out/{MODEL}/{MODEL}.onnx is damaged (sha256 differs from manifest): reconverting"
            in proc.stderr.splitlines())
    manifest = load_manifest(out_root / MODEL)
    assert file_digest(onnx_path) == (manifest.artifact("onnx").size_bytes,
                                      manifest.artifact("onnx").sha256)
    assert verify_artifacts(out_root / MODEL, manifest, full=True) == []
    assert (out_root / MODEL / "parity" / "pytorch_vs_onnx.json").is_file()
    assert "non-finite" not in proc.stdout


def test_refuse_means_refuse_when_the_manifest_is_gone(out_root):
    """A folder of files whose manifest.json was deleted is not "never converted": with
    ``--on-damaged refuse`` it is named and left as it was (it was once converted over)."""
    folder = out_root / MODEL
    (folder / "manifest.json").unlink()
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    proc = run_cli("converters", "parity", MODEL, "--weights", "random", "--out", "out",
                   "--on-damaged", "refuse", cwd=out_root.parent)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, lines
    assert lines[0].startswith(f"error: out/{MODEL}/manifest.json is missing (the folder "
                               "holds"), lines
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before


def test_a_rewrite_that_keeps_size_and_mtime_is_caught_by_full_verification(out_root):
    """``--verify full`` (parity's default): every sha256, so a flipped byte whose size and
    mtime were restored is damage, not a converter failure."""
    import os

    onnx_path = out_root / MODEL / f"{MODEL}.onnx"
    st = onnx_path.stat()
    corrupt_middle(onnx_path)
    os.utime(onnx_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    manifest = load_manifest(out_root / MODEL)
    assert verify_artifacts(out_root / MODEL, manifest) == []  # the fast path trusts it
    (damage,) = verify_artifacts(out_root / MODEL, manifest, full=True)
    assert damage.kind == "sha256 differs"
    proc = run_cli("converters", "parity", MODEL, "--weights", "random", "--out", "out",
                   "--on-damaged", "refuse", cwd=out_root.parent)
    assert proc.returncode == 2 and "sha256 differs" in proc.stderr, proc.stderr[-2000:]
