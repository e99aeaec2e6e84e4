"""Models over protobuf's and TFLite's 2 GB: ONNX with external data (checked by path),
SavedModel and Keras as usual, TFLite refused for itself alone (exit 3).

The fast test lowers both limits to nothing, so a tiny model takes every large-model
path; the slow one converts a real 604M-parameter model (2.4 GB of weights).
"""
from __future__ import annotations

import pytest

from converters.__main__ import main
from converters.manifest import load_manifest
from converters.onnx_io import data_path, external_files
from tests.conftest import run_cli

TINY = "tests/fixtures/user_model.py:tiny_net"


def test_weights_past_the_limits_go_external_and_tflite_is_refused(tmp_path, monkeypatch,
                                                                     capsys):
    import converters.onnx_io as onnx_io
    import converters.tf_step as tf_step

    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_ABOVE", 0)
    monkeypatch.setattr(tf_step, "TFLITE_MAX_BYTES", 0)
    assert main(["convert", TINY, "--out", str(tmp_path), "--input-size", "32"]) == 3
    out = capsys.readouterr()
    folder = tmp_path / "user_model-tiny_net"
    onnx = folder / "user_model-tiny_net.onnx"
    assert external_files(onnx) == [data_path(onnx)]  # one data file beside it
    onnx_io.check_onnx(onnx)
    manifest = load_manifest(folder)
    assert {a.format for a in manifest.artifacts} == {"onnx", "tf_savedmodel", "keras"}
    assert data_path(onnx).name in {f.path for f in manifest.side_files}  # verified too
    assert all(a.passed for a in manifest.agreement), manifest.agreement
    (note,) = [n for n in manifest.notes if n.startswith("TFLite not made")]
    assert "over TFLite's 2 GB FlatBuffer limit" in note
    assert not list(folder.glob("*.tflite")) and not (folder / "onnx2tf.log").exists()
    errors = [ln for ln in out.err.splitlines() if ln.startswith("error:")]
    assert errors == ["error: user_model-tiny_net: not made: tflite_fp32, tflite_fp16 (the "
                      "notes say why)"]
    pairs = {(r["pair"], r["result"]) for r in _parity_rows(folder)}
    assert pairs == {("pytorch→onnx", "pass"), ("onnx→tf_savedmodel", "pass"),
                     ("onnx→keras", "pass")}, pairs
    # a second parity run reuses the folder: the refused formats are not missing
    assert main(["parity", TINY, "--out", str(tmp_path), "--input-size", "32"]) == 0
    assert "ONNX export" not in capsys.readouterr().err  # nothing converted again


def _parity_rows(folder) -> list[dict]:
    import csv

    rows = list(csv.DictReader((folder / "parity" / "parity.csv").open()))
    results: dict[str, bool] = {}
    for r in rows:
        pair = f"{r['reference']}→{r['test']}"
        results[pair] = results.get(pair, True) and r["passed"] == "True"
    return [{"pair": p, "result": "pass" if ok else "FAIL"} for p, ok in results.items()]


@pytest.mark.slow
def test_a_604m_parameter_model_converts_with_its_onnx_weights_outside(tmp_path):
    """2.4 GB of weights: the export once died in onnx.checker (EncodeError, exit 1)."""
    proc = run_cli("converters", "convert", "tests/fixtures/user_model.py:huge_net",
                   "--input-size", "32", "--no-parity", "--out", str(tmp_path), timeout=1800)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    folder = tmp_path / "user_model-huge_net"
    manifest = load_manifest(folder)
    assert {a.format for a in manifest.artifacts} == {"onnx", "tf_savedmodel", "keras"}
    assert all(a.passed for a in manifest.agreement), manifest.agreement
    assert data_path(folder / "user_model-huge_net.onnx").stat().st_size > 2**31


def test_parity_that_cannot_fit_in_memory_is_refused_up_front():
    from converters.parity.budget import ParityMemoryError, require_memory

    require_memory("small", 10**9, available=11 * 10**9)  # fits: nothing said
    with pytest.raises(ParityMemoryError, match=r"needs at least 24.2 GB \(10 copies of its "
                                                r"2.42 GB of weights\) and 21.0 GB is available"):
        require_memory("huge", 2_420_000_000, available=21 * 10**9)
