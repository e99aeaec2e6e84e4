"""Per-layer parity: alignment coverage, metrics, and fault injection in every format."""
from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters.parity.graph_index import index_graph
from converters.parity.metrics import diff_tensors
from converters.parity.report import write_reports
from converters.parity.run import parity_inputs, run_parity
from converters.manifest import load_manifest
from converters.tolerance import TensorTolerance
from tests.support.faults import perturb_keras, perturb_onnx, perturb_tflite

TARGET_MODULE = "features.6.squeeze"  # a conv in the middle of squeezenet1_1
TARGET_NODE = "/features/features.6/squeeze/Conv"
TARGET_WEIGHT = "features.6.squeeze.weight"


@pytest.fixture(scope="module")
def clean_reports(converted):
    folder, _ = converted
    return {(r.reference, r.test): r for r in run_parity(folder)}


@pytest.fixture
def copy_of(converted, tmp_path):
    folder, _ = converted
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def _inputs(folder):
    return parity_inputs(load_manifest(folder), n_photos=2, n_random=1)


def test_every_pair_passes_and_reports_alignment(clean_reports, converted, tmp_path):
    assert set(clean_reports) == {("pytorch", "onnx"), ("onnx", "tf_savedmodel"),
                                  ("onnx", "tflite_fp32"), ("onnx", "tflite_fp16"),
                                  ("onnx", "keras")}
    for (ref, test), report in clean_reports.items():
        assert report.passed, (ref, test, report.first_divergent)
        # every ONNX tensor is either compared or has a stated reason
        assert len(report.diffs) + len(report.unaligned) == report.n_sites
        assert all(reason for reason in report.unaligned.values())
    assert clean_reports[("onnx", "keras")].aligned_fraction == 1.0
    assert clean_reports[("onnx", "tf_savedmodel")].aligned_fraction == 1.0
    assert clean_reports[("pytorch", "onnx")].aligned_fraction > 0.8
    assert clean_reports[("onnx", "tflite_fp32")].aligned_fraction > 0.5  # convs fuse with ReLU
    fp32 = clean_reports[("onnx", "tflite_fp32")]
    assert min(d.snr_db for d in fp32.diffs) > 100  # fp32 round-off only
    written = write_reports(list(clean_reports.values()), tmp_path / "parity")
    assert {p.suffix for p in written} == {".json", ".csv", ".png"}


def test_onnx_fault_is_named_as_first_divergent(copy_of):
    perturb_onnx(copy_of / f"{copy_of.name}.onnx", TARGET_WEIGHT, scale=1.5)
    (report,) = run_parity(copy_of, pairs=(("pytorch", "onnx"),), inputs=_inputs(copy_of))
    first = report.first_divergent
    assert first is not None and first.module == TARGET_MODULE and first.op == "Conv"
    before = [d for d in report.diffs if d.depth < first.depth]
    assert before and all(d.passed for d in before)


def test_keras_fault_is_named_as_first_divergent(copy_of):
    perturb_keras(copy_of / f"{copy_of.name}.keras", TARGET_NODE, scale=1.5)
    (report,) = run_parity(copy_of, pairs=(("onnx", "keras"),), inputs=_inputs(copy_of))
    first = report.first_divergent
    assert first is not None and first.module == TARGET_MODULE and first.op == "Conv"


@pytest.mark.parametrize("fmt,dtype", [("tflite_fp32", np.float32), ("tflite_fp16", np.float16)])
def test_tflite_fault_is_named_as_first_divergent(copy_of, fmt, dtype):
    proto = onnx.load(str(copy_of / f"{copy_of.name}.onnx"))
    weight = next(numpy_helper.to_array(t) for t in proto.graph.initializer
                  if t.name == TARGET_WEIGHT)
    manifest = load_manifest(copy_of)
    perturb_tflite(copy_of / manifest.artifact(fmt).path, weight, scale=1.5, dtype=dtype)
    (report,) = run_parity(copy_of, pairs=(("onnx", fmt),), inputs=_inputs(copy_of))
    first = report.first_divergent
    assert first is not None
    # TFLite fuses the conv into its ReLU: the first divergent tensor is the fused op,
    # and the perturbed conv must be the module it computed.
    module_of = {s.name: s.module for s in index_graph(copy_of / f"{copy_of.name}.onnx").sites}
    covered = {first.module} | {module_of[t] for t in report.fused.get(first.name, [])}
    assert TARGET_MODULE in covered, (first.module, report.fused.get(first.name))
    before = [d for d in report.diffs if d.depth < first.depth]
    assert before and all(d.passed for d in before)


