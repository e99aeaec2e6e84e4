"""TFLite full-integer int8 artifacts: TFLiteConverter on the SavedModel with a
representative dataset of the calibration photos (``converters.calibration``).

Two variants: ``tflite_int8`` keeps float32 input and output (the converter adds quantize
and dequantize ops at the ends), ``tflite_int8_io`` takes and returns int8 tensors, whose
scale and zero point are in the model's input/output details (``TfliteRunner`` applies them,
so both run from the same float photos). Weights are int8 per channel, activations int8
(TFLite's scheme), every op integer-only (``TFLITE_BUILTINS_INT8``: a model with an op
that has no int8 kernel fails to convert rather than silently staying float).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from converters.calibration import Quantization, calibration_set, choose_calibration
from zoo.entry import Preprocessing

TOOL = "tf.lite.TFLiteConverter (full integer, int8)"


def make_tflite_int8(saved_model: Path, out_dir: Path, stem: str, prep: Preprocessing, *,
                     calib: Path | None = None) -> tuple[Path, Path, Quantization]:
    """``<stem>_int8.tflite`` (float I/O) and ``<stem>_int8_io.tflite`` (int8 I/O) from the
    SavedModel (NHWC), calibrated on the same photos as ``onnx_int8``."""
    from converters.tf_compat import preload_triton

    preload_triton()
    import tensorflow as tf

    folder, files, rule = choose_calibration(calib)
    cal = calibration_set(folder, files, rule)
    batches = [_nhwc(files[i:i + 1], prep) for i in range(len(files))]

    def representative() -> Iterator[list[np.ndarray]]:
        for b in batches:
            yield [b]

    outs = []
    for suffix, io_type in (("int8", tf.float32), ("int8_io", tf.int8)):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
        path = out_dir / f"{stem}_{suffix}.tflite"
        path.write_bytes(conv.convert())
        outs.append(path)
    return outs[0], outs[1], Quantization(TOOL, "TFLite full integer", "minmax", True, "int8",
                                          "int8", cal, {"representative_photos": len(files)})


def _nhwc(files: list[Path], prep: Preprocessing) -> np.ndarray:
    from converters.runners.base import to_nhwc
    from zoo.preprocess import load_batch

    return to_nhwc(load_batch(files, prep))
