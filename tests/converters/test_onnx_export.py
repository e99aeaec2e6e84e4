"""PyTorch -> ONNX on a tiny model: names, dynamic batch, numerics."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from converters.onnx_export import export_onnx
from converters.onnx_names import ModulePaths


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.stem(x), 1), 1))


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    model = Tiny().eval()
    model.stem[1].running_mean.uniform_(-1, 1)
    model.stem[1].running_var.uniform_(0.5, 2)
    return model


def test_export_keeps_module_paths_bn_and_state_dict_names(tmp_path):
    path = export_onnx(_tiny(), input_shape=(1, 3, 16, 16), path=tmp_path / "tiny.onnx")
    proto = onnx.load(str(path))
    inits = {t.name for t in proto.graph.initializer}
    paths = ModulePaths(frozenset(inits))
    modules = {n.op_type: paths.of_node(n.name, tuple(n.input)) for n in proto.graph.node}
    assert modules["Conv"] == "stem.0" and modules["BatchNormalization"] == "stem.1"
    assert modules["Relu"] == "stem.2" and modules["Gemm"] == "head"
    assert {"stem.0.weight", "stem.1.running_mean", "stem.1.running_var", "head.weight"} <= inits
    assert not any(n.op_type == "Identity" for n in proto.graph.node)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and proto.opset_import[0].version >= 17


def test_export_matches_torch_at_several_batch_sizes(tmp_path):
    model = _tiny()
    path = export_onnx(model, input_shape=(1, 3, 16, 16), path=tmp_path / "tiny.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16), dtype=np.float32)
        (y,) = session.run(["logits"], {"input": x})
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y, ref, atol=1e-5, rtol=0)


def test_module_paths_of_nested_scopes():
    paths = ModulePaths(frozenset({"layer1.0.conv2.weight", "features.1.conv.0.0.weight"}))
    assert paths.of_node("/Flatten") == ""
    assert paths.of_node("/layer1/layer1.0/relu_1/Relu") == "layer1.0.relu"
    assert paths.of_node("/features/features.1/conv/conv.0/conv.0.2/Clip") == "features.1.conv.0.2"
    assert paths.of_node("/layer1/layer1.0/conv2/Conv", ("x", "layer1.0.conv2.weight")) == \
        "layer1.0.conv2"
