"""ONNX -> Keras 3 (TensorFlow backend) with real layers, NHWC inputs and PyTorch layer names.

Importing this package registers the builder's custom layers, so saved
``.keras`` files load with ``keras.saving.load_model`` afterwards.
"""
from __future__ import annotations

from converters.tf_compat import preload_triton

preload_triton()  # before Keras loads TensorFlow; see converters.tf_compat

from converters.keras import layers as layers  # noqa: E402  (registers the custom layers)
from converters.keras import tensor_layers as tensor_layers  # noqa: E402  (registers more)
from converters.keras.builder import KerasConversion, count_weights, find_unsupported, onnx_to_keras
from converters.keras.context import TensorRef
from converters.keras.features import feature_extractor, load_conversion
from converters.keras.graph import UnsupportedOpError
from converters.keras.naming import module_path_of_layer
from converters.keras.ops import SUPPORTED_OPS

__all__ = ["KerasConversion", "SUPPORTED_OPS", "TensorRef", "UnsupportedOpError",
           "count_weights", "feature_extractor", "find_unsupported", "load_conversion",
           "module_path_of_layer", "onnx_to_keras"]
