"""The own path to TF (Keras model -> SavedModel -> TFLite) and the TF step that chooses it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

keras_builder = pytest.importorskip("converters.keras")  # first: loads triton before TensorFlow
torch = pytest.importorskip("torch")
nn = torch.nn

from converters.agreement import compare_logits, failed_run  # noqa: E402
from converters.keras_export import export_keras  # noqa: E402
from converters.keras_tf_export import export_tf_from_keras  # noqa: E402
from converters.manifest import Manifest, artifact_record  # noqa: E402
from converters.onnx_export import export_onnx  # noqa: E402
from converters.parity.capture import (capture_keras_saved_model, capture_onnx,  # noqa: E402
                                       capture_tflite)
from converters.parity.graph_index import index_graph  # noqa: E402
from converters.parity.run import compare  # noqa: E402
from converters.runners import NCHW_TO_NHWC, RunnerSpec, make_runner  # noqa: E402
from converters.tf_export import TENSOR_MAP, ConversionError  # noqa: E402
from converters.tolerance import DEFAULT_POLICY  # noqa: E402
from zoo.weights import WeightsSource  # noqa: E402

SIZE = 32
TF_FORMATS = ("tf_savedmodel", "tflite_fp32", "tflite_fp16")


def tiny_vit() -> nn.Module:
    """torchvision's VisionTransformer at toy size: class token, attention, exact GELU."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=SIZE, patch_size=8, num_layers=2, num_heads=2,
                              hidden_dim=32, mlp_dim=64, num_classes=10)
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision zero-initialises the head
    return model.eval()


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


def _convert(model: nn.Module, folder: Path, stem: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, input_shape=(1, 3, SIZE, SIZE), path=folder / f"{stem}.onnx")
    return onnx_path, export_keras(onnx_path, folder / f"{stem}.keras")


def _x(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, SIZE, SIZE), dtype=np.float32)


def _logits(fmt: str, path: Path, x: np.ndarray) -> np.ndarray:
    spec = RunnerSpec(fmt, str(path), input_permutation=None if fmt == "onnx" else NCHW_TO_NHWC)
    with make_runner(spec) as runner:
        return runner.infer({"input": x})["logits"]


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    onnx_path, keras_path = _convert(tiny_vit(), folder, "tvit")
    return onnx_path, keras_path, export_tf_from_keras(keras_path, folder, stem="tvit")


def test_own_path_artifacts_agree_with_onnx(vit) -> None:
    onnx_path, _, tf = vit
    assert tf.converter == "keras"
    x = _x()
    ref = _logits("onnx", onnx_path, x)
    assert np.abs(ref).max() > 0.5  # a head that is not zero: the comparison means something
    for fmt, path in zip(TF_FORMATS, (tf.saved_model, tf.tflite_fp32, tf.tflite_fp16)):
        out = _logits(fmt, path, x)
        assert out.shape == (4, 10)
        agreement = compare_logits(fmt, "fp16" if fmt.endswith("fp16") else "fp32", out, ref)
        assert agreement.passed, agreement
        if fmt != "tflite_fp16":
            assert agreement.max_abs_err < 1e-5, agreement


def test_gelu_is_one_layer_and_the_tflite_builtin(vit) -> None:
    _, keras_path, tf = vit
    from ai_edge_litert.interpreter import Interpreter

    import keras

    model = keras.saving.load_model(keras_path, compile=False)
    assert [l.name for l in model.layers if "Gelu" in l.name or "Erf" in l.name] == [
        f"encoder.layers.encoder_layer_{i}.mlp.1.Gelu" for i in (0, 1)]
    ops = {op["op_name"] for op in Interpreter(str(tf.tflite_fp32))._get_ops_details()}
    assert "GELU" in ops and not any("Erf" in op or "Flex" in op for op in ops), ops


