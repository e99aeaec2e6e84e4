"""int8 artifacts: ONNX Runtime QDQ calibrated on real photos, recorded in the manifest,
held to their own agreement bars, and per-layer parity against fp32 that names layers."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from converters.calibration import calibration_set, image_files, imagenet_sample_dir

pytestmark = pytest.mark.skipif(not imagenet_sample_dir().is_dir(),
                                reason="needs the shared imagenet-sample photos")


def test_int8_artifact_records_its_calibration_in_the_manifest(int8_mobilenet):
    import onnx

    from converters.manifest import load_manifest, verify_artifacts

    root, calib = int8_mobilenet
    folder = root / "mobilenet_v2"
    manifest = load_manifest(folder)  # read back through the typed records
    art = manifest.artifact("onnx_int8")
    assert (art.precision, art.layout, art.path) == ("int8", "NCHW", "mobilenet_v2_int8.onnx")
    q = art.quantization
    assert q.calibration.sha256 == calibration_set(calib, image_files(calib)).sha256
    assert len(q.calibration.digests) == 4 and (q.method, q.per_channel) == ("minmax", True)
    assert not verify_artifacts(folder, manifest, full=True)
    ops = [n.op_type for n in onnx.load(str(folder / art.path)).graph.node]
    assert ops.count("DequantizeLinear") > 100 and ops.count("Conv") == 52
    row = next(a for a in manifest.agreement if a.artifact == "onnx_int8")
    assert row.precision == "int8" and row.passed, row
    assert 1e-3 < row.max_abs_err <= row.tolerance  # quantized, and within the int8 bar


def test_one_black_calibration_image_is_caught(int8_mobilenet, tmp_path):
    """Agreement fails under the int8 bars, and parity names the layers that went wrong."""
    from PIL import Image

    from converters.agreement import compare_logits
    from converters.parity.int8 import int8_parity
    from converters.quantize import QuantizeOptions, make_int8
    from zoo.data import sample_photos
    from zoo.meta import published_meta
    from zoo.preprocess import preprocess_images
    from zoo.registry import get_entry

    root, _ = int8_mobilenet
    black = tmp_path / "black"
    black.mkdir()
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(black / "black.png")
    onnx_path = Path(shutil.copy(root / "mobilenet_v2" / "mobilenet_v2.onnx", tmp_path))
    prep = published_meta(get_entry("mobilenet_v2")).preprocessing
    good = root / "mobilenet_v2" / "mobilenet_v2_int8.onnx"
    bad, _ = make_int8(onnx_path, prep, QuantizeOptions(method="minmax", calib=black))
    x = preprocess_images(sample_photos(16).images, prep)
    ref = _run(onnx_path, x)
    assert compare_logits("onnx_int8", "int8", _run(good, x), ref).passed
    verdict = compare_logits("onnx_int8", "int8", _run(bad, x), ref)
    assert not verdict.passed and verdict.top1_agreement < 0.5, verdict
    report = int8_parity(onnx_path, bad, x[:2])
    assert report.first_below is not None and not report.passed
    assert report.first_below.node.startswith("/features/")  # a layer, by its ONNX node name
    worst = report.ranked(3)
    assert len(worst) == 3 and all(lay.drop_db > 3 for lay in worst), report.summary()
    # the logits' SNR: a good calibration keeps ~13 dB, one black image ~3 dB
    good_logits = int8_parity(onnx_path, good, x[:2]).layers[-1].diff.snr_db
    assert good_logits > report.layers[-1].diff.snr_db + 5


def test_int8_parity_of_a_converted_model_writes_its_report(int8_mobilenet):
    import json

    from converters.parity.int8 import int8_parity_of

    root, _ = int8_mobilenet
    [report] = int8_parity_of(root / "mobilenet_v2")  # onnx_int8 only: no tflite_int8 here
    data = json.loads((root / "mobilenet_v2" / "parity" / "onnx_vs_onnx_int8.json").read_text())
    assert data["n_images"] == 4 and len(data["layers"]) == len(report.layers) > 60
    drops = [d["drop_db"] for d in data["largest_drops"]]
    assert len(drops) == 10 and drops == sorted(drops, reverse=True) and drops[0] > 1
    assert "largest SNR drops: /features/" in report.summary()


def _run(path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(path)).run(None, {"input": x})[0]


def test_precisions_choose_formats():
    from converters.precisions import formats_for, parse_precisions

    assert formats_for(("int8",)) == ("onnx", "tf_savedmodel", "onnx_int8", "tflite_int8",
                                       "tflite_int8_io")
    both = formats_for(parse_precisions("fp32,fp16,int8"))
    assert {"onnx", "tflite_fp32", "tflite_fp16", "keras", "onnx_int8", "tflite_int8"} <= set(both)
    assert "onnx_int8" not in formats_for(("fp32", "fp16"))
    with pytest.raises(ValueError, match="--precisions 'fp8'"):
        parse_precisions("fp8")


@pytest.mark.parametrize("calib", ["missing", "empty"])
def test_bad_calibration_folder_is_one_line_and_exit_2(tmp_path, capsys, calib):
    from bench.cli import main

    (tmp_path / "empty").mkdir()
    code = main(["convert", "squeezenet1_1", "--weights", "random", "--precisions",
                 "fp32,int8", "--calib", str(tmp_path / calib), "--out", str(tmp_path / "art")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: --calib {tmp_path / calib}")
    assert not (tmp_path / "art").exists()


@pytest.mark.slow
def test_automatic_mixed_precision_records_its_steps(int8_mobilenet, tmp_path):
    """--int8-target: float layers chosen by parity, every step measured and recorded, the
    best one shipped (here a target no int8 model reaches, with a 6-layer budget)."""
    from converters.calibration import Quantization
    from converters.quantize import QuantizeOptions, make_int8
    from zoo.meta import published_meta
    from zoo.registry import get_entry

    root, calib = int8_mobilenet
    onnx_path = Path(shutil.copy(root / "mobilenet_v2" / "mobilenet_v2.onnx", tmp_path))
    prep = published_meta(get_entry("mobilenet_v2")).preprocessing
    _, q = make_int8(onnx_path, prep, QuantizeOptions(method="minmax", calib=calib,
                                                      target=1.0, float_budget=6))
    assert len(q.fallback) >= 2 and q.fallback[0].float_layers == ()
    assert all(st.n_photos == 100 and 0 < st.agreement <= 1 for st in q.fallback)
    best = max(q.fallback, key=lambda st: (st.agreement, -len(st.float_layers)))
    assert q.keep_float == best.float_layers and len(q.fallback[-1].float_layers) <= 6
    assert all(name.startswith("/") for st in q.fallback for name in st.added)
    assert Quantization.from_json(q.to_json()) == q  # the manifest reads it back


def test_tflite_runner_quantizes_int8_inputs_and_dequantizes_outputs():
    from converters.runners.tflite_runner import _from_tensor, _to_tensor

    detail = {"dtype": np.int8, "quantization": (0.05, -3)}
    x = np.array([-10.0, -0.024, 0.0, 0.026, 1.0, 10.0], np.float32)
    q = _to_tensor(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [-128, -3, -3, -2, 17, 127]  # clipped ends
    assert np.allclose(_from_tensor(q, detail)[1:5], [0.0, 0.0, 0.05, 1.0])
    assert _to_tensor(x, {"dtype": np.float32, "quantization": (0.0, 0)}) is x


@pytest.mark.slow
def test_tflite_full_integer_int8_from_the_savedmodel(tmp_path):
    """Both variants convert, run from float photos, and agree with the fp32 SavedModel."""
    from converters.pipeline import ConvertOptions, convert_model

    m = convert_model("mobilenet_v2", ConvertOptions(
        weights="imagenet", out_root=tmp_path, formats=("onnx", "tf_savedmodel", "tflite_int8",
                                                        "tflite_int8_io")), log=lambda s: None)
    rows = {a.artifact: a for a in m.agreement}
    for fmt in ("tflite_int8", "tflite_int8_io"):
        assert m.artifact(fmt).quantization.calibration.sha256 == \
            m.artifact("tflite_int8").quantization.calibration.sha256
        assert rows[fmt].passed and rows[fmt].top1_agreement >= 0.75, rows[fmt]


@pytest.mark.parametrize("features,machine,safe", [
    (("avx2",), "x86_64", False),  # VPMADDUBSW: int16 pairs, 8-bit weights saturate
    (("avx512",), "x86_64", False),
    (("avx512", "vnni", "bf16"), "x86_64", True),  # VPDPBUSD: int32
    (("avx2", "avx-vnni"), "AMD64", True),
    (("neon", "dotprod"), "aarch64", True),
    ((), "arm64", True),
])
def test_weight_bits_follow_the_cpu_int8_kernels(features, machine, safe):
    from converters.quantize import full_range_safe

    assert full_range_safe(features, machine) is safe


@pytest.mark.parametrize("bits,reduce", [("auto", None), ("7", True), ("8", False)])
def test_int8_weight_bits_option(bits, reduce):
    import argparse

    from converters.precisions import add_precision_arguments, quantize_options
    from converters.quantize import QuantizeOptions, full_range_safe
    from zoo.env import cpu_features

    parser = argparse.ArgumentParser()
    add_precision_arguments(parser)
    opts = quantize_options(parser.parse_args(["--int8-weight-bits", bits]))
    assert opts.reduce_range is reduce
    import platform

    auto = not full_range_safe(cpu_features(), platform.machine())
    assert opts.weights_7bit is (auto if reduce is None else reduce)
    assert QuantizeOptions(reduce_range=True).weights_7bit is True


def test_a_tflite_int8_that_cannot_be_made_leaves_the_rest_and_exits_3(tmp_path, capsys,
                                                                        monkeypatch):
    """TFLite int8 refused (an op with no int8 kernel, as convnext_tiny's LayerNorm/GELU
    tail): the other artifacts land, the note says why, the exit status says partial."""
    import converters.tflite_int8 as tflite_int8
    from bench.cli import main
    from converters.manifest import load_manifest

    def refuse(*args, **kwargs):
        raise ValueError("TFLite int8: 46 tensors stay float (no int8 kernel), first 'x'")

    monkeypatch.setattr(tflite_int8, "make_tflite_int8", refuse)
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in image_files(imagenet_sample_dir())[0:20:10]:
        shutil.copy(f, calib / f.name)
    code = main(["convert", "tests/fixtures/user_model.py:tiny_net", "--weights", "random",
                 "--precisions", "fp32,int8", "--calib", str(calib), "--no-parity",
                 "--out", str(tmp_path / "art")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "not made: tflite_int8, tflite_int8_io" in err
    [folder] = [p for p in (tmp_path / "art").iterdir() if (p / "manifest.json").is_file()]
    manifest = load_manifest(folder)
    assert {"onnx", "onnx_int8", "tf_savedmodel", "tflite_fp32"} <= {
        a.format for a in manifest.artifacts}
    assert not {"tflite_int8", "tflite_int8_io"} & {a.format for a in manifest.artifacts}
    assert any(n.startswith("TFLite int8 not made: ValueError: TFLite int8: 46 tensors")
               for n in manifest.notes), manifest.notes
