"""Interchangeable runners: one per artifact format, chosen by ``make_runner``."""
from __future__ import annotations

from converters.runners.base import NCHW_TO_NHWC, BaseRunner, RunnerSpec, to_nhwc


def make_runner(spec: RunnerSpec, **kwargs) -> BaseRunner:
    """The runner for ``spec.format`` (``onnx``, ``tf_savedmodel``, ``tflite_*``, ``keras``)."""
    if spec.format == "onnx":
        from converters.runners.onnxrt_runner import OnnxrtRunner
        return OnnxrtRunner(spec, **kwargs)
    if spec.format == "tf_savedmodel":
        from converters.runners.tf_runner import SavedModelRunner
        return SavedModelRunner(spec, **kwargs)
    if spec.format == "keras":
        from converters.runners.tf_runner import KerasRunner
        return KerasRunner(spec, **kwargs)
    if spec.format.startswith("tflite"):
        from converters.runners.tflite_runner import TfliteRunner
        return TfliteRunner(spec, **kwargs)
    if spec.format == "pytorch":
        from converters.runners.torch_runner import TorchRunner
        return TorchRunner(spec, **kwargs)
    raise ValueError(f"no runner for artifact format {spec.format!r}")


__all__ = ["NCHW_TO_NHWC", "BaseRunner", "RunnerSpec", "make_runner", "to_nhwc"]