@pytest.mark.parametrize("fmt", TF_FORMATS)
def test_per_layer_parity_names_layers_in_keras_made_artifacts(vit, fmt) -> None:
    onnx_path, keras_path, tf = vit
    x = _x(3)
    index = index_graph(onnx_path)
    if fmt == "tf_savedmodel":
        test = capture_keras_saved_model(keras_path, tf.saved_model, x)
    else:
        tensor_map = json.loads(tf.tensor_map.read_text())
        test = capture_tflite(getattr(tf, fmt), tensor_map, x, fmt)
    precision = "fp16" if fmt.endswith("fp16") else "fp32"
    report = compare(capture_onnx(onnx_path, x), test, index, model="tiny_vit", weights="seed 0",
                     precision=precision, inputs="3 N(0,1)", policy=DEFAULT_POLICY)
    assert report.passed, report.first_divergent
    # tensors are found by Keras layer name: 81 of 107 in the Keras model (GELU's Div, Erf,
    # Add and Mul and the bias-less MatMuls live inside one layer each), 42 in TFLite, which
    # fuses more (measured)
    assert report.aligned_fraction > (0.75 if fmt == "tf_savedmodel" else 0.35), (
        len(report.diffs), report.n_sites)
    assert any("mlp.1/Gelu" in d.name or d.name.endswith("mlp.1/Mul_1_output_0")
               for d in report.diffs)


# -- the TF step: onnx2tf first, the own path where it fails or disagrees ----------------
def _manifest(records) -> Manifest:
    return Manifest("tiny_cnn", WeightsSource("random", "random weights (seed 0)", "", False, 0),
                    {}, list(records))


def _agreement(onnx_path: Path):
    x = _x()
    ref = _logits("onnx", onnx_path, x)

    def check(folder: Path, manifest: Manifest):
        out = []
        for r in manifest.artifacts:
            try:
                out.append(compare_logits(r.format, r.precision,
                                          _logits(r.format, folder / r.path, x), ref))
            except Exception as exc:  # noqa: BLE001  as check_agreement: a failed run
                from converters.agreement import failed_run

                out.append(failed_run(r.format, r.precision, len(x), exc))
        return out
    return check


def _step(name: str, text: str):
    import contextlib

    return contextlib.nullcontext()


def test_auto_exports_from_keras_when_onnx2tf_raises(tmp_path, monkeypatch) -> None:
    import converters.tf_export
    from converters.tf_step import run_tf_step

    def failing(*args, **kwargs):
        raise ConversionError("onnx2tf failed on m.onnx: boom at /Conv")

    monkeypatch.setattr(converters.tf_export, "convert_onnx_to_tf", failing)
    onnx_path, keras_path = _convert(tiny_cnn(), tmp_path, "m")
    with pytest.raises(ConversionError, match="boom"):
        run_tf_step(onnx_path, tmp_path, converter="onnx2tf", keras_path=lambda: keras_path,
                    calibration_images=[], step=_step)
    step = run_tf_step(onnx_path, tmp_path, converter="auto", keras_path=lambda: keras_path,
                       calibration_images=[], step=_step)
    assert [(r.format, r.converter) for r in step.records] == [(f, "keras") for f in TF_FORMATS]
    assert step.note == ("onnx2tf failed on m.onnx: boom at /Conv (log: onnx2tf.log): "
                         "SavedModel/TFLite from the Keras model")  # one line
    agreement = _agreement(onnx_path)(tmp_path, _manifest(step.records))
    assert all(a.passed for a in agreement), agreement
    with pytest.raises(ValueError, match="--tf-converter must be one of auto, onnx2tf, keras"):
        run_tf_step(onnx_path, tmp_path, converter="tflite", keras_path=lambda: keras_path,
                    calibration_images=[], step=_step)


