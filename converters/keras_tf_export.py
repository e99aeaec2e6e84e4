"""The own path to TF: the ``.keras`` model -> SavedModel (Keras export) -> TFLite fp32/fp16.

Used where onnx2tf fails or makes artifacts that do not run or agree (``converters.tf_step``).
The SavedModel's ``serving_default`` takes ``input`` (NHWC, dynamic batch) and returns
``logits``, as onnx2tf's does; GELU is TFLite's builtin (the builder fuses the exact Erf
composition into one GELU layer). The tensor map parity reads beside the TFLite files
(``tf_tensor_map.json``) is derived from the Keras layer map: in a TFLite file converted
from a Keras export, an activation's name scope is its Keras layer's name.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from converters.formats import get_format
from converters.onnx_export import INPUT_NAME, OUTPUT_NAME
from converters.tf_export import TENSOR_MAP, ConversionError, TfArtifacts, keep_fp32_weights
from zoo.atomic import atomic_path
from zoo.exits import raise_if_exhausted

CONVERTER = "keras"


def export_tf_from_keras(keras_path: Path, out_dir: Path, *, stem: str, tflite: bool = True
                         ) -> TfArtifacts:
    """Write ``saved_model/``, ``<stem>_float32.tflite``, ``<stem>_float16.tflite`` (unless
    ``tflite`` is False) and the tensor map into ``out_dir`` from the Keras artifact at
    ``keras_path``."""
    import keras

    import converters.keras  # noqa: F401  registers the custom layers for loading
    from converters.keras_export import layer_map_path

    model = keras.saving.load_model(keras_path, compile=False)
    saved_model = out_dir / get_format("tf_savedmodel").path_for(stem)
    fp32 = out_dir / get_format("tflite_fp32").path_for(stem)
    fp16 = out_dir / get_format("tflite_fp16").path_for(stem)
    try:
        export_saved_model(model, saved_model)
        if tflite:
            fp32.write_bytes(tflite_bytes(saved_model, fp16=False))
            fp16.write_bytes(tflite_bytes(saved_model, fp16=True))
    except Exception as exc:  # the TFLite converter's MLIR errors are long: keep the first line
        raise_if_exhausted(exc)
        from converters.errors import error_line

        raise ConversionError(f"Keras export of {keras_path.name} failed: {error_line(exc)}"
                              ) from None
    kept = keep_fp32_weights(fp32, fp16) if tflite else None
    layers = json.loads(layer_map_path(keras_path).read_text())["tensors"]
    map_path = out_dir / TENSOR_MAP
    map_path.write_text(json.dumps(tensor_map_from_keras(layers), indent=1) + "\n")
    if not tflite:
        return TfArtifacts(saved_model, None, None, map_path, converter=CONVERTER)
    return TfArtifacts(saved_model, fp32, fp16, map_path, converter=CONVERTER, fp32_kept=kept)


def export_saved_model(model, path: Path) -> Path:
    """``model`` as a SavedModel whose ``serving_default`` maps ``input`` to ``logits``."""
    import keras
    import tensorflow as tf

    if path.exists():
        shutil.rmtree(path)
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name=INPUT_NAME)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda x: {OUTPUT_NAME: model(x, training=False)},
                         input_signature=[spec])
    with atomic_path(path) as tmp:
        archive.write_out(str(tmp), verbose=False)
    return path


def tflite_bytes(saved_model: Path, *, fp16: bool) -> bytes:
    """TFLite builtins only (no Flex ops: LiteRT's interpreter has none); ``fp16`` stores the
    weights in float16, as onnx2tf's ``_float16.tflite`` does."""
    import tensorflow as tf

    from converters.tf_compat import native_stderr_silenced

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    with native_stderr_silenced():  # MLIR's per-function progress lines
        return converter.convert()


def tensor_map_from_keras(tensors: dict[str, dict]) -> dict[str, dict]:
    """ONNX tensor -> {tf_layer, tf_aliases, op, permutation, scope}, the schema of onnx2tf's
    map, from the Keras layer map (``<model>.layers.json``'s ``tensors``).

    ``scope: "keras"`` says that TFLite names the tensor after the layer's name scope, which
    TensorFlow may number (``layer1.0.conv1.Conv_1``) when it traces the model again."""
    return {name: {"tf_layer": rec["layer"], "tf_aliases": [],
                   "op": re.sub(r"_\d+$", "", rec["layer"].rpartition(".")[2]),
                   "permutation": rec["permutation"],
                   "scope": "keras"}
            for name, rec in tensors.items()}