def test_metrics_on_known_errors():
    ref = np.ones((2, 4), np.float32)
    tol = TensorTolerance(min_snr_db=80, min_cosine=0.99999)
    same = diff_tensors(ref, ref.copy(), name="t", module="m", op="Relu", depth=0, tol=tol)
    assert same.passed and same.max_abs == 0 and same.cosine == pytest.approx(1.0)
    off = diff_tensors(ref, ref * 1.01, name="t", module="m", op="Relu", depth=0, tol=tol)
    assert off.rel_l2 == pytest.approx(0.01, rel=1e-3)
    assert off.snr_db == pytest.approx(40.0, abs=0.01) and not off.passed
    zeros = np.zeros((3,), np.float32)
    dead = diff_tensors(zeros, zeros, name="t", module="m", op="Relu", depth=0, tol=tol)
    assert dead.passed


def test_statistics_add_up_over_slices_of_the_batch():
    """Parity of a big model compares a few images at a time: the accumulated statistics
    are the whole batch's, a non-finite slice fails the whole, and the batch axis adds up."""
    from converters.parity.metrics import DiffAccumulator

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    test = (ref + 1e-3 * rng.standard_normal(ref.shape)).astype(np.float32)
    tol = TensorTolerance(min_snr_db=50, min_cosine=0.9999)
    kw = dict(name="t", module="m", op="Conv", depth=3, tol=tol)
    whole = diff_tensors(ref, test, **kw)
    acc = DiffAccumulator(**kw)
    for part in (slice(0, 2), slice(2, 3), slice(3, 5)):
        acc.add(ref[part], test[part])
    sliced = acc.result()
    assert sliced.shape == whole.shape == (5, 3, 4, 4)
    assert sliced.max_abs == whole.max_abs
    for field in ("mean_abs", "rel_l2", "cosine", "snr_db"):
        assert getattr(sliced, field) == pytest.approx(getattr(whole, field), rel=1e-9)
    assert sliced.passed and 55 < sliced.snr_db < 65  # 1e-3 noise on unit values: 60 dB
    bad = test.copy()
    bad[4, 0, 0, 0] = np.nan
    acc = DiffAccumulator(**kw, labels=("onnx", "keras"))
    acc.add(ref[:4], bad[:4])
    acc.add(ref[4:], bad[4:])
    assert not acc.result().passed and acc.result().nonfinite == "keras: 1 NaN"


def test_parity_in_slices_of_images_reads_as_the_whole_batch(clean_reports, converted):
    """A memory budget for one image's captures makes run_parity capture and compare
    each image on its own; the reports are the whole batch's: the same tensors, fp16's
    errors to 0.1%, and fp32 round-off still round-off (a runtime's kernels for one image
    round differently from those for six)."""
    from converters.parity.run import (_CAPTURES_HELD, capture_bytes_per_image,
                                       images_per_slice)

    folder, _ = converted
    onnx_path = folder / f"{folder.name}.onnx"
    index = index_graph(onnx_path)
    x = _inputs(folder).x
    # the graph's shapes and ONNX Runtime's own capture of one image say the same
    measured = capture_bytes_per_image(replace(index, bytes_per_image=0), onnx_path, x)
    assert index.bytes_per_image == measured
    per_image_mb = index.bytes_per_image / 2**20
    assert 5 < per_image_mb < 50  # squeezenet1_1 at 224 px: every float tensor, one image
    per_image = index.bytes_per_image
    assert images_per_slice(per_image, 6, per_image_mb * _CAPTURES_HELD * 2.5) == 2
    assert images_per_slice(per_image, 6, 1.0) == 1
    assert images_per_slice(per_image, 6, 1e6) == 6
    pairs = (("pytorch", "onnx"), ("onnx", "tflite_fp16"))
    timings = {}
    sliced = run_parity(folder, pairs=pairs, memory_mb=per_image_mb * _CAPTURES_HELD,
                        timings=timings)
    assert set(timings) >= {"capture pytorch", "capture onnx", "capture tflite_fp16"}
    _assert_reads_as_the_whole_batch(sliced, clean_reports)


