"""TFLite int8 artifacts: the SavedModel calibrated by TFLiteConverter on a representative
dataset of the calibration photos (``converters.calibration``), full integer, or with the
layers int8 hurts most left in float (``--int8-target``, ``converters.mixed_precision``).

Two variants: ``tflite_int8`` keeps float32 input and output (quantize and dequantize ops at
the ends), ``tflite_int8_io`` takes and returns int8 tensors, whose scale and zero point are
in the model's input/output details (``TfliteRunner`` applies them, so both run from the
same float photos). Weights are int8 per channel, activations int8 (TFLite's scheme).

Both come from one calibration through ``tf.lite.experimental.QuantizationDebugger``
(``TfliteCalibrated``): its calibrated model is quantized again with chosen layers in float
(``denylisted_nodes``: TFLite's selective quantization, by output tensor name), and its
instrumented model (a NumericVerify op behind every quantized layer, fed the same dequantized
inputs) gives each layer's own error, which ranks layers for mixed precision. Without
float layers the model must be full integer: a float tensor other than the input and output
(an op with no int8 kernel left in float) fails the conversion, as ``TFLITE_BUILTINS_INT8``
makes TFLiteConverter fail, rather than passing float ops off as int8. So does a tensor whose
scale is absurd (``unusable_scales``): max-pool pads reach the SavedModel as zeros or repeated
edges (``converters.pool_pads``), never as onnx2tf's -inf constant, which stretched resnet18's
and squeezenet1_0's pooled tensors to a scale of 1.3e36 (nothing computed, XNNPACK refused).

More calibration photos are no cheaper fix: TFLite calibrates min/max, which only widen.
Measured on mobilenet_v2, top-1 agreement with fp32 on the accuracy bench's 900 photos:
50 calibration photos 87.6%, the default 100 90.3%, 300 (those 100 and 200 cats-vs-dogs
photos) 89.3%, 600 (and 500) 90.2%. Twelve layers in float (``--int8-target 0.99``) took
it to 95.1%, and top-1 from 80.3% to PyTorch fp32's 82.4%.
"""
from __future__ import annotations

import contextlib
import csv
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from converters.calibration import (FallbackStep, Quantization, calibration_set,
                                    choose_calibration)
from converters.runners.base import NCHW_TO_NHWC, RunnerSpec, to_nhwc
from zoo.entry import Preprocessing

# the converter calibrates; the debugger quantizes (with its denylist, when layers stay float)
TOOL = "tf.lite.TFLiteConverter + tf.lite.experimental.QuantizationDebugger (int8)"


def make_tflite_int8(saved_model: Path, out_dir: Path, stem: str, prep: Preprocessing, *,
                     calib: Path | None = None, target: float | None = None,
                     float_budget: int = 12, float_step: int = 3,
                     log: Callable[[str], None] = lambda s: None
                     ) -> tuple[Path, Path, Quantization]:
    """``<stem>_int8.tflite`` (float I/O) and ``<stem>_int8_io.tflite`` (int8 I/O) from the
    SavedModel (NHWC), calibrated on the same photos as ``onnx_int8``; with ``target``,
    the layers the fallback keeps in float stay float in both."""
    folder, files, rule = choose_calibration(calib)
    cal = calibration_set(folder, files, rule)
    fio, iio = out_dir / f"{stem}_int8.tflite", out_dir / f"{stem}_int8_io.tflite"
    keep: tuple[str, ...] = ()
    steps: tuple[FallbackStep, ...] = ()
    batches = [_nhwc(files[i:i + 1], prep) for i in range(len(files))]
    with TfliteCalibrated.of(saved_model, batches) as c:
        c.quantize(fio)
        if extra := float_tensors(fio.read_bytes()):
            raise ValueError(f"TFLite int8: {len(extra)} tensors stay float (no int8 kernel), "
                             f"first {extra[0]!r}")
        if wide := unusable_scales(fio.read_bytes()):
            raise ValueError(f"TFLite int8: {len(wide)} tensors quantized with a scale over "
                             f"{MAX_SCALE:g} (a constant near float32's limit in their range, as "
                             f"a -inf max-pool pad), first {wide[0]!r}")
        if target is not None:
            from converters.mixed_precision import fall_back_to_target

            keep, steps = fall_back_to_target(c, fio, prep, cal, target=target,
                                              float_budget=float_budget,
                                              float_step=float_step, log=log)
        c.quantize(iio, keep, int8_io=True)
    scheme = "TFLite int8, layers in float" if keep else "TFLite full integer"
    return fio, iio, Quantization(TOOL, scheme, "minmax", True, "int8", "int8", cal,
                                  {"representative_photos": len(files)}, keep_float=keep,
                                  target=target, fallback=steps)


