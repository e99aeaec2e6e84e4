"""The conversion pipeline end to end on one small catalog model, and the runner contract."""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters.manifest import file_digest, load_manifest
from converters.pipeline import runner_spec
from converters.runners import make_runner
from zoo.build import build_model
from zoo.meta import input_shape
from zoo.registry import get_entry

FORMATS = ["onnx", "tf_savedmodel", "tflite_fp32", "tflite_fp16", "keras"]


def test_every_artifact_exists_with_its_digest(converted):
    folder, manifest = converted
    assert [a.format for a in manifest.artifacts] == FORMATS
    for record in manifest.artifacts:
        path = folder / record.path
        assert path.exists()
        assert file_digest(path) == (record.size_bytes, record.sha256)
        assert record.layout == ("NCHW" if record.format == "onnx" else "NHWC")
    on_disk = load_manifest(folder)
    assert on_disk.weights.kind == "random" and "random weights" in on_disk.weights.label
    assert [a.to_json() for a in on_disk.agreement] == [a.to_json() for a in manifest.agreement]
    assert set(on_disk.step_seconds) >= {"load_pytorch", "onnx", "onnx2tf", "keras"}
    assert on_disk.input_spec["shape"] == [-1, 3, 224, 224]
    assert not list(folder.parent.glob(".*partial*"))


def test_fp32_artifacts_agree_with_pytorch(converted):
    _, manifest = converted
    by_format = {a.artifact: a for a in manifest.agreement}
    assert set(by_format) == set(FORMATS)
    for fmt in ("onnx", "tf_savedmodel", "tflite_fp32", "keras"):
        assert by_format[fmt].max_abs_err <= 1e-4, by_format[fmt]
        assert by_format[fmt].top1_agreement == 1.0
    fp16 = by_format["tflite_fp16"]
    assert fp16.max_abs_err <= fp16.tolerance and fp16.top1_agreement >= 0.9


@pytest.mark.parametrize("fmt", FORMATS)
def test_runner_contract(converted, fmt):
    """Every runner: same inputs in (canonical NCHW), named logits out, any batch size."""
    folder, manifest = converted
    model, _ = build_model("squeezenet1_1", weights=manifest.weights.spec)
    runner = make_runner(runner_spec(folder, manifest.artifact(fmt), threads=1))
    x = np.random.default_rng(0).standard_normal(input_shape(get_entry(manifest.model), 3), dtype=np.float32)
    with pytest.raises(RuntimeError, match="activate"):
        runner.infer({"input": x})
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with runner:
        for batch in (1, 3):
            out = runner.infer({"input": x[:batch]})
            assert list(out) == ["logits"] and out["logits"].shape == (batch, 1000)
            atol = 5e-2 if fmt == "tflite_fp16" else 1e-4
            np.testing.assert_allclose(out["logits"], ref[:batch], atol=atol, rtol=0)
    assert not runner.is_active


def test_keras_graph_and_eager_calls_agree(converted):
    """The Keras runner traces one tf.function (any batch); eager calls give the same logits."""
    folder, manifest = converted
    spec = runner_spec(folder, manifest.artifact("keras"), threads=1)
    x = np.random.default_rng(1).standard_normal(input_shape(get_entry(manifest.model), 3),
                                                 dtype=np.float32)
    with make_runner(spec) as graph, make_runner(spec, graph=False) as eager:
        for batch in (1, 3):
            np.testing.assert_allclose(graph.infer({"input": x[:batch]})["logits"],
                                       eager.infer({"input": x[:batch]})["logits"],
                                       atol=1e-5, rtol=0)
        assert graph._call.experimental_get_tracing_count() == 1  # one trace for both batches


def test_tensor_maps_are_recorded(converted):
    """TF/TFLite and Keras tensor maps: every ONNX Conv output has a home and a layout."""
    import onnx

    folder, manifest = converted
    keras_map = json.loads((folder / manifest.artifact("keras").path)
                           .with_suffix(".layers.json").read_text())
    tf_map = json.loads((folder / "tf_tensor_map.json").read_text())
    proto = onnx.load(str(folder / manifest.artifact("onnx").path))
    convs = [n.output[0] for n in proto.graph.node if n.op_type == "Conv"]
    assert convs
    for name in convs:
        assert keras_map["tensors"][name]["permutation"] == [0, 2, 3, 1]
        assert tf_map[name]["permutation"] == [0, 2, 3, 1]