def _assert_reads_as_the_whole_batch(reports, clean_reports) -> None:
    for report in reports:
        whole = clean_reports[(report.reference, report.test)]
        assert report.passed and report.unaligned == whole.unaligned
        assert [d.name for d in report.diffs] == [d.name for d in whole.diffs]
        for a, b in zip(report.diffs, whole.diffs):
            assert a.shape == b.shape, a.name
            if b.snr_db < 100:  # fp16's rounding of the same values
                assert a.snr_db == pytest.approx(b.snr_db, rel=1e-3), a.name
                assert a.max_abs == pytest.approx(b.max_abs, rel=1e-3), a.name
            else:
                assert a.snr_db > 100, a.name
    assert min(d.snr_db for d in reports[1].diffs) < 100  # fp16 errors were compared


def test_parity_spills_captures_when_one_image_outgrows_its_memory(clean_reports, converted,
                                                                   monkeypatch):
    """Below one image's captures, each capture is held in memory-mapped files (unlinked
    at once, nothing left behind) and the reports are still the whole batch's."""
    import converters.parity.run as run_module
    from converters.parity.capture import spill

    spilled = []

    def recording_spill(capture, folder):
        held = spill(capture, folder)
        spilled.append((capture.format, all(isinstance(v, np.memmap)
                                            for v in held.tensors.values()),
                        sorted(p.name for p in folder.iterdir())))
        return held

    monkeypatch.setattr(run_module, "spill", recording_spill)
    folder, _ = converted
    per_image_mb = index_graph(folder / f"{folder.name}.onnx").bytes_per_image / 2**20
    reports = run_parity(folder, pairs=(("pytorch", "onnx"), ("onnx", "tflite_fp16")),
                         memory_mb=per_image_mb)
    assert {fmt for fmt, _, _ in spilled} >= {"pytorch", "onnx", "tflite_fp16"}
    assert all(mapped for _, mapped, _ in spilled)
    assert not any(name.endswith(".npy") for _, _, names in spilled for name in names)
    _assert_reads_as_the_whole_batch(reports, clean_reports)


def test_rebuilt_tf_graph_must_compute_the_saved_model(converted):
    """Parity reads the TF graph a SavedModel was saved from only after its outputs agree
    with the artifact's as parity's fp32 bar has them: round-off passes (the artifact's
    values replace them), an error of 1% of the logits' spread is another graph."""
    from converters.parity.capture import GraphMismatchError, _check_against_saved_model
    from converters.runners import RunnerSpec
    from converters.runners.base import NCHW_TO_NHWC
    from converters.runners.tf_runner import SavedModelRunner

    folder, _ = converted
    saved_model = folder / load_manifest(folder).artifact("tf_savedmodel").path
    x = _inputs(folder).x
    with SavedModelRunner(RunnerSpec("tf_savedmodel", str(saved_model),
                                     input_permutation=NCHW_TO_NHWC)) as runner:
        out = runner.infer({"input": x})
    rng = np.random.default_rng(0)
    noisy = {k: v + 1e-6 * v.std() * rng.standard_normal(v.shape) for k, v in out.items()}
    _check_against_saved_model(noisy, saved_model, x)
    assert all(np.array_equal(noisy[k], out[k]) for k in out)
    off = {k: v + 1e-2 * v.std() * rng.standard_normal(v.shape) for k, v in out.items()}
    with pytest.raises(GraphMismatchError, match="SNR"):
        _check_against_saved_model(off, saved_model, x)


def test_tflite_fused_names_with_numbered_model_scope():
    from converters.parity.capture import _tflite_activations

    details = [
        {"index": 3, "shape_signature": [-1, 8, 8, 4],
         "name": "model_104/tf.nn.relu6/Relu6;model_104/tf.__operators__.add/AddV2;"
                 "model_104/tf.nn.convolution/convolution"},
        {"index": 4, "shape_signature": [4, 3, 3, 3], "name": "model_104/tf.nn.convolution/w"},
    ]
    found = _tflite_activations(details)
    assert found == {"tf.nn.relu6": (3, ["tf.nn.relu6", "tf.__operators__.add",
                                         "tf.nn.convolution"])}


def test_tflite_layer_of_several_ops_is_read_from_its_last():
    """Keras' hard_sigmoid is relu6(x + 3) fused into the Conv before it, then / 6 (as in
    timm's ghostnet_100 SE gate): the gate's output is the division, made last. Reading the
    first tensor compared relu6's, six times too large (SNR -14 dB, a false FAIL)."""
    from converters.parity.capture import _tflite_activations

    gate = "ghostnet_1/se.gate.HardSigmoid_1"
    details = [
        {"index": 260, "shape_signature": [-1, 1, 1, 72], "name": f"{gate}/truediv"},
        {"index": 259, "shape_signature": [-1, 1, 1, 72],
         "name": f"{gate}/Relu6;{gate}/add;ghostnet_1/se.conv_expand.Conv_1/BiasAdd"},
    ]
    for order in ([259, 260], None):  # the ops' order, else tensor index order
        found = _tflite_activations(details, order)
        assert found["se.gate.HardSigmoid_1"] == (260, ["se.gate.HardSigmoid_1"])
    assert _tflite_activations(details, [260, 259])["se.gate.HardSigmoid_1"][0] == 259


