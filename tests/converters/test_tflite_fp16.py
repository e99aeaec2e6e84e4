"""TFLite fp16 files keep in float32 the weights float16 cannot hold: a 1e-6 layer scale that
the TFLite converter folds into the 1x1 convolution before it (timm's and torchvision's
initial value) leaves weights near 1e-7, which float16 stores as one- or two-bit subnormals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.tflite_fp16 import MAX_REL_ERR, _fp16_fails, keep_fp32_where_fp16_fails

SIZE, CH = 8, 32


def _saved_model(folder: Path, *, gamma: float, skip: bool) -> Path:
    """NHWC 8x8x32 -> 1x1 conv (N(0, 0.05) weights) x ``gamma`` per channel (+ the input
    where ``skip``): a layer-scaled residual branch, as in ConvNeXt, seeded."""
    from converters.tf_compat import preload_triton

    preload_triton()
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class Branch(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(rng.normal(0, 0.05, (1, 1, CH, CH)).astype(np.float32))
            self.gamma = tf.Variable(np.full(CH, gamma, np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, CH], tf.float32)])
        def __call__(self, x):
            y = tf.nn.conv2d(x, self.w, 1, "SAME") * self.gamma
            return y + x if skip else tf.nn.relu(y)

    path = folder / "saved_model"
    tf.saved_model.save(Branch(), str(path))
    return path


@pytest.fixture(scope="module")
def tflite_pair(tmp_path_factory):
    """(fp32, fp16) TFLite files of models made by the product's own converter call, keyed
    'layer_scale' (gamma 1e-6, the branch alone is the output) and 'plain' (gamma 1, skip)."""
    from converters.keras_tf_export import tflite_bytes

    files = {}
    for name, gamma, skip in (("layer_scale", 1e-6, False), ("plain", 1.0, True)):
        folder = tmp_path_factory.mktemp(name)
        saved = _saved_model(folder, gamma=gamma, skip=skip)
        fp32, fp16 = folder / "m_float32.tflite", folder / "m_float16.tflite"
        fp32.write_bytes(tflite_bytes(saved, fp16=False))
        fp16.write_bytes(tflite_bytes(saved, fp16=True))
        files[name] = fp32, fp16
    return files


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    index = it.get_input_details()[0]["index"]
    it.resize_tensor_input(index, x.shape)
    it.allocate_tensors()
    it.set_tensor(index, x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def test_a_folded_layer_scale_is_kept_in_float32_and_the_branch_comes_back(tflite_pair,
                                                                           tmp_path):
    fp32, fp16 = tflite_pair["layer_scale"]
    x = np.random.default_rng(1).normal(0, 1, (2, SIZE, SIZE, CH)).astype(np.float32)
    ref = _run(fp32, x)
    assert 1e-7 < np.abs(ref).max() < 1e-5  # the branch: 1e-6 x conv
    assert _rel_err(_run(fp16, x), ref) > 0.1  # TFLite's fp16 file loses it
    repaired = tmp_path / fp16.name
    repaired.write_bytes(fp16.read_bytes())
    kept = keep_fp32_where_fp16_fails(fp32, repaired)
    assert len(kept) == 1 and "(32x1x1x32): float16 misses it by" in kept[0], kept
    assert _rel_err(_run(repaired, x), ref) < 1e-6  # float32 weights, float32 arithmetic
    # the weight went back to float32: 32x32 weights at 2 more bytes each, less the
    # DEQUANTIZE op and float16 tensor gone
    grown = repaired.stat().st_size - fp16.stat().st_size
    assert abs(grown - 2 * CH * CH) < 512, grown


def test_weights_float16_holds_are_left_alone(tflite_pair, tmp_path):
    fp32, fp16 = tflite_pair["plain"]
    copy = tmp_path / fp16.name
    copy.write_bytes(fp16.read_bytes())
    assert keep_fp32_where_fp16_fails(fp32, copy) == []
    assert copy.read_bytes() == fp16.read_bytes()


def test_files_of_two_different_graphs_are_refused(tflite_pair, tmp_path):
    fp32, _ = tflite_pair["plain"]
    _, fp16 = tflite_pair["layer_scale"]
    copy = tmp_path / fp16.name
    copy.write_bytes(fp16.read_bytes())
    with pytest.raises(ValueError, match="are not those of m_float32.tflite"):
        keep_fp32_where_fp16_fails(fp32, copy)
    assert copy.read_bytes() == fp16.read_bytes()


def test_what_float16_cannot_hold():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, 1000).astype(np.float32)
    assert _fp16_fails(w) == ""  # normal numbers: about 1.5e-4 relative, under the bar
    assert _fp16_fails(np.zeros(4, np.float32)) == ""
    assert _fp16_fails(w * 1e-6).startswith("float16 misses it by ")  # subnormal
    assert _fp16_fails(np.float32([1.0, 1e5])) == "overflows float16 (max |w| 1e+05)"
    # the bar sits between float16's rounding of normal numbers and a layer scale's 5 bits
    normal = np.linalg.norm(w.astype(np.float16) - w) / np.linalg.norm(w)
    scale = np.float32([1e-6])
    assert normal < MAX_REL_ERR / 3 and abs(scale.astype(np.float16) - scale) / scale > 0.01
