"""`make convert` acceptance through the CLI, in fresh processes."""
from __future__ import annotations

import json

from tests.conftest import run_cli


def test_convert_random_squeezenet(tmp_path):
    """The acceptance run, with a relative --out as a user types it; parity runs too."""
    proc = run_cli("converters", "convert", "squeezenet1_0", "--weights", "random",
                   "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "out" / "squeezenet1_0"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {p.name for p in (folder / "parity").iterdir()} >= {"parity.csv", "parity.png",
                                                               "pytorch_vs_onnx.json"}
    assert "per-layer parity" in proc.stdout
    assert len(manifest["artifacts"]) == 5
    for a in manifest["agreement"]:
        if a["precision"] == "fp32":
            assert a["max_abs_err"] <= 1e-4 and a["top1_agreement"] == 1.0, a
    assert "random weights" in proc.stdout and "pass" in proc.stdout
    # parity alone, in a process where nothing has loaded TensorFlow yet: still quiet
    proc = run_cli("converters", "parity", "squeezenet1_0", "--weights", "random",
                   "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not any(k in proc.stderr for k in ("absl", "I0000", "cuInit", "oneDNN")), proc.stderr


def test_missing_weights_offline_fails_cleanly(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("converters", "convert", "squeezenet1_0", "--out", str(out),
                   env={"TORCH_HOME": str(tmp_path / "hub"), "MODELZOO_OFFLINE": "1"})
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "squeezenet1_0" in lines[0] and "WEIGHTS=random" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_unknown_model_lists_close_names(tmp_path):
    proc = run_cli("converters", "convert", "nosuchnet", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown model 'nosuchnet'" in proc.stderr and "did you mean" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_every_format_sees_a_cat(tmp_path):
    """mobilenet_v2, real ImageNet weights from the offline package."""
    proc = run_cli("converters", "demo", "--out", str(tmp_path),
                   env={"TORCH_HOME": str(tmp_path / "hub"), "MODELZOO_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cat_lines = [ln for ln in proc.stdout.splitlines() if ln.strip().endswith("cat")]
    assert len(cat_lines) == 6  # pytorch + 5 artifacts
    manifest = json.loads((tmp_path / "mobilenet_v2" / "manifest.json").read_text())
    assert manifest["weights"]["pretrained"] and "IMAGENET1K_V1" in manifest["weights"]["label"]
