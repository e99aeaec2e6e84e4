"""ONNX -> ``.keras`` (Keras 3): real layers built by ``converters.keras``."""
from __future__ import annotations

import json
from pathlib import Path

from zoo.atomic import atomic_path


def layer_map_path(keras_path: Path) -> Path:
    return keras_path.with_suffix(".layers.json")


def export_keras(onnx_path: Path, path: Path) -> Path:
    """Build the Keras model from the ONNX graph and save it, with its tensor map beside it.

    The map records, for every ONNX tensor, the Keras layer that computes it and
    the axis permutation from the ONNX layout (``perm[j]`` = ONNX axis held by
    Keras axis ``j``), so parity aligns tensors without guessing.
    """
    from converters.keras import onnx_to_keras

    conversion = onnx_to_keras(onnx_path)
    with atomic_path(path) as tmp:
        conversion.model.save(tmp)
    record = {
        "tensors": {name: {"layer": ref.layer, "permutation": list(ref.perm)}
                    for name, ref in conversion.tensors.items()},
        "layer_map": conversion.layer_map,
        "module_outputs": conversion.module_outputs,
        "module_inputs": conversion.module_inputs,
    }
    layer_map_path(path).write_text(json.dumps(record, indent=1) + "\n")
    return path