def test_tflite_layer_whose_bias_fused_forward_is_left_out():
    """timm's pit_ti_224: TFLite adds the patch conv's bias together with the position
    embedding, so the CONV_2D tensor named after the conv lacks its bias (a false FAIL at
    29.6 dB); the conv has no tensor of its own output."""
    from converters.parity.capture import _tflite_activations

    m = "pit_ti_224_1"
    details = [
        {"index": 165, "shape_signature": [-1, 27, 27, 64],
         "name": f"{m}/patch_embed.conv.Conv_1/convolution1"},
        {"index": 166, "shape_signature": [-1, 27, 27, 64],
         "name": f"{m}/Add_1/Add;{m}/patch_embed.conv.Conv_1/Squeeze;"
                 f"{m}/patch_embed.conv.Conv_1/BiasAdd"},
    ]
    found = _tflite_activations(details, [165, 166])
    assert list(found) == ["Add_1"] and found["Add_1"][0] == 166


def test_tflite_transpose_moved_up_from_a_reader_is_not_the_layer_output():
    """timm's eca_botnext26ts_256: TFLite moved the next reshape's transpose (to ONNX
    order) up to the 5-D Add's output and named the copy after the Add with a number
    appended. Read as the Add's output it failed parity at -2.8 dB; the ADD's own tensor
    is in the layer's layout (measured: 2.2e-5 from ONNX)."""
    from converters.parity.capture import _layout_copies, _tflite_activations

    m = "eca_botnext26ts_256_1/stages.2.1.self_attn.pos_embed"
    details = [
        {"index": 227, "shape_signature": [-1, 16, 16, 16, 16],
         "name": f"{m}.Add_perm_1/transpose"},
        {"index": 228, "shape_signature": [-1, 16, 16, 16, 16], "name": f"{m}.Add_1/Add"},
        {"index": 229, "shape_signature": [-1, 16, 16, 16, 16], "name": f"{m}.Add_1/Add1"},
        {"index": 230, "shape_signature": [-1, 256, 256], "name": f"{m}.Reshape-7_1/Reshape"},
        {"index": 231, "shape_signature": [-1, 256, 256], "name": f"{m}.BatchReshape_1/transpose"},
    ]

    class Interpreter:
        @staticmethod
        def _get_ops_details():
            return [{"op_name": "TRANSPOSE", "inputs": [1, 9], "outputs": [227]},
                    {"op_name": "ADD", "inputs": [5, 227], "outputs": [228]},
                    {"op_name": "TRANSPOSE", "inputs": [228, 8], "outputs": [229]},
                    {"op_name": "RESHAPE", "inputs": [229, 7], "outputs": [230]},
                    {"op_name": "TRANSPOSE", "inputs": [230, 8], "outputs": [231]}]

    copies = _layout_copies(Interpreter(), details)
    assert copies == {229}  # a layer's own transpose (231, another name) is not a copy
    found = _tflite_activations(details, [227, 228, 229, 230, 231], copies)
    assert found["stages.2.1.self_attn.pos_embed.Add_1"][0] == 228
    assert _tflite_activations(details, [227, 228, 229, 230])[
        "stages.2.1.self_attn.pos_embed.Add_1"][0] == 229  # what it read before


NAN_MODULE = "features.12.expand3x3"  # the layer the issue saw "diverge" on a damaged ONNX


def _nan_into_onnx(onnx_path, initializer: str) -> None:
    """Overwrite bytes inside one initializer of the ONNX file with 0xFF (float32 NaN), as
    disk damage would: no re-serialisation, the file's size stays the same."""
    proto = onnx.load(str(onnx_path))
    raw = next(numpy_helper.to_array(t) for t in proto.graph.initializer
               if t.name == initializer).tobytes()
    data = bytearray(onnx_path.read_bytes())
    start = data.find(raw)
    assert start >= 0 and data.find(raw, start + 1) < 0
    mid = start + len(raw) // 2
    data[mid:mid + 64] = b"\xff" * 64
    onnx_path.write_bytes(bytes(data))


