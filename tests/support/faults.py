"""Fault injection: scale one layer's weights inside a converted artifact.

Used to prove that parity names the right layer: perturb a layer, and the
first divergent tensor must be that layer's output (or, in TFLite, the fused
op that contains it).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from converters.runners.base import to_nhwc


def perturb_onnx(onnx_path: Path, initializer: str, *, scale: float) -> None:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path))
    for i, tensor in enumerate(proto.graph.initializer):
        if tensor.name == initializer:
            array = numpy_helper.to_array(tensor) * np.float32(scale)
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, initializer))
            onnx.save(proto, str(onnx_path))
            return
    raise KeyError(f"{onnx_path.name} has no initializer {initializer!r}")


def perturb_keras(keras_path: Path, onnx_node: str, *, scale: float) -> str:
    """Scale the kernel of the Keras layer that computes ``onnx_node``; returns the layer name."""
    import keras

    import converters.keras  # noqa: F401  registers custom layers
    from converters.keras_export import layer_map_path

    layer_name = json.loads(layer_map_path(keras_path).read_text())["layer_map"][onnx_node]
    model = keras.saving.load_model(keras_path, compile=False)
    layer = model.get_layer(layer_name)
    weights = layer.get_weights()
    weights[0] = weights[0] * np.float32(scale)
    layer.set_weights(weights)
    model.save(keras_path)
    return layer_name


def perturb_tflite(tflite_path: Path, weight_onnx_layout: np.ndarray, *, scale: float,
                   dtype: type = np.float32) -> None:
    """Scale a conv filter stored in the flatbuffer (TFLite layout OHWI) in place.

    The filter's bytes are found verbatim in the file; exactly one match is required.
    """
    filt = to_nhwc(weight_onnx_layout).astype(dtype)  # OIHW -> OHWI: the same permutation
    data = bytearray(tflite_path.read_bytes())
    needle = filt.tobytes()
    start = data.find(needle)
    if start < 0 or data.find(needle, start + 1) >= 0:
        raise ValueError(f"filter bytes found {'0' if start < 0 else 'several'} times in "
                         f"{tflite_path.name}")
    data[start:start + len(needle)] = (filt * dtype(scale)).astype(dtype).tobytes()
    tflite_path.write_bytes(bytes(data))