def test_onnx2tf_artifacts_that_do_not_run_are_replaced(tmp_path) -> None:
    """onnx2tf converts, but its TFLite file does not run: the Keras export is shipped."""
    from converters.tf_export import convert_onnx_to_tf
    from converters.tf_step import records_of, replace_if_disagreeing

    onnx_path, keras_path = _convert(tiny_cnn(), tmp_path, "m")
    photos = [np.full((64, 64, 3), v, np.uint8) for v in (40, 120, 200)]
    tf = convert_onnx_to_tf(onnx_path, tmp_path, calibration_images=photos)
    tf.tflite_fp32.write_bytes(tf.tflite_fp32.read_bytes()[:200])  # truncated: cannot load
    manifest = _manifest([artifact_record(tmp_path, "onnx", onnx_path, "torch.onnx"),
                          *records_of(tmp_path, tf),
                          artifact_record(tmp_path, "keras", keras_path, "keras")])
    check = _agreement(onnx_path)
    before = check(tmp_path, manifest)
    assert [a.artifact for a in before if not a.passed] == ["tflite_fp32"]
    agreement, note = replace_if_disagreeing(tmp_path, manifest, before, check=check, step=_step)
    assert note.startswith("onnx2tf's tflite_fp32 (does not run: ")
    assert note.endswith("): SavedModel/TFLite from the Keras model")
    assert {a.format: a.converter for a in manifest.artifacts} == {
        "onnx": "torch.onnx", "tf_savedmodel": "keras", "tflite_fp32": "keras",
        "tflite_fp16": "keras", "keras": "keras"}
    # the Keras export's fp16 file was checked for weights float16 cannot hold (none here)
    assert {a.format: a.fp32_kept for a in manifest.artifacts}["tflite_fp16"] == []
    assert all(a.passed for a in agreement) and check(tmp_path, manifest) == agreement
    assert json.loads((tmp_path / TENSOR_MAP).read_text())["logits"]["scope"] == "keras"
    assert not (tmp_path / ".keras_tf").exists()
    # agreement that already passes changes nothing
    assert replace_if_disagreeing(tmp_path, manifest, agreement, check=check, step=_step) == (
        agreement, "")


def test_keras_model_built_for_the_export_when_not_asked_for(tmp_path) -> None:
    """Formats without ``keras`` (``--formats onnx tflite_fp32 ...``), onnx2tf's TFLite does
    not run: a Keras model is built only to export from, and not shipped."""
    from converters.tf_export import convert_onnx_to_tf
    from converters.tf_step import records_of, replace_if_disagreeing

    onnx_path, keras_path = _convert(tiny_cnn(), tmp_path, "m")
    keras_path.unlink()
    keras_path.with_suffix(".layers.json").unlink()
    photos = [np.full((64, 64, 3), v, np.uint8) for v in (40, 120, 200)]
    tf = convert_onnx_to_tf(onnx_path, tmp_path, calibration_images=photos)
    tf.tflite_fp32.write_bytes(tf.tflite_fp32.read_bytes()[:200])  # truncated: cannot load
    manifest = _manifest([artifact_record(tmp_path, "onnx", onnx_path, "torch.onnx"),
                          *records_of(tmp_path, tf)])
    check = _agreement(onnx_path)
    before = check(tmp_path, manifest)
    assert [a.artifact for a in before if not a.passed] == ["tflite_fp32"]
    agreement, note = replace_if_disagreeing(tmp_path, manifest, before, check=check, step=_step)
    assert note.endswith("): SavedModel/TFLite from the Keras model"), note
    assert {a.format: a.converter for a in manifest.artifacts} == {
        "onnx": "torch.onnx", "tf_savedmodel": "keras", "tflite_fp32": "keras",
        "tflite_fp16": "keras"}
    assert all(a.passed for a in agreement) and check(tmp_path, manifest) == agreement
    assert not list(tmp_path.glob("*.keras")) and not (tmp_path / ".keras_tf").exists()


def test_no_keras_model_to_export_from_keeps_onnx2tf_and_says_why(tmp_path, monkeypatch) -> None:
    import converters.keras_export
    from converters.keras.graph import UnsupportedOpError
    from converters.tf_step import replace_if_disagreeing

    def unsupported(*args, **kwargs):
        raise UnsupportedOpError("Foo", "/foo/Foo")

    monkeypatch.setattr(converters.keras_export, "export_keras", unsupported)
    onnx_path, _ = _convert(tiny_cnn(), tmp_path, "m")
    manifest = _manifest([artifact_record(tmp_path, "onnx", onnx_path, "torch.onnx"),
                          artifact_record(tmp_path, "tflite_fp32", onnx_path, "onnx2tf")])
    failing = [failed_run("tflite_fp32", "fp32", 3, RuntimeError("cannot load"))]
    agreement, note = replace_if_disagreeing(tmp_path, manifest, failing, check=None,
                                             step=_step)
    assert agreement == failing
    assert note == ("onnx2tf's tflite_fp32 (does not run: RuntimeError: cannot load); no Keras "
                    "model to export instead (UnsupportedOpError: unsupported ONNX op 'Foo' at "
                    "node '/foo/Foo')")
    assert not (tmp_path / ".keras_tf").exists()


