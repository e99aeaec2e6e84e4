"""Interchangeable runners: one per runner kind of ``converters.formats``, chosen by
``make_runner``."""
from __future__ import annotations

from typing import Callable

from converters.runners.base import NCHW_TO_NHWC, BaseRunner, RunnerSpec, to_nhwc


def _onnxruntime(spec: RunnerSpec, **kwargs) -> BaseRunner:
    from converters.runners.onnxrt_runner import OnnxrtRunner
    return OnnxrtRunner(spec, **kwargs)


def _tf_savedmodel(spec: RunnerSpec, **kwargs) -> BaseRunner:
    from converters.runners.tf_runner import SavedModelRunner
    return SavedModelRunner(spec, **kwargs)


def _keras(spec: RunnerSpec, **kwargs) -> BaseRunner:
    from converters.runners.tf_runner import KerasRunner
    return KerasRunner(spec, **kwargs)


def _tflite(spec: RunnerSpec, **kwargs) -> BaseRunner:
    from converters.runners.tflite_runner import TfliteRunner
    return TfliteRunner(spec, **kwargs)


def _pytorch(spec: RunnerSpec, **kwargs) -> BaseRunner:
    from converters.runners.torch_runner import TorchRunner
    return TorchRunner(spec, **kwargs)


# runner kind (``Format.runner``) -> constructor; "pytorch" is the reference, no artifact
RUNNER_KINDS: dict[str, Callable[..., BaseRunner]] = {
    "onnxruntime": _onnxruntime, "tf_savedmodel": _tf_savedmodel, "keras": _keras,
    "tflite": _tflite, "pytorch": _pytorch}


def make_runner(spec: RunnerSpec, **kwargs) -> BaseRunner:
    """The runner for ``spec.format`` (a registered format, or ``pytorch``)."""
    from converters.formats import FORMATS

    kind = "pytorch" if spec.format == "pytorch" else getattr(FORMATS.get(spec.format), "runner",
                                                              None)
    if kind not in RUNNER_KINDS:
        raise ValueError(f"no runner for artifact format {spec.format!r}")
    return RUNNER_KINDS[kind](spec, **kwargs)


__all__ = ["NCHW_TO_NHWC", "BaseRunner", "RunnerSpec", "RUNNER_KINDS", "make_runner", "to_nhwc"]
