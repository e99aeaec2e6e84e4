"""The include_top=False view: a backbone cut at a PyTorch module, features pooled."""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Protocol

import keras

from converters.keras.builder import KerasConversion
from converters.keras.context import TensorRef
from converters.keras.layers import ReduceMean


class HasFeatureLayer(Protocol):
    """A catalog entry (``zoo.entry.ModelEntry``), as far as the feature layer goes."""

    name: str
    feature_layer: str
    feature_at: str  # "output" | "input" of feature_layer


def load_conversion(keras_path: str | Path) -> KerasConversion:
    """A saved ``.keras`` artifact with the maps written beside it (``<model>.layers.json``):
    what ``onnx_to_keras`` returned when it was built."""
    keras_path = Path(keras_path)
    # converters.keras_export.layer_map_path's rule, spelled out: that module imports this one
    record_path = keras_path.with_suffix(".layers.json")
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} is missing: the layer map written beside "
                                f"{keras_path.name} when it was converted")
    record = json.loads(record_path.read_text())
    model = keras.saving.load_model(keras_path, compile=False)
    tensors = {name: TensorRef(r["layer"], tuple(r["permutation"]))
               for name, r in record["tensors"].items()}
    # maps written before module inputs were recorded lack them: input features then fail
    return KerasConversion(model, record["layer_map"], tensors, record["module_outputs"],
                           module_inputs=record.get("module_inputs", {}))


def feature_extractor(conversion: KerasConversion | str | Path,
                      feature_layer: str | HasFeatureLayer, *, at: str | None = None
                      ) -> keras.Model:
    """Keras model from the same input to the output of PyTorch module ``feature_layer``
    (its input, with ``at="input"``).

    ``conversion`` is what ``onnx_to_keras`` returned, or the path of a saved ``.keras``
    artifact (its ``.layers.json`` beside it says which layer ends which module).
    ``feature_layer`` is a module path (``"features"``, ``"classifier.5"``) or a
    catalog entry, whose ``feature_at`` says output or input: a derived entry names its
    classifier head, whose input is the feature. A spatial result is global-average
    pooled, so the result is ``(N, C)``; a token output ``(N, seq, C)`` is flattened as
    PyTorch's ``flatten(1)`` does. The layers are shared with ``conversion.model``.
    """
    if isinstance(conversion, keras.Model):
        raise TypeError("feature_extractor needs the module map a bare keras.Model does not "
                        "carry: pass the .keras file's path (its .layers.json beside it) or "
                        "what onnx_to_keras returned")
    if isinstance(conversion, (str, Path)):
        conversion = load_conversion(conversion)
    path, at = _feature_site(feature_layer, at)
    tensor = _feature_tensor(conversion, path, at)
    ref = conversion.tensors[tensor]
    model = conversion.model
    out = model.get_layer(ref.layer).output
    if len(ref.perm) == 4:  # ONNX N, C, H, W: average the spatial axes wherever Keras holds them
        spatial = sorted(ref.perm.index(a) for a in (2, 3))
        name = f"{path}.features" if path else "features"
        pool = (keras.layers.GlobalAveragePooling2D(name=name) if spatial == [1, 2]
                else ReduceMean(spatial, keepdims=False, name=name))
        out = pool(out)
    elif len(ref.perm) != 2:  # tokens (N, seq, C): flattened in ONNX order, as torch's flatten(1)
        if ref.perm[0] != 0:
            raise ValueError(f"{path!r} outputs a tensor whose batch axis is ONNX axis {ref.perm[0]}")
        if list(ref.perm) != sorted(ref.perm):
            out = keras.layers.Permute(tuple(ref.perm.index(a) for a in range(1, len(ref.perm))),
                                       name=f"{path}.features_perm")(out)
        out = keras.layers.Flatten(name=f"{path}.features" if path else "features")(out)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, out, name=f"{model.name}_features")


def _feature_site(feature_layer: str | HasFeatureLayer, at: str | None) -> tuple[str, str]:
    """(module path, "output" | "input") of a path or an entry; ValueError for an entry
    whose model has no classifier head (nothing names its features)."""
    if isinstance(feature_layer, str):
        path, at = feature_layer, at or "output"
    else:
        path, at = feature_layer.feature_layer, at or feature_layer.feature_at
        if not path:
            raise ValueError(f"{feature_layer.name}: no classifier head was found in the model, "
                             "so no feature layer is known; pass a module path instead")
    if at not in ("output", "input"):
        raise ValueError(f"at={at!r}: the feature is a module's 'output' or 'input'")
    return path, at


def _feature_tensor(conversion: KerasConversion, path: str, at: str) -> str:
    """The ONNX tensor name of module ``path``'s output or input; KeyError naming near misses."""
    table = conversion.module_inputs if at == "input" else conversion.module_outputs
    if at == "input" and not table:
        raise KeyError("the layer map records no module inputs (written by an older "
                       "converter): convert the model again")
    tensor = table.get(path)
    if tensor is None:
        close = difflib.get_close_matches(path, list(table), n=4)
        raise KeyError(f"no PyTorch module {path!r} in the converted graph"
                       + (f"; did you mean {', '.join(close)}?" if close else ""))
    return tensor
