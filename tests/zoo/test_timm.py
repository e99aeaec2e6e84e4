"""timm as a source: ``timm/<name>`` resolves, preprocessing equals timm's own eval
transform, weights come from the Hugging Face cache only (one line when absent), and
random and state-dict weights build."""
from __future__ import annotations

import pytest
import torch

from zoo.build import build_model
from zoo.meta import published_meta
from zoo.registry import UnknownModelError, get_entry
from zoo.weights import WeightsUnavailableError

SMALL = "mobilenetv3_small_050"  # 1.6 M parameters


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("name", ["vit_small_patch16_224", "efficientnet_lite0"])
def test_preprocessing_is_timms_own_eval_transform(name):
    import timm
    from timm.data import create_transform, resolve_data_config

    entry = get_entry(f"timm/{name}")
    assert entry.source == "timm" and entry.name == entry.folder == f"timm/{name}"
    assert entry.slug == name  # the artifacts' file stem
    config = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
    resize, crop = create_transform(**config, is_training=False).transforms[:2]
    p = published_meta(entry).preprocessing
    assert (p.resize_size, p.crop_size) == (resize.size, crop.size[0])
    assert p.interpolation == resize.interpolation.value
    assert p.mean == pytest.approx(config["mean"]) and p.std == pytest.approx(config["std"])


def test_head_and_feature_width_from_the_model():
    vit = get_entry("timm/vit_small_patch16_224")
    assert (vit.feature_layer, vit.feature_dim, vit.num_classes) == ("head", 384, 1000)
    assert published_meta(vit).num_params == 22_050_664


def test_an_entry_whose_builder_computes_at_init_is_derived():
    """timm's hybrid ViTs run their CNN backbone in ``__init__`` to size the embedding,
    which fails on the meta device: the entry is then derived from a real build (this
    name stopped the whole timm sweep before it converted anything)."""
    entry = get_entry("timm/vit_tiny_r_s16_p8_224")
    assert (entry.feature_layer, entry.feature_dim, entry.num_classes) == ("head", 192, 1000)
    # and its parameter count, read the same way (the sweep's params column failed on it)
    assert published_meta(entry).num_params == 6_337_704


def test_missing_weights_are_one_line_offline(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as err:
        build_model(f"timm/{SMALL}")
    msg = str(err.value)
    assert "\n" not in msg
    for part in (f"timm/{SMALL}", "timm/mobilenetv3_small_050.lamb_in1k", str(empty_hf_cache),
                 "downloads are off (MODELZOO_OFFLINE=1)", "WEIGHTS=random", "WEIGHTS=path"):
        assert part in msg


def test_download_is_announced_and_its_failure_is_one_line(empty_hf_cache, monkeypatch,
                                                           capsys):
    """Online, missing weights are fetched from the hub (the user's real path); here the
    fetch fails as it does without network, and the error says so in one line."""
    import huggingface_hub

    tried = []

    def refuse(repo_id, filename, **_):
        tried.append((repo_id, filename))
        raise OSError("no network")

    monkeypatch.delenv("MODELZOO_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    with pytest.raises(WeightsUnavailableError) as err:
        build_model(f"timm/{SMALL}")
    assert tried == [("timm/mobilenetv3_small_050.lamb_in1k", "model.safetensors"),
                     ("timm/mobilenetv3_small_050.lamb_in1k", "pytorch_model.bin")]
    msg = str(err.value)
    assert "\n" not in msg and "download from huggingface.co failed" in msg
    assert "downloading timm/mobilenetv3_small_050.lamb_in1k from huggingface.co" in (
        capsys.readouterr().err)


def test_cached_weights_load_without_network(empty_hf_cache, monkeypatch):
    """A file laid out as huggingface_hub caches it is found and loaded, no download."""
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reference, _ = build_model(f"timm/{SMALL}", weights="random:5")
    repo = empty_hf_cache / "models--timm--mobilenetv3_small_050.lamb_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
              snapshot / "model.safetensors")
    model, source = build_model(f"timm/{SMALL}")
    assert source.pretrained and "mobilenetv3_small_050.lamb_in1k" in source.label
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_random_and_state_dict_weights(tmp_path):
    a, src = build_model(f"timm/{SMALL}", weights="random:3")
    b, _ = build_model(f"timm/{SMALL}", weights="random:3")
    assert src.spec == "random:3" and "BN stats" in src.label
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = a(x)
        assert out.shape == (2, 1000) and torch.equal(out, b(x))
        assert 1e-2 < out.abs().max().item() < 1e3  # calibrated BN: unit-scale logits
    path = tmp_path / "sd.pth"
    torch.save(a.state_dict(), path)
    c, source = build_model(f"timm/{SMALL}", weights=str(path))
    with torch.no_grad():
        assert source.kind == "file" and torch.equal(c(x), out)


def test_unknown_timm_name_suggests_close_ones():
    with pytest.raises(UnknownModelError) as err:
        get_entry("timm/vit_smal_patch16_224")
    assert "timm/vit_small_patch16_224" in str(err.value) and "\n" not in str(err.value)


def test_models_are_built_exportable(tmp_path):
    """timm's ``exportable`` switch: attention spelled out, not F.scaled_dot_product_attention,
    whose traced ``is_causal`` argument stopped eva02's ONNX export; the export now runs."""
    from converters.onnx_export import export_onnx

    model, _ = build_model("timm/eva02_tiny_patch14_336", weights="random")
    assert not any(getattr(m, "fused_attn", False) for m in model.modules())
    path = export_onnx(model, input_shape=(1, 3, 336, 336), path=tmp_path / "eva02.onnx")
    assert path.stat().st_size > 20e6  # 5.7M float32 parameters


def test_random_weights_are_the_same_on_every_build_in_a_process():
    """The seeded build is the model whatever ran before it: parity rebuilds the model
    converted earlier in the same process, and timm's parameter count (a model built for
    the input size) once drew from the seeded RNG, differently the first time, so BN was
    calibrated on other noise (timm/swiftformer_xs: 49.6 dB at its first BN, logits equal)."""
    name = "swiftformer_xs"  # its first build in a process drew from the RNG; later ones not
    code = ("import torch; from zoo.build import build_model; "
            f"a, _ = build_model('timm/{name}', weights='random'); "
            f"b, _ = build_model('timm/{name}', weights='random'); "
            "sa, sb = a.state_dict(), b.state_dict(); "
            "print(sum(1 for k in sa if 'running_' in k), "
            "[k for k in sa if not torch.equal(sa[k], sb[k])])")
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split(None, 1)
    assert int(out[0]) > 10 and out[1].strip() == "[]", out  # BN statistics, all equal


def test_published_meta_leaves_the_callers_rng_as_it_was():
    """swiftformer_xs's structure, built the first time in a process, drew from it."""
    code = ("import torch; from zoo.meta import published_meta; "
            "from zoo.registry import get_entry; "
            "torch.manual_seed(0); expected = torch.rand(3); torch.manual_seed(0); "
            "published_meta(get_entry('timm/swiftformer_xs')); "
            "print(torch.equal(torch.rand(3), expected))")
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "True"
