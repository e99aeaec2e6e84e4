"""TFLite int8 with layers kept in float (selective quantization through the
QuantizationDebugger's denylist), on a tiny SavedModel: the denylisted layer really is float
in the .tflite, every other layer int8, and automatic mixed precision records its steps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.calibration import imagenet_sample_dir

SIZE = 32


@pytest.fixture(scope="module")
def tiny_saved_model(tmp_path_factory) -> Path:
    """conv 3x3 (stride 2) + relu6 -> depthwise 3x3 + relu6 -> conv 1x1, + skip -> mean ->
    dense: NHWC 32x32x3 in, 10 logits out, seeded weights."""
    from converters.tf_compat import preload_triton

    preload_triton()
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def var(*shape: int) -> tf.Variable:
        return tf.Variable(rng.normal(0, 0.3, shape).astype(np.float32))

    class Tiny(tf.Module):
        def __init__(self) -> None:
            self.w1, self.b1 = var(3, 3, 3, 8), var(8)
            self.dw, self.b2 = var(3, 3, 8, 1), var(8)
            self.w3, self.b3 = var(1, 1, 8, 8), var(8)
            self.fc, self.b4 = var(8, 10), var(10)

        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
        def __call__(self, x):
            h = tf.nn.relu6(tf.nn.conv2d(x, self.w1, 2, "SAME") + self.b1)
            d = tf.nn.relu6(tf.nn.depthwise_conv2d(h, self.dw, [1, 1, 1, 1], "SAME") + self.b2)
            p = tf.nn.conv2d(d, self.w3, 1, "SAME") + self.b3 + h
            return tf.matmul(tf.reduce_mean(p, axis=[1, 2]), self.fc) + self.b4

    path = tmp_path_factory.mktemp("tiny") / "saved_model"
    tf.saved_model.save(Tiny(), str(path))
    return path


def _batches(n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.uniform(-2, 2, (1, SIZE, SIZE, 3)).astype(np.float32) for _ in range(n)]


def _types(path: Path) -> dict[str, set[type]]:
    """Tensor name -> its dtypes (an output keeps its name through the final DEQUANTIZE)."""
    from ai_edge_litert.interpreter import Interpreter

    types: dict[str, set[type]] = {}
    for t in Interpreter(model_path=str(path)).get_tensor_details():
        types.setdefault(t["name"], set()).add(t["dtype"])
    return types


def test_a_denylisted_layer_stays_float_and_the_rest_int8(tiny_saved_model, tmp_path):
    from converters.tflite_int8 import TfliteCalibrated, float_tensors

    x = np.concatenate(_batches(4)).transpose(0, 3, 1, 2)  # NCHW, as the fallback passes
    with TfliteCalibrated.of(tiny_saved_model, _batches()) as c:
        plain = c.quantize(tmp_path / "plain.tflite")
        assert float_tensors(plain.read_bytes()) == []  # full integer
        ranked = c.worst_layers(plain, x)
        # every quantized layer (2 convs, depthwise, add, mean, dense), worst first
        assert len(ranked) == 6 and len(set(ranked)) == 6, ranked
        dw = next(n for n in ranked if "depthwise" in n)
        project = next(n for n in ranked if "Conv2D_1" in n)  # the 1x1 conv after it
        assert c.readers(plain)[dw] == [project]
        mixed = c.quantize(tmp_path / "mixed.tflite", [dw])
        io = c.quantize(tmp_path / "io.tflite", [dw], int8_io=True)
        every = c.quantize(tmp_path / "every.tflite", ranked)
        ref = _run(c.reference, x)
    compute = ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    assert _op_outputs(plain) == [(op, np.int8) for op in compute]
    for path in (mixed, io):
        assert _types(path)[dw] == {np.float32} and dw in float_tensors(path.read_bytes())
        # the depthwise conv alone runs in float, between a dequantize and a quantize
        assert _op_outputs(path) == [(op, np.float32 if op.startswith("DEPTH") else np.int8)
                                     for op in compute]
    assert _types(plain)[dw] == {np.int8}
    assert _io_dtypes(io) == [np.int8, np.int8] and _io_dtypes(mixed) == [np.float32] * 2
    # with every layer denylisted the model computes what the float model does
    err = {p.name: float(np.abs(_run(p, x) - ref).mean()) for p in (plain, mixed, io, every)}
    assert err["every.tflite"] < err["plain.tflite"] / 100, err
    assert err["io.tflite"] < err["plain.tflite"] * 2, err


def _op_outputs(path: Path) -> list[tuple[str, type]]:
    """(op, its output's dtype) of every op but the QUANTIZE/DEQUANTIZE between types."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    dtype = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
    return [(op["op_name"], dtype[op["outputs"][0]]) for op in it._get_ops_details()
            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")]


def _io_dtypes(path: Path) -> list[type]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return [d["dtype"] for d in (*it.get_input_details(), *it.get_output_details())]


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from converters.runners.tflite_runner import TfliteRunner
    from converters.runners.base import NCHW_TO_NHWC, RunnerSpec

    with TfliteRunner(RunnerSpec("tflite_int8", str(path), input_permutation=NCHW_TO_NHWC)) as r:
        return r.infer({"input": x})["logits"]


@pytest.mark.skipif(not imagenet_sample_dir().is_dir(),
                    reason="needs the shared imagenet-sample photos")
def test_tflite_fallback_keeps_layers_float_and_records_its_steps(tiny_saved_model, tmp_path):
    """make_tflite_int8 with a target no int8 model reaches: steps measured on the tuning
    photos, the best shipped in both variants, the manifest record reads back."""
    import shutil

    from converters.calibration import Quantization, image_files
    from converters.tflite_int8 import make_tflite_int8
    from zoo.entry import Preprocessing

    calib = tmp_path / "calib"
    calib.mkdir()
    for p in image_files(imagenet_sample_dir())[::100]:
        shutil.copy(p, calib)
    prep = Preprocessing(SIZE + 4, SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                         "bilinear")
    fio, iio, q = make_tflite_int8(tiny_saved_model, tmp_path, "tiny", prep, calib=calib,
                                   target=1.0, float_budget=2, float_step=1)
    assert q.fallback[0].float_layers == () and len(q.fallback) >= 2
    assert all(st.n_photos == 100 and 0 < st.agreement <= 1 and st.latency_ms > 0
               for st in q.fallback)
    best = max(q.fallback, key=lambda st: (st.agreement, -len(st.float_layers)))
    assert q.keep_float == best.float_layers and len(q.fallback[-1].float_layers) <= 2
    assert Quantization.from_json(q.to_json()) == q
    for path in (fio, iio):
        types = _types(path)
        assert all(types[n] == {np.float32} for n in q.keep_float), path
    if q.keep_float:
        assert q.label.endswith(f", {len(q.keep_float)} layers float")


def test_tflite_int8_parity_names_the_layers_a_bad_calibration_breaks(tiny_saved_model,
                                                                      tmp_path):
    """Per-layer parity of TFLite int8 against the float TFLite of the same SavedModel: every
    op aligned by name, the logits included; calibrated on a narrow range (as one black photo
    would be), every layer's SNR collapses and the report says where first."""
    from converters.parity.int8 import tflite_int8_parity
    from converters.tflite_int8 import TfliteCalibrated

    x = np.concatenate(_batches(4)).transpose(0, 3, 1, 2)  # NCHW, as parity_inputs gives
    with TfliteCalibrated.of(tiny_saved_model, _batches()) as c:
        good_path = c.quantize(tmp_path / "good.tflite")
    narrow = [b * 0.02 for b in _batches()]
    with TfliteCalibrated.of(tiny_saved_model, narrow) as c:
        bad_path = c.quantize(tmp_path / "bad.tflite")
    good = tflite_int8_parity(tiny_saved_model, good_path, x)
    bad = tflite_int8_parity(tiny_saved_model, bad_path, x)
    ops = ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    for report in (good, bad):
        assert [lay.diff.op for lay in report.layers] == ops, report.summary()
        assert report.layers[-1].diff.shape == (4, 10)  # the logits, under the output's name
        assert report.n_images == 4 and report.test == "tflite_int8"
    assert good.passed and min(lay.diff.snr_db for lay in good.layers) > 25, good.summary()
    assert not bad.passed and bad.first_below.diff.op == "CONV_2D", bad.summary()
    assert bad.first_below.diff.snr_db < 10  # clipped at the input's quantizer
    assert bad.layers[-1].diff.snr_db < good.layers[-1].diff.snr_db - 15
    # the input's own quantization is measured: a narrow calibration clips it there
    assert bad.layers[0].input_snr_db < 10 < 25 < good.layers[0].input_snr_db
    assert "first below" in bad.summary() and "largest SNR drops" in bad.summary()
