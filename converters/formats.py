"""Artifact formats: one typed registry read by convert, runners, parity and bench.

A format is what one artifact file is: the conversion step that makes it, its input
layout and precision, the runner that executes it, how parity captures its intermediate
tensors, and its file name. Registering a new format is one ``Format`` entry here (its
step, runner kind and capture kind must exist; the pipeline, runners and parity look
them up by name).

Nothing heavy is imported: ``python -m bench --help`` reads this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Layout = Literal["NCHW", "NHWC"]
Precision = Literal["fp32", "fp16", "int8"]
# the step that writes the artifact (``converters.pipeline``): the ONNX export, the
# SavedModel/TFLite step (onnx2tf, or the Keras model's own export), the Keras builder,
# ONNX Runtime quantization
Step = Literal["onnx", "tf", "keras", "int8"]
# which ``converters.runners`` class runs it
RunnerKind = Literal["onnxruntime", "tf_savedmodel", "tflite", "keras"]
# how parity reads every intermediate tensor: ONNX Runtime with every node an output; the
# TF graph the SavedModel was saved from (onnx2tf's or the Keras model); TFLite with
# preserve-all-tensors and the tensor map; the Keras model with every layer an output
Capture = Literal["onnx", "tf_graph", "tflite", "keras"]
# who may make the "tf" step's formats (``--tf-converter``): onnx2tf, falling back to the
# Keras model's own export (auto), or one of them only
TF_CONVERTERS = ("auto", "onnx2tf", "keras")


@dataclass(frozen=True)
class Format:
    name: str  # the manifest's ``format`` and the CLI's name for it
    step: Step
    layout: Layout
    precision: Precision
    runner: RunnerKind
    capture: Capture
    filename: str  # "{stem}" is the model's file stem; a name without suffix is a folder
    description: str
    default: bool = True  # made by a plain ``convert`` (and required for reuse)

    def path_for(self, stem: str) -> str:
        return self.filename.format(stem=stem)


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    if fmt.name in FORMATS:
        raise ValueError(f"format {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt
    return fmt


for _fmt in (
    Format("onnx", "onnx", "NCHW", "fp32", "onnxruntime", "onnx", "{stem}.onnx",
           "ONNX, opset 17, dynamic batch"),
    Format("tf_savedmodel", "tf", "NHWC", "fp32", "tf_savedmodel", "tf_graph", "saved_model",
           "TF SavedModel, signature serving_default"),
    Format("tflite_fp32", "tf", "NHWC", "fp32", "tflite", "tflite", "{stem}_float32.tflite",
           "TFLite fp32"),
    Format("tflite_fp16", "tf", "NHWC", "fp16", "tflite", "tflite", "{stem}_float16.tflite",
           "TFLite with fp16 weights"),
    Format("keras", "keras", "NHWC", "fp32", "keras", "keras", "{stem}.keras",
           "Keras 3 model of real layers (modelzoo's ONNX -> Keras builder)"),
    Format("onnx_int8", "int8", "NCHW", "int8", "onnxruntime", "onnx", "{stem}_int8.onnx",
           "ONNX QDQ int8: U8S8, per-channel weights, calibrated on real photos "
           "(converters.quantize)", default=False),
    Format("tflite_int8", "int8", "NHWC", "int8", "tflite", "tflite", "{stem}_int8.tflite",
           "TFLite int8 (full integer; with --int8-target the layers int8 hurts most in "
           "float), float32 input/output (converters.tflite_int8)",
           default=False),
    Format("tflite_int8_io", "int8", "NHWC", "int8", "tflite", "tflite",
           "{stem}_int8_io.tflite", "TFLite int8 as tflite_int8, int8 input/output",
           default=False),
):
    register(_fmt)


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}") from None


def default_formats() -> tuple[str, ...]:
    """What a plain ``convert`` makes, in registry order."""
    return tuple(f.name for f in FORMATS.values() if f.default)


def formats_of_step(step: str, among: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The formats ``step`` writes (of ``among``, when given), in registry order."""
    return tuple(f.name for f in FORMATS.values()
                 if f.step == step and (among is None or f.name in among))
