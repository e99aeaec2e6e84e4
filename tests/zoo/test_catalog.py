"""Every catalog entry's metadata checked against the real model (one test, all entries)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import run_cli
from zoo.build import build_model, count_params
from zoo.entry import ModelEntry
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
    # not a terminal: 100 columns; one FLOP unit, named, as in the latency tables
    assert max(len(line) for line in proc.stdout.splitlines()) <= 100
    assert "GFLOPs" in proc.stdout and "(2/MAC)" in proc.stdout and "offline" in proc.stdout


def test_zoo_list_rows_count_two_flops_per_mac_and_say_what_is_offline():
    from zoo.__main__ import COLUMNS, catalog_row
    from zoo.weights import imagenet_available_offline

    headers = [h for h, _ in COLUMNS]
    for name in list_models():
        entry = get_entry(name)
        row = dict(zip(headers, catalog_row(entry)))
        assert float(row["GFLOPs\n(2/MAC)"]) == pytest.approx(2 * published_meta(entry).gflops,
                                                              abs=0.006)
        assert row["offline"] == ("yes" if imagenet_available_offline(entry) else "no")


@pytest.mark.parametrize("width", [80, 100, 160])
def test_zoo_list_fits_the_width_shortening_paths_from_the_left(width):
    from zoo.__main__ import COLUMNS, FEATURE, abbreviate_left, catalog_row, fit_columns

    assert abbreviate_left("classifier.1", 9) == "…sifier.1"
    assert abbreviate_left("avgpool", 9) == "avgpool"
    long = ModelEntry("long", "Long", "b", "W", "V1", feature_layer="blocks.11.mlp.classifier.1",
                      feature_dim=1)
    rows = [catalog_row(get_entry(n))[:-2] + [long.feature_layer, "1"] for n in list_models()]
    keep, fitted = fit_columns(rows, width)
    widths = [max(len(line) for line in [*COLUMNS[i][0].split("\n"), *(r[k] for r in fitted)])
              for k, i in enumerate(keep)]
    assert sum(widths) + len(keep) - 1 <= width
    path = fitted[0][keep.index(FEATURE)]  # the end of the path survives
    assert len(path) >= 7 and path == abbreviate_left(long.feature_layer, len(path))
    assert path.startswith("…") if width < 160 else path == long.feature_layer
