"""feature_extractor on a saved ``.keras`` file for a derived entry: the head's input."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

keras_builder = pytest.importorskip("converters.keras")  # first: loads triton before TensorFlow
torch = pytest.importorskip("torch")

from converters.keras import feature_extractor, load_conversion  # noqa: E402
from converters.keras_export import export_keras, layer_map_path  # noqa: E402
from converters.onnx_export import export_onnx  # noqa: E402

MODEL = "shufflenet_v2_x0_5"  # the smallest derived torchvision classifier (1.4 M parameters)
SIZE = 64  # input pixels: 2x2 before the head's pooling, the graph is the same as at 224


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    """(entry, PyTorch model, path of its saved .keras file, moved away from its ONNX file)."""
    from zoo.build import build_model
    from zoo.registry import get_entry, list_models

    entry = get_entry(MODEL)
    assert MODEL not in list_models() and entry.feature_at == "input"  # derived, not curated
    model, _ = build_model(entry, weights="random")
    folder = tmp_path_factory.mktemp("derived")
    onnx_path = export_onnx(model, input_shape=(1, 3, SIZE, SIZE), path=folder / f"{MODEL}.onnx")
    keras_path = export_keras(onnx_path, folder / f"{MODEL}.keras")
    moved = folder / "elsewhere" / "copy.keras"  # opened in another place, as a user would
    moved.parent.mkdir()
    shutil.copy(keras_path, moved)
    shutil.copy(layer_map_path(keras_path), layer_map_path(moved))
    return entry, model.eval(), moved


def _head_input(model, head: str, x: np.ndarray) -> np.ndarray:
    """What PyTorch feeds the head (global-average pooled when spatial)."""
    seen = []
    handle = model.get_submodule(head).register_forward_pre_hook(
        lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model(torch.from_numpy(x))
    handle.remove()
    out = seen[0]
    return (out.mean((2, 3)) if out.ndim == 4 else out.flatten(1)).numpy()


def test_derived_entry_features_are_the_heads_input(derived) -> None:
    entry, model, keras_path = derived
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE), dtype=np.float32)
    want = _head_input(model, entry.feature_layer, x)
    features = feature_extractor(keras_path, entry)
    got = np.asarray(features(x.transpose(0, 2, 3, 1)))
    assert features.output_shape == (None, entry.feature_dim) == (None, 1024)
    assert got.shape == want.shape == (3, 1024)
    assert np.abs(want).max() > 0.1  # features with a scale: the comparison means something
    # fp32 round-off only: measured 5e-6 of the largest feature (regnet_x_400mf: 9e-6)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    # the same module's output is the logits, which a derived entry's features are not
    conversion = load_conversion(keras_path)
    logits = feature_extractor(conversion, entry.feature_layer)
    assert logits.output_shape == (None, entry.num_classes)
    by_path = feature_extractor(conversion, entry.feature_layer, at="input")
    np.testing.assert_array_equal(np.asarray(by_path(x.transpose(0, 2, 3, 1))), got)


def test_no_head_or_no_input_map_fails_in_one_line(derived, tmp_path) -> None:
    entry, _, keras_path = derived
    headless = dataclasses.replace(entry, name="my_net-build", feature_layer="", feature_dim=0)
    old = tmp_path / "old.keras"  # a layer map written before module inputs were recorded
    shutil.copy(keras_path, old)
    record = json.loads(layer_map_path(keras_path).read_text())
    del record["module_inputs"]
    layer_map_path(old).write_text(json.dumps(record))
    conversion = load_conversion(old)
    with pytest.raises(ValueError, match=r"^my_net-build: no classifier head was found") as info:
        feature_extractor(conversion, headless)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="'output' or 'input'"):
        feature_extractor(conversion, entry, at="inside")
    with pytest.raises(KeyError, match="convert the model again"):
        feature_extractor(conversion, entry)
    assert feature_extractor(conversion, "conv5").output_shape == (None, 1024)  # outputs still