class TfliteCalibrated:
    """A SavedModel calibrated once by TFLite's converter, quantized again with chosen
    layers (output tensor names) left in float
    (``converters.mixed_precision.Requantizable``)."""

    def __init__(self, debugger: Any, reference: Path) -> None:
        self.debugger = debugger  # tf.lite.experimental.QuantizationDebugger
        self.reference = reference  # the calibrated float model, as a file

    @classmethod
    @contextlib.contextmanager
    def of(cls, saved_model: Path, batches: list[np.ndarray]) -> Iterator["TfliteCalibrated"]:
        """Calibrate ``saved_model`` (NHWC) on ``batches``, one calibration for every
        quantization after."""
        from converters.tf_compat import native_stderr_silenced, preload_triton

        preload_triton()
        import tensorflow as tf

        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([b] for b in batches)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with _quiet(), native_stderr_silenced():
            debugger = tf.lite.experimental.QuantizationDebugger(converter=conv)
        with tempfile.TemporaryDirectory(prefix="modelzoo-tflite-int8-") as tmp:
            reference = Path(tmp) / "calibrated.tflite"
            reference.write_bytes(debugger.calibrated_model)
            yield cls(debugger, reference)

    @property
    def fp32(self) -> RunnerSpec:
        return RunnerSpec("tflite_fp32", str(self.reference), input_permutation=NCHW_TO_NHWC)

    @property
    def int8_format(self) -> str:
        return "tflite_int8"

    def quantize(self, out_path: Path, keep_float: Iterable[str] = (), *,
                 int8_io: bool = False) -> Path:
        """``out_path`` quantized with ``keep_float`` (output tensor names) in float; with
        ``int8_io``, int8 input and output too."""
        import tensorflow as tf
        from tensorflow.lite.python.util import modify_model_io_type

        from converters.tf_compat import native_stderr_silenced

        opts = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(keep_float) or None)
        with _quiet(), native_stderr_silenced():
            try:
                self.debugger.options = opts  # also instruments the model (NumericVerify)
            except ValueError as exc:  # every layer float: nothing to instrument
                if not _nothing_to_verify(exc) or self.debugger.options is not opts:
                    raise
            model = self.debugger.get_nondebug_quantized_model()
            if int8_io:  # what TFLiteConverter does with inference_input/output_type int8
                model = modify_model_io_type(model, tf.int8, tf.int8)
        out_path.write_bytes(model)
        return out_path

    def worst_layers(self, int8_path: Path, x: np.ndarray) -> list[str]:
        """Layers of the model last quantized (``int8_path``) by their own error's SNR,
        lowest first: the debugger's instrumented model compares each quantized layer's
        output with the float op's on the same dequantized inputs."""
        import tensorflow as tf

        from converters.tf_compat import native_stderr_silenced

        xs = to_nhwc(x)
        with _quiet(), native_stderr_silenced():
            try:
                debug = tf.lite.experimental.QuantizationDebugger(
                    quant_debug_model_content=self.debugger.get_debug_quantized_model(),
                    debug_dataset=lambda: ([xs[i:i + 1]] for i in range(len(xs))),
                    debug_options=tf.lite.experimental.QuantizationDebugOptions(
                        layer_direct_compare_metrics={"snr_db": _snr_db}))
            except ValueError as exc:
                if _nothing_to_verify(exc):
                    return []  # every layer is float already
                raise
            debug.run()
        text = io.StringIO()
        debug.layer_statistics_dump(text)
        rows = list(csv.DictReader(io.StringIO(text.getvalue())))
        return [r["tensor_name"] for r in sorted(rows, key=lambda r: float(r["snr_db"]))]

    def readers(self, int8_path: Path) -> dict[str, list[str]]:
        return tflite_readers(int8_path.read_bytes())


