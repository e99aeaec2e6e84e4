"""Every catalog entry's metadata checked against the real model (one test, all entries)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import run_cli
from zoo.build import build_model, count_params
from zoo.meta import input_shape, published_meta
from zoo.registry import get_entry, list_models

EXPECTED = {"squeezenet1_0", "squeezenet1_1", "alexnet", "vgg16", "resnet18", "resnet50",
            "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
            "inception_v3", "densenet121", "shufflenet_v2_x1_0", "mnasnet1_0", "regnet_y_400mf",
            "convnext_tiny"}


def test_catalog_has_the_required_backbones():
    assert EXPECTED <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_entry_meta_matches_model(name):
    entry = get_entry(name)
    meta = published_meta(entry)
    model, source = build_model(entry, weights="random")
    assert not source.pretrained and "random" in source.label
    assert count_params(model) == meta.num_params
    assert 0 < meta.acc5 <= 100 and 0 < meta.acc1 < meta.acc5
    assert meta.file_size_mb > meta.num_params * 4 / 2**20 * 0.95  # fp32 state dict
    p = meta.preprocessing
    assert p.resize_size >= p.crop_size and len(p.mean) == len(p.std) == 3
    features = {}
    layer = model.get_submodule(entry.feature_layer)
    handle = layer.register_forward_hook(lambda m, i, o: features.setdefault("out", o))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        logits = model(torch.zeros(input_shape(entry)))
    handle.remove()
    assert logits.shape == (1, entry.num_classes)
    out = features["out"]
    pooled = out.mean(dim=(2, 3)) if out.ndim == 4 else out.flatten(1)
    assert pooled.shape == (1, entry.feature_dim)
    # torchvision's GFLOPS meta counts multiply-adds; the flop counter counts 2 per MAC.
    assert counter.get_total_flops() / 2e9 == pytest.approx(meta.gflops, rel=0.02)


def test_zoo_list_cli_prints_every_model():
    proc = run_cli("zoo", "list")
    assert proc.returncode == 0, proc.stderr
    for name in list_models():
        assert name in proc.stdout