def test_tflite_int8_is_quantized_from_the_savedmodel_that_ships(tmp_path, monkeypatch) -> None:
    """onnx2tf's SavedModel does not load (shufflenet_v2's did not run): the Keras model's
    ships, and TFLite int8 is quantized from it; quantizing onnx2tf's failed the convert."""
    import converters.tf_export
    from converters.pipeline import ConvertOptions, convert_model
    from zoo.entry import imagenet_preprocessing

    real = converters.tf_export.convert_onnx_to_tf

    def broken_saved_model(*args, **kwargs):
        tf = real(*args, **kwargs)
        (tf.saved_model / "saved_model.pb").write_bytes(b"not a SavedModel")
        return tf

    monkeypatch.setattr(converters.tf_export, "convert_onnx_to_tf", broken_saved_model)
    manifest = convert_model(tiny_cnn(), ConvertOptions(
        out_root=tmp_path, formats=("onnx", "tf_savedmodel", "tflite_fp32", "tflite_int8")),
        log=lambda _: None, name="tiny", preprocessing=imagenet_preprocessing(SIZE))
    made_by = {a.format: a.converter for a in manifest.artifacts}
    assert made_by["tf_savedmodel"] == made_by["tflite_fp32"] == "keras", made_by
    assert "keras" not in made_by and {"tflite_int8", "tflite_int8_io"} <= set(made_by)
    rows = {a.artifact: a for a in manifest.agreement}
    assert set(rows) == set(made_by)
    assert all(rows[f].passed for f in ("tf_savedmodel", "tflite_fp32", "tflite_int8")), rows
    assert any("tf_savedmodel (does not run" in n for n in manifest.notes), manifest.notes


def test_feature_extractor_on_a_saved_keras_file(vit, tmp_path) -> None:
    import keras

    from converters.keras import feature_extractor

    _, keras_path, _ = vit
    moved = tmp_path / "elsewhere.keras"  # a copy, opened in another place, as a user would
    shutil.copy(keras_path, moved)
    shutil.copy(keras_path.with_suffix(".layers.json"), moved.with_suffix(".layers.json"))
    features = feature_extractor(moved, "encoder.ln")
    x = _x(2)
    model, seen = tiny_vit(), []
    model.encoder.ln.register_forward_hook(lambda m, args, out: seen.append(out.flatten(1)))
    with torch.no_grad():
        model(torch.from_numpy(x))
    got = np.asarray(features(x.transpose(0, 2, 3, 1)))
    assert got.shape == (2, 17 * 32)  # (N, seq, C) flattened as torch's flatten(1)
    np.testing.assert_allclose(got, seen[0].numpy(), atol=1e-4, rtol=0)
    with pytest.raises(TypeError, match="pass the .keras file's path"):
        feature_extractor(keras.saving.load_model(moved, compile=False), "encoder.ln")


def test_forced_keras_converter_through_the_cli(tmp_path) -> None:
    """``convert --tf-converter keras``: the manifest says who made what; parity passes on it."""
    from converters.manifest import load_manifest
    from tests.conftest import run_cli

    proc = run_cli("converters", "convert", "squeezenet1_1", "--weights", "random",
                   "--tf-converter", "keras", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "squeezenet1_1"
    manifest = load_manifest(folder)
    assert {a.format: a.converter for a in manifest.artifacts} == {
        "onnx": "torch.onnx", "tf_savedmodel": "keras", "tflite_fp32": "keras",
        "tflite_fp16": "keras", "keras": "keras"}
    assert manifest.notes == ["forced (--tf-converter keras)"]
    assert "note: forced (--tf-converter keras)" in proc.stdout
    assert "keras_tf" in manifest.step_seconds and "onnx2tf" not in manifest.step_seconds
    assert all(a.passed for a in manifest.agreement), manifest.agreement
    for fmt in TF_FORMATS:
        report = json.loads((folder / "parity" / f"onnx_vs_{fmt}.json").read_text())
        assert report["passed"], report["first_divergent"]
        # the Keras layer names found every activation TFLite keeps (convs fuse into ReLUs)
        assert report["n_aligned"] >= (65 if fmt == "tf_savedmodel" else 39), report["n_aligned"]