def _nothing_to_verify(exc: ValueError) -> bool:
    """The debugger's error for a model without a quantized layer to instrument."""
    return "debug mode" in str(exc)


def _snr_db(ref: np.ndarray, q: np.ndarray, scale: float, zero_point: int) -> float:
    """A layer's own SNR: its float output against its int8 output, dequantized."""
    err = ref.astype(np.float64) - (q.astype(np.float64) - zero_point) * scale
    signal = float(np.sum(np.square(ref, dtype=np.float64)))
    return float(10 * np.log10(max(signal, 1e-30) / max(float(np.sum(err * err)), 1e-30)))


def _interpreter(model: bytes):
    from ai_edge_litert.interpreter import Interpreter

    from converters.tf_compat import native_stderr_silenced

    with native_stderr_silenced():
        return Interpreter(model_content=model)


def float_tensors(model: bytes) -> list[str]:
    """Names of the float32 tensors of a TFLite model other than its inputs and outputs."""
    it = _interpreter(model)
    ends = {d["index"] for d in (*it.get_input_details(), *it.get_output_details())}
    return [t["name"] for t in it.get_tensor_details()
            if t["dtype"] == np.float32 and t["index"] not in ends]


# An int8 scale this wide quantizes every real activation to the zero point; the calibrated
# range held a constant near float32's limit (onnx2tf's -inf max-pool pad gave 1.3e36, which
# XNNPACK refuses to run and the reference kernels compute nothing with).
MAX_SCALE = 1e10


def unusable_scales(model: bytes) -> list[str]:
    """Names of the tensors of a TFLite model quantized with a scale over ``MAX_SCALE``."""
    return [t["name"] for t in _interpreter(model).get_tensor_details()
            if (t["quantization_parameters"]["scales"] > MAX_SCALE).any()]


CASTS = ("QUANTIZE", "DEQUANTIZE")  # ops that only change a tensor's type


def cast_source(ops: list[dict]) -> Callable[[int], int]:
    """Tensor index -> the tensor it was cast from, through any QUANTIZE/DEQUANTIZE chain
    of the op graph ``ops`` (``Interpreter._get_ops_details()``); itself when none."""
    cast_from = {o: i for op in ops if op["op_name"] in CASTS
                 for o, i in zip(op["outputs"], op["inputs"])}

    def source(t: int) -> int:
        while t in cast_from:
            t = cast_from[t]
        return t

    return source


def tflite_readers(model: bytes) -> dict[str, list[str]]:
    """Output tensor name -> the output tensor names of the ops that read it, through the
    QUANTIZE/DEQUANTIZE ops between int8 and float layers."""
    it = _interpreter(model)
    ops = it._get_ops_details()  # noqa: SLF001  the op graph (the debugger reads it so too)
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    source = cast_source(ops)
    out: dict[str, list[str]] = {}
    for op in ops:
        if op["op_name"] in CASTS or not len(op["outputs"]):
            continue
        name = names[op["outputs"][0]]
        for t in op["inputs"]:
            src = names.get(source(t)) if t >= 0 else None
            if src and src != name and name not in out.setdefault(src, []):
                out[src].append(name)
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The debugger makes tf.lite.Interpreters, each warning of its deprecation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _nhwc(files: list[Path], prep: Preprocessing) -> np.ndarray:
    from zoo.preprocess import load_batch

    return to_nhwc(load_batch(files, prep))
