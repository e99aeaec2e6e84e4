"""The accuracy bench: statistics, labelled photos, and its numbers against a direct
computation on real photos (mobilenet_v2, real weights, ONNX and ONNX int8)."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from bench.accuracy.metrics import score, topk_hits, wilson
from bench.accuracy.photos import PhotosError, labelled_photos
from converters.calibration import image_files, imagenet_sample_dir, photo_digest

SAMPLE = imagenet_sample_dir()
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"no {SAMPLE} on this machine")


def test_wilson_interval_matches_published_values():
    # Wilson 95% intervals (Newcombe 1998, table I): 0/10, 5/10, 81/263
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson(81, 263)
    assert (lo, hi) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    for n in (10, 300, 900):  # all agree: the float upper bound was 1 - 2e-16, below p
        lo, hi = wilson(n, n)
        assert lo < 1.0 == hi


def test_plot_of_rows_that_all_agree(tmp_path):
    """A row at 100% with an interval from an older record (upper 0.9999999999999998)
    draws; it used to raise "'xerr' must not contain negative values"."""
    from bench.accuracy.plot import write_plot
    from bench.accuracy.records import AccuracyRecord

    rec = AccuracyRecord.from_json({"model": "squeezenet1_0", "format": "onnx",
                                    "precision": "fp32", "photos": "imagenet-sample", "weights": "random",
                                    "labelled": False, "agreement": 1.0,
                                    "agreement_lo": 0.987, "agreement_hi": 0.9999999999999998})
    write_plot([rec], tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_topk_and_scores_on_hand_made_logits():
    logits = np.array([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0],   # top-1 = 1
                       [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -1],   # top-1 = 0, class 4 in top-5
                       [-1., 0.0, 0.0, 0.0, 0.1, 0.9, 0.2]], np.float32)  # 0 is last
    labels = np.array([1, 4, 0])
    assert topk_hits(logits, labels, 1).tolist() == [True, False, False]
    assert topk_hits(logits, labels, 5).tolist() == [True, True, False]
    ref = logits.copy()
    ref[2] = [0.9, 0, 0, 0, 0, 0.1, 0]  # the reference disagrees on the last photo
    s = score(logits, ref, labels)
    assert (s.top1.hits, s.top5.hits, s.agreement.hits, s.n) == (1, 2, 2, 3)
    assert s.max_logit_err == pytest.approx(1.9)


def _copy(files, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


@needs_sample
def test_labels_are_sorted_wnid_order_and_calibration_photos_are_left_out(tmp_path):
    files = image_files(SAMPLE)
    chosen = [files[3], files[281], files[999]]
    flat = _copy(chosen, tmp_path / "flat")
    photos = labelled_photos(flat, exclude=frozenset({photo_digest(files[281])}))
    assert photos.labels == (3, 999) and photos.left_out == 1 and photos.total == 3
    nested = tmp_path / "val"  # ImageFolder: <wnid>/<any name>
    (nested / files[7].name[:9]).mkdir(parents=True)
    shutil.copy(files[7], nested / files[7].name[:9] / "ILSVRC2012_val_00000001.JPEG")
    assert labelled_photos(nested).labels == (7,)


@needs_sample
def test_an_unreadable_photo_is_skipped_and_counted_not_a_failed_row(tmp_path):
    files = image_files(SAMPLE)
    flat = _copy([files[3], files[281]], tmp_path / "flat")
    (flat / files[999].name).write_bytes(b"")  # a zero-byte photo
    (flat / files[7].name).write_bytes(files[7].read_bytes()[:2000])  # truncated
    photos = labelled_photos(flat)
    assert photos.labels == (3, 281) and photos.total == 4
    assert sorted(u.split(":")[0] for u in photos.unreadable) == sorted(
        [files[7].name, files[999].name])
    assert f"{files[999].name}: empty file" in photos.unreadable


@needs_sample
def test_accuracy_refuses_damaged_artifacts_before_any_work(tmp_path, capsys):
    from bench.__main__ import main
    from tests.bench.test_latency import _damage, _write_artifacts

    folder = _write_artifacts(tmp_path / "art" / "mobilenet_v2", ("onnx",))
    _damage(folder / "onnx.bin")
    code = main(["accuracy", "--models", "mobilenet_v2", "--artifacts", str(tmp_path / "art"),
                 "--results", str(tmp_path / "res"), "--on-damaged", "refuse"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "onnx.bin is damaged (sha256 differs from manifest)" in err[0]
    assert not (tmp_path / "res").exists()


def test_photos_bad_input_is_one_error(tmp_path):
    with pytest.raises(PhotosError, match="no such folder"):
        labelled_photos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PhotosError, match="no images"):
        labelled_photos(tmp_path / "empty")


@pytest.mark.parametrize("args, message", [
    (["--photos", "nope"], "error: --photos"),
    (["--photos", "empty"], "error: --photos"),
    (["--limit", "0"], "error: --limit"),
    (["--formats", "onnx,tflite_int4"], "error: unknown format 'tflite_int4'"),
])
def test_accuracy_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    from bench.__main__ import main

    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / a) if a in ("nope", "empty") else a for a in args]
    code = main(["accuracy", *args, "--artifacts", str(tmp_path / "art"),
                 "--results", str(tmp_path / "res")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "res").exists() and not (tmp_path / "art").exists()


@needs_sample
def test_accuracy_bench_equals_a_direct_computation(int8_mobilenet, tmp_path):
    """PyTorch top-1 and the ONNX rows on 6 photos, one of them a calibration photo."""
    import torch

    from bench.__main__ import main
    from zoo.build import build_model
    from zoo.meta import published_meta
    from zoo.preprocess import load_batch
    from zoo.registry import get_entry

    root, calib = int8_mobilenet
    files = image_files(SAMPLE)
    calib_file = sorted(calib.iterdir())[0]
    chosen = [files[i] for i in (12, 151, 404, 623, 877)]  # none every 10th
    photos = _copy(chosen, tmp_path / "photos")
    shutil.copy(calib_file, photos / calib_file.name)
    code = main(["accuracy", "--photos", str(photos), "--artifacts", str(root),
                 "--results", str(tmp_path / "res")])
    assert code == 0
    with open(tmp_path / "res" / "accuracy-photos.csv", newline="") as fh:
        rows = {r["format"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"pytorch", "onnx", "onnx_int8"}
    # independently: PyTorch fp32 on the 5 non-calibration photos
    model, _ = build_model(get_entry("mobilenet_v2"), weights="imagenet")
    x = load_batch(chosen, published_meta(get_entry("mobilenet_v2")).preprocessing)
    with torch.inference_mode():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    labels = np.array([12, 151, 404, 623, 877])
    assert int(rows["pytorch"]["n"]) == 5
    assert float(rows["pytorch"]["top1"]) == pytest.approx(float((pred == labels).mean()))
    assert float(rows["onnx"]["top1"]) == pytest.approx(float(rows["pytorch"]["top1"]))
    assert float(rows["onnx"]["agreement"]) == 1.0 and float(rows["onnx"]["max_logit_err"]) < 1e-3
    int8 = rows["onnx_int8"]
    assert int8["precision"] == "int8" and "4 photos" in int8["quantization"]
    assert float(int8["max_logit_err"]) > 1e-3  # really quantized
    md = tmp_path / "res" / "accuracy-photos.md"
    assert md.read_text().count("| mobilenet_v2 |") == 3 and "ImageNet's *train*" in md.read_text()
    md.unlink()  # --report-only rebuilds the views from the raw records alone
    assert main(["accuracy", "--report-only", "--photos", str(photos),
                 "--results", str(tmp_path / "res")]) == 0
    assert md.read_text().count("| mobilenet_v2 |") == 3


def test_a_requested_format_the_convert_did_not_make_is_an_error_row():
    """bench accuracy --formats ...,tflite_int8 on a model whose TFLite int8 step failed:
    the row is there, with why, not left out of the table."""
    from types import SimpleNamespace

    from bench.accuracy.evaluate import _not_converted
    from bench.accuracy.records import AccuracyRecord

    base = AccuracyRecord("shufflenet_v2_x1_0", "random weights (seed 0)", False, "pytorch",
                          "fp32", "imagenet-sample")
    manifest = SimpleNamespace(artifacts=[SimpleNamespace(format="onnx")])
    lanes = _not_converted(manifest, ("onnx", "tflite_int8"), base,
                           "no tflite_int8/tflite_int8_io: RuntimeError: the SavedModel does not run")
    assert [(ln.base.format, ln.base.precision) for ln in lanes] == [("tflite_int8", "int8")]
    assert lanes[0].error.startswith("not converted: no tflite_int8/tflite_int8_io")
    assert _not_converted(manifest, None, base, "") == []  # every artifact: nothing asked for
