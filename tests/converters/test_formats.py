"""The format registry is the one list of formats: convert, runners, parity and bench read it."""
from __future__ import annotations

import dataclasses

import pytest

from converters.formats import FORMATS, Format, default_formats, formats_of_step, get_format, register


def test_registry_drives_pipeline_runners_parity_and_bench(monkeypatch) -> None:
    from bench.latency import artifacts, markdown, runtimes
    from converters.parity.run import default_pairs
    from converters.pipeline import ConvertOptions
    from converters.runners import make_runner
    from converters.runners.base import RunnerSpec
    from converters.runners.onnxrt_runner import OnnxrtRunner

    assert ConvertOptions().formats == default_formats() == (
        "onnx", "tf_savedmodel", "tflite_fp32", "tflite_fp16", "keras")
    assert formats_of_step("tf") == artifacts.TF_FORMATS == (
        "tf_savedmodel", "tflite_fp32", "tflite_fp16")
    assert markdown.SIZE_FORMATS == default_formats()
    for fmt in FORMATS.values():  # every format has a bench runtime with its precision/layout
        rt = next(r for r in runtimes.RUNTIMES.values() if r.artifact == fmt.name)
        assert (rt.precision, rt.layout) == (fmt.precision, fmt.layout)

    # one entry: a new format is converted by default, paired in parity, run by its runner
    extra = Format("onnx_copy", "onnx", "NCHW", "int8", "onnxruntime", "onnx", "{stem}_c.onnx",
                   "test entry")
    monkeypatch.setitem(FORMATS, extra.name, extra)
    assert ConvertOptions().formats[-1] == "onnx_copy"
    assert default_pairs()[-1] == ("onnx", "onnx_copy")
    assert isinstance(make_runner(RunnerSpec("onnx_copy", "m_c.onnx")), OnnxrtRunner)
    assert extra.path_for("resnet18") == "resnet18_c.onnx"


def test_unknown_and_duplicate_formats_fail_clearly() -> None:
    from converters.runners import make_runner
    from converters.runners.base import RunnerSpec

    with pytest.raises(ValueError, match="unknown format 'onnx_fp8'; known: onnx, tf_savedmodel"):
        get_format("onnx_fp8")
    with pytest.raises(ValueError, match="no runner for artifact format 'onnx_fp8'"):
        make_runner(RunnerSpec("onnx_fp8", "x"))
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(get_format("onnx")))