def test_nan_from_a_damaged_onnx_is_reported_as_nonfinite(copy_of, tmp_path, capsys):
    import json

    from converters.parity.report import first_failure_text, print_summary, report_json

    _nan_into_onnx(copy_of / f"{copy_of.name}.onnx", f"{NAN_MODULE}.weight")
    (report,) = run_parity(copy_of, pairs=(("pytorch", "onnx"),), inputs=_inputs(copy_of))
    nonfinite = report.first_nonfinite
    assert not report.passed and nonfinite is not None
    assert (nonfinite.module, nonfinite.op) == (NAN_MODULE, "Conv")
    assert nonfinite.nonfinite.startswith("onnx: ") and "NaN" in nonfinite.nonfinite
    assert report.first_divergent == nonfinite and report.worst == nonfinite
    data = report_json(report)
    json.dumps(data, allow_nan=False)  # valid JSON: no bare NaN
    assert data["first_nonfinite"]["module"] == NAN_MODULE
    assert first_failure_text(report, {}) == (f"non-finite values ({nonfinite.nonfinite}) "
                                              f"first at {NAN_MODULE} (Conv)")
    print_summary([report])  # the table wraps cells: look for the words only
    assert "non-finite values" in capsys.readouterr().out


def _diff(name: str, depth: int, ref, test, labels=("onnx", "tflite_fp32")):
    tol = TensorTolerance(min_snr_db=80, min_cosine=0.99999)
    return diff_tensors(np.asarray(ref, np.float32), np.asarray(test, np.float32), name=name,
                        module=f"m.{name}", op="Conv", depth=depth, tol=tol, labels=labels)


def test_nonfinite_tensor_fails_as_its_own_kind():
    ref = np.ones((2, 4), np.float32)
    test = ref.copy()
    test[0, :2] = np.nan
    d = _diff("a", 0, ref, test, labels=("reference", "test"))
    assert not d.passed and d.nonfinite == "test: 2 NaN"
    assert not _diff("b", 0, ref, test).passed
    both = ref.copy()
    both[1, 1] = np.inf
    d = _diff("c", 0, both, test)
    assert d.nonfinite == "tflite_fp32: 2 NaN; onnx: 1 Inf" and not d.passed
    assert all(v is None for k, v in d.to_json().items()
               if k in ("max_abs", "mean_abs", "rel_l2", "cosine", "snr_db"))
    # NaN in both formats at the same places is still a failure, never "equal"
    assert not _diff("d", 0, test, test).passed
    assert _diff("e", 0, ref, ref).nonfinite == ""


def test_padding_infinities_agree_and_the_rest_is_compared():
    """timm's MaxPool2dSame pads with -inf: the same -inf in both tensors is agreement
    (vit_tiny_r_s16_p8_224 failed parity at its backbone's Pad in every TF format), and
    the finite values still decide; an Inf in one tensor only, or of the other sign,
    stays a failure."""
    ref = np.full((1, 2, 5, 5), -np.inf, np.float32)
    ref[:, :, 1:4, 1:4] = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    d = _diff("pad", 0, ref, ref.copy())
    assert d.passed and d.nonfinite == "" and d.max_abs == 0.0
    off = ref.copy()
    off[0, 0, 2, 2] += 0.5
    assert not _diff("pad", 0, ref, off).passed  # a wrong finite value still fails
    flipped = ref.copy()
    flipped[0, 0, 0, 0] = np.inf
    assert _diff("pad", 0, ref, flipped).nonfinite and not _diff("pad", 0, ref, flipped).passed
    one_sided = ref.copy()
    one_sided[0, 0, 0, 0] = 0.0
    assert not _diff("pad", 0, ref, one_sided).passed
    # TFLite's converter turns the Pad's constant -inf into float32's lowest (measured on a
    # ConstantPadding2D(-inf) -> MaxPooling2D model; the pool's output is exact): the same
    # padding, read as such (the failing Pad of vit_tiny_r_s16_p8_224 and nest_tiny_jx)
    lowest = np.where(np.isinf(ref), np.finfo(np.float32).min, ref).astype(np.float32)
    assert _diff("pad", 0, ref, lowest).passed
    lowest[0, 0, 0, 0] = np.finfo(np.float32).max  # the other sign: not the same padding
    assert not _diff("pad", 0, ref, lowest).passed
    # its fp16 files pad with float16's lowest, -65504 (measured the same way)
    half = np.where(np.isinf(ref), np.finfo(np.float16).min, ref).astype(np.float32)
    assert _diff("pad", 0, ref, half).passed
    half[0, 0, 0, 0] = -1000.0  # a finite value where the reference pads: not padding
    assert not _diff("pad", 0, ref, half).passed


