"""Model sources: every torchvision classifier derived from torchvision itself (without
building 80 models), the curated entries' hand-written fields each with a reason."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest
import torch

from zoo.build import build_model, count_params
from zoo.cli import expand_models
from zoo.meta import input_shape, published_meta
from zoo.registry import UnknownModelError, get_entry, list_models
from zoo.sources.torchvision import classifier_names, derive_entry

# Not derivation: free text, a capability measured by conversion, the reasons themselves.
NOT_DERIVED = {"family", "notes", "converts_to_tf", "overrides"}


def test_every_torchvision_classifier_is_an_entry():
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)
    assert len(names) >= 80 and list(classifier_names()) == names
    everything = list_models(everything=True)
    assert everything[:len(list_models())] == list_models()  # the curated set first
    assert set(everything) == set(names) and len(everything) == len(names)
    assert list_models() == list_models("*") and len(list_models()) == 16  # the default set


@pytest.mark.parametrize("name, head, dim, crop, resize, interpolation", [
    ("vit_b_16", "heads.head", 768, 224, 256, "bilinear"),
    ("swin_t", "head", 768, 224, 232, "bicubic"),
    ("convnext_tiny", "classifier.2", 768, 224, 236, "bilinear"),
    ("resnet50", "fc", 2048, 224, 232, "bilinear"),  # DEFAULT is IMAGENET1K_V2
    ("squeezenet1_0", "classifier.1", 512, 224, 256, "bilinear"),  # a 1x1 Conv head
    ("efficientnet_v2_s", "classifier.1", 1280, 384, 384, "bilinear"),
    ("maxvit_t", "classifier.5", 512, 224, 224, "bicubic"),
])
def test_derived_entry_matches_torchvisions_published_values(name, head, dim, crop, resize,
                                                             interpolation):
    entry = derive_entry(name)
    assert (entry.feature_layer, entry.feature_at, entry.feature_dim) == (head, "input", dim)
    p = published_meta(entry).preprocessing
    assert (p.crop_size, p.resize_size, p.interpolation) == (crop, resize, interpolation)
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)
    assert entry.num_classes == 1000 and entry.source == "torchvision"


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "googlenet", "mnasnet0_5"])
def test_derived_entry_meta_matches_the_built_model(name):
    """The catalog test's checks, on derived entries (small ones; googlenet drops its aux
    heads after loading, as torchvision's pretrained build does)."""
    entry = get_entry(name)
    meta = published_meta(entry)
    model, source = build_model(entry, weights="random")
    assert count_params(model) == meta.num_params and not source.pretrained
    seen = {}
    layer = model.get_submodule(entry.feature_layer)
    handle = layer.register_forward_pre_hook(lambda m, args: seen.setdefault("in", args[0]))
    with torch.no_grad():
        logits = model(torch.zeros(input_shape(entry)))
    handle.remove()
    assert logits.shape == (1, 1000) and seen["in"].shape == (1, entry.feature_dim)
    assert 0 < meta.acc1 < meta.acc5 <= 100 and meta.file_size_mb > 0


def test_curated_fields_differ_from_derivation_only_with_a_reason():
    for name in list_models():
        curated, derived = get_entry(name), derive_entry(name)
        differ = {f.name for f in fields(curated) if f.name not in NOT_DERIVED
                  and getattr(curated, f.name) != getattr(derived, f.name)}
        reasons = dict(curated.overrides)
        assert differ == set(reasons), name  # no silent override, no stale reason
        assert all(len(r) > 20 for r in reasons.values()), name


def test_derivation_is_lazy_and_per_name():
    code = ("import sys, zoo; from zoo.registry import get_entry, list_models; list_models(); "
            "print('torchvision' in sys.modules); get_entry('vit_b_16'); "
            "from zoo.sources.torchvision import derive_entry; "
            "print(derive_entry.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "1"]


def test_names_and_patterns_select_from_every_classifier():
    assert expand_models(["vit_b_*"], ["alexnet"]) == ["vit_b_16", "vit_b_32"]
    assert expand_models(["swin_t,resnet18"], []) == ["swin_t", "resnet18"]
    assert expand_models(None, ["alexnet"]) == ["alexnet"]
    with pytest.raises(UnknownModelError) as err:
        get_entry("vit_b_61")
    msg = str(err.value)
    assert "vit_b_16" in msg and "--all" in msg and "\n" not in msg


def test_zoo_list_all_shows_derived_entries():
    from tests.conftest import run_cli

    proc = run_cli("zoo", "list", "swin_*", "--all")
    assert proc.returncode == 0, proc.stderr
    for name in ("swin_t", "swin_s", "swin_b", "swin_v2_t"):
        assert name in proc.stdout
    assert "head (in)" in proc.stdout
    plain = run_cli("zoo", "list", "swin_*")  # the curated set has none
    assert plain.returncode == 2 and "--all" in plain.stderr


def test_zero_initialised_heads_are_redrawn_for_random_weights():
    """torchvision's ViT zero-initialises its head: with random weights every format would
    output zero logits and "agree" while checking nothing."""
    import torch

    from zoo.build import build_model, redraw_zero_weights

    tiny = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 3))
    torch.nn.init.zeros_(tiny[1].weight)
    assert redraw_zero_weights(tiny) == ["1"]
    assert 0.005 < float(tiny[1].weight.std()) < 0.05 and torch.any(tiny[0].weight)

    model, source = build_model("vit_b_16", weights="random")
    assert "zero-initialised heads.head" in source.label
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224))
    assert float(logits.std()) > 0.1
