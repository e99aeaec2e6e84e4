"""MaxPool pads before onnx2tf (``converters.pool_pads``): zeros after a Relu, the edge
repeated otherwise, both exact; and the int8 TFLite of a padded max pool keeps a sane range
and loads with XNNPACK, where onnx2tf's -inf pad (a PADV2 of float32's lowest value) gave it
a scale of 1.3e36 and "failed to create XNNPACK runtime" (resnet18, squeezenet1_0)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from converters.onnx_export import export_onnx

SIZE = 16


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True),
    nn.MaxPool2d(2, 3, padding=1, ceil_mode=True), nn.MaxPool2d(4, 3, padding=2, ceil_mode=True),
], ids=repr)
@pytest.mark.parametrize("size", [9, 10])
@pytest.mark.parametrize("relu", [False, True], ids=["edge", "zeros"])
def test_padded_max_pools_rewritten_exactly(tmp_path: Path, pool: nn.Module, size: int,
                                            relu: bool) -> None:
    import onnx
    import onnxruntime as ort

    from converters.pool_pads import edge_pad_max_pools, pool_axis

    extra = pool_axis(size, pool.kernel_size, pool.stride, pool.padding, pool.padding,
                      pool.ceil_mode)[1]
    padded = bool(pool.padding or extra)  # 9 px, 3 stride 2, ceil: the windows fit exactly
    net = nn.Sequential(nn.ReLU(), pool) if relu else pool
    path = export_onnx(net, input_shape=(1, 2, size, size), path=tmp_path / "pool.onnx")
    model = onnx.load(str(path))
    added = edge_pad_max_pools(model)
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    modes = [a.s.decode() for n in pads for a in n.attribute if a.name == "mode"]
    assert len(added) == len(pads) == int(padded)
    assert modes == (["constant" if relu else "edge"] if padded else [])
    pooled = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert not padded or {a.name for a in pooled[0].attribute} & {"pads", "ceil_mode"} == set()
    x = np.random.default_rng(1).standard_normal((2, 2, size, size)).astype(np.float32) - 2.0
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]
                               ).run(None, {"input": x})[0]
    want = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_array_equal(got, want)


def test_unpadded_pool_and_too_wide_pads_left_alone(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    from converters.pool_pads import edge_pad_max_pools

    path = export_onnx(nn.MaxPool2d(2, 2), input_shape=(1, 2, 8, 8), path=tmp_path / "p.onnx")
    assert edge_pad_max_pools(onnx.load(str(path))) == []
    wide = helper.make_model(helper.make_graph(  # pads of the kernel's size: all-pad windows
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[2, 2, 2, 2])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]))
    assert edge_pad_max_pools(wide) == []


class _PoolNet(nn.Module):
    """conv -> relu -> max pool (pad 1) -> + conv -> max pool (ceil) -> mean -> linear: a
    resnet18 stem and a squeezenet1_0 pool, the second fed negative values too."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.c1(x)), 3, 2, 1)
        h = nn.functional.max_pool2d(h + self.c2(h), 3, 2, ceil_mode=True)
        return self.fc(h.mean((2, 3)))


def _int8_of_pool_net(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The int8 TFLite (float I/O) of ``_PoolNet`` through onnx2tf, NHWC test inputs and
    PyTorch's logits for them."""
    from converters.tf_export import convert_onnx_to_tf
    from converters.tflite_int8 import TfliteCalibrated

    torch.manual_seed(0)
    net = _PoolNet().eval()
    onnx_path = export_onnx(net, input_shape=(1, 3, 32, 32), path=folder / "pools.onnx")
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 255, (32, 32, 3), np.uint8) for _ in range(2)]
    art = convert_onnx_to_tf(onnx_path, folder, calibration_images=photos)
    cal = [rng.normal(0, 1, (1, 32, 32, 3)).astype(np.float32) for _ in range(16)]
    with TfliteCalibrated.of(art.saved_model, cal) as c:
        int8 = c.quantize(folder / "pools_int8.tflite")
    x = rng.normal(0, 1, (4, 3, 32, 32)).astype(np.float32)
    return int8, x.transpose(0, 2, 3, 1), net(torch.from_numpy(x)).detach().numpy()


def _largest_scale(path: Path) -> float:
    from ai_edge_litert.interpreter import Interpreter

    return max(float(t["quantization_parameters"]["scales"].max())
               for t in Interpreter(model_path=str(path)).get_tensor_details()
               if len(t["quantization_parameters"]["scales"]))


def _xnnpack_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits from the interpreter with its default delegate (XNNPACK), as the runner has."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def test_int8_tflite_of_padded_max_pools_runs_on_xnnpack(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from converters.tflite_int8 import unusable_scales

    int8, x, want = _int8_of_pool_net(tmp_path)
    ops = {op["op_name"] for op in Interpreter(model_path=str(int8))._get_ops_details()}
    assert "PADV2" not in ops and {"PAD", "MIRROR_PAD"} <= ops  # zeros after relu, edge after add
    assert _largest_scale(int8) < 1.0  # activations ~N(0, 1): no tensor spans float32's range
    assert unusable_scales(int8.read_bytes()) == []
    got = _xnnpack_logits(int8, x)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max(), (got, want)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_onnx2tf_minus_inf_pad_breaks_int8_on_xnnpack(tmp_path: Path, monkeypatch) -> None:
    """The failure the rewrite fixes, reproduced with it turned off."""
    import converters.tf_export as tf_export

    from converters.tflite_int8 import unusable_scales

    monkeypatch.setattr(tf_export, "_edge_pad_max_pools", lambda path: [])
    int8, x, _ = _int8_of_pool_net(tmp_path)
    assert _largest_scale(int8) > 1e30
    # what make_tflite_int8 now refuses to write: the pool's pad, its input and output
    assert any("PadV2" in name for name in unusable_scales(int8.read_bytes()))
    with pytest.raises(RuntimeError, match="failed to create XNNPACK runtime"):
        _xnnpack_logits(int8, x)


@pytest.mark.parametrize("relu", [False, True], ids=["lowest", "zeros"])
def test_keras_max_pool_pads_zeros_after_relu(tmp_path: Path, relu: bool) -> None:
    """The Keras builder pads a Relu's output with zeros (TFLite int8 keeps its range), any
    other input with float32's lowest value, as before; both as PyTorch computes."""
    from converters.tf_compat import preload_triton

    preload_triton()
    import keras

    from converters.keras import onnx_to_keras

    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)) if relu \
        else nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
    path = export_onnx(net, input_shape=(1, 2, 10, 10), path=tmp_path / "pool.onnx")
    model = onnx_to_keras(path).model
    zero_pads = [la for la in model.layers if isinstance(la, keras.layers.ZeroPadding2D)]
    assert len(zero_pads) == int(relu)
    x = np.random.default_rng(1).standard_normal((2, 2, 10, 10)).astype(np.float32) - 1.0
    got = np.asarray(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(got, net(torch.from_numpy(x)).detach().numpy())