def _report(diffs):
    from converters.parity.run import PairReport

    return PairReport("m", "random", "onnx", "tflite_fp32", "fp32", "x", len(diffs), diffs, {})


def test_pair_report_never_skips_a_nan_layer(capsys):
    import json

    from converters.parity.catalog_table import _row
    from converters.parity.report import first_failure_text, print_summary, report_json

    ok, off = np.ones(8), np.ones(8) * 1.001  # ~60 dB: a divergence, but finite
    nan = np.ones(8)
    nan[3] = np.nan
    report = _report([_diff("a", 0, ok, ok), _diff("b", 1, ok, off), _diff("c", 2, ok, nan),
                      _diff("d", 3, ok, off * 1.5)])
    assert report.first_divergent.name == "b"  # a finite divergence came first
    assert report.first_nonfinite.name == "c" and report.worst.name == "c"
    text = first_failure_text(report, {})
    assert text == "m.b (Conv); non-finite values (tflite_fp32: 1 NaN) first at m.c (Conv)"
    data = json.loads(json.dumps(report_json(report), allow_nan=False))
    row = _row(data)
    assert row["first_divergent"] == text and row["worst_layer"] == "m.c (Conv)"
    assert row["worst_snr_db"] == "non-finite" and row["result"] == "FAIL"
    only_nan = _report([_diff("a", 0, ok, ok), _diff("c", 2, ok, nan)])
    assert first_failure_text(only_nan, {}) == ("non-finite values (tflite_fp32: 1 NaN) first "
                                                "at m.c (Conv)")
    print_summary([only_nan])
    out = capsys.readouterr().out
    assert "non-finite values" in out and out.count("non-finite") >= 2  # and worst SNR


def test_a_killed_runs_scratch_folder_is_removed_by_the_next_run(converted, tmp_path):
    """Parity's scratch folder (the rounded ONNX file, spilled captures) lives in the
    artifacts' folder under its process id; one whose process is gone (killed outright) is
    removed by the next run, a live process's is left alone, and a run leaves none."""
    import os
    import subprocess
    import sys

    from converters.parity.run import SCRATCH_PREFIX

    folder, _ = converted
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = copy / f"{SCRATCH_PREFIX}{gone}-abc"
    stale.mkdir()
    (stale / "fp16_weights.onnx").write_bytes(b"x" * 1000)
    live = copy / f"{SCRATCH_PREFIX}{os.getpid()}-def"
    live.mkdir()
    [report] = run_parity(copy, pairs=(("onnx", "tflite_fp16"),))
    assert report.passed and report.floor is not None  # the floor's rounded file was made
    assert not stale.exists() and live.is_dir()
    assert sorted(p.name for p in copy.glob(f"{SCRATCH_PREFIX}*")) == [live.name]


def test_a_concatenation_without_a_floor_of_its_own_takes_its_inputs_lowest():
    """selecsls60's ``torch.cat`` (features.8) is no module: PyTorch captures no fp32 floor
    for it, and at 78.6 dB it failed the flat 80 dB bar though every tensor it joins passed
    on its own floor (the lowest 77.9 dB). A move of tensors is floored as the worst of them,
    only when each has a floor; other ops never inherit one."""
    from types import SimpleNamespace

    from converters.parity.graph_index import GraphIndex, TensorSite

    def site(name, op, *inputs):
        return TensorSite(name, f"/{name}", op, "", 0, inputs)

    index = GraphIndex((site("a", "Relu", "x"), site("b", "Relu", "x"), site("u", "Conv", "x"),
                        site("cat", "Concat", "a", "b", "w"), site("flat", "Flatten", "cat"),
                        site("half", "Concat", "a", "u"), site("add", "Add", "a", "b")))
    floor = lambda db, bad=False: SimpleNamespace(snr_db=db, nonfinite=bad)  # noqa: E731
    got = index.moved_floors({"a": floor(84.4), "b": floor(77.9)})
    assert got["cat"].snr_db == got["flat"].snr_db == 77.9  # "w", a weight, is not joined
    assert "half" not in got and "add" not in got  # "u" has no floor; Add is no move
    with_nan = index.moved_floors({"a": floor(84.4), "b": floor(float("nan"), bad=True)})
    assert with_nan["cat"].nonfinite  # a non-finite floor wins: the flat bars then hold
