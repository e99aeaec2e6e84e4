"""The feature cache key covers what determines the features: contents, labels, weights, code."""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from bench.transfer import cache as cache_mod
from bench.transfer import runner
from bench.transfer.cli import main
from bench.transfer.datasets import open_dataset
from bench.transfer.features import transform_spec
from tests.support.images import make_image_folder
from zoo.build import build_model
from zoo.meta import published_meta
from zoo.registry import get_entry

RES = 32
ENTRY = get_entry("squeezenet1_1")


@pytest.fixture(scope="module")
def squeeze():
    return build_model("squeezenet1_1", weights="random")


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "tiny", per_class=4)


@pytest.fixture
def opts(tmp_path) -> runner.RunOptions:
    return runner.RunOptions(cache_dir=tmp_path / "cache", batch_size=8, resolution=RES)


def _features(model, source, folder: Path, opts: runner.RunOptions, split: str = "test"):
    data = open_dataset(str(folder))  # reopened each time, as a new run would
    t = transform_spec(published_meta(ENTRY).preprocessing, resolution=RES, mode="crop")
    return getattr(data, split), runner.split_features(model, ENTRY, source,
                                                       getattr(data, split), t, opts)


def test_unchanged_folder_hits_also_after_touch(squeeze, folder, opts):
    _, first = _features(*squeeze, folder, opts)
    for f in folder.rglob("*.png"):  # mtimes are not in the key: no feature changed
        os.utime(f, ns=(1, 1))
    _, second = _features(*squeeze, folder, opts)
    assert not first.hit and second.hit
    assert np.array_equal(first.features, second.features)
    with np.load(second.path) as z:  # the entry describes itself: its meta holds the key
        key = json.loads(str(z["meta"]))["key"]
    assert set(key) == {f.name for f in fields(cache_mod.FeatureKey)}
    assert key["code"] == cache_mod.code_version() and len(key["content"]) == 64


def test_swapped_class_folders_miss_and_give_the_new_labels(squeeze, folder, opts):
    before, first = _features(*squeeze, folder, opts)
    test = folder / "test"
    (test / "dark").rename(test / "tmp")
    (test / "light").rename(test / "dark")
    (test / "tmp").rename(test / "light")
    after, second = _features(*squeeze, folder, opts)
    assert not second.hit and second.path != first.path
    assert np.array_equal(second.labels, after.labels)
    old, new = _label_by_name(before, first.labels), _label_by_name(after, second.labels)
    assert new.keys() == old.keys() and all(new[k] == 1 - old[k] for k in old)


def _label_by_name(split, labels: np.ndarray) -> dict[str, int]:
    return {Path(f.path).name: int(y) for f, y in zip(split.reader.files, labels)}


def test_images_replaced_by_black_ones_miss(squeeze, folder, opts):
    from PIL import Image

    _, first = _features(*squeeze, folder, opts)
    for f in (folder / "test").rglob("*.png"):
        Image.new("RGB", (24, 24)).save(f)
    _, second = _features(*squeeze, folder, opts)
    assert not second.hit
    assert np.array_equal(second.labels, first.labels)
    assert not np.allclose(second.features, first.features)


def test_another_weights_file_at_the_same_path_misses(folder, opts, tmp_path):
    import torch

    path = tmp_path / "w.pth"
    hits = []
    for seed in (0, 0, 1):
        torch.save(build_model("squeezenet1_1", weights=f"random:{seed}")[0].state_dict(), path)
        model, source = build_model("squeezenet1_1", weights=str(path))
        assert source.spec == str(path.resolve())  # the same spec every time
        hits.append(_features(model, source, folder, opts)[1].hit)
    assert hits == [False, True, False]


def test_code_version_covers_the_extraction_source(monkeypatch):
    before = cache_mod.code_version()
    cache_mod.code_version.cache_clear()
    monkeypatch.setattr(cache_mod, "CODE_MODULES", ("bench.transfer.features",))
    try:
        assert cache_mod.code_version() != before
    finally:
        cache_mod.code_version.cache_clear()


def test_cli_rerun_after_swapping_class_folders_extracts_again(folder, tmp_path, capsys):
    """The issue's report: swapped test labels were a cache hit with the old accuracy."""
    args = ["--models", "squeezenet1_1", "--datasets", str(folder), "--weights", "random",
            "--resolution", str(RES), "--batch-size", "8", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--no-report"]
    assert main(args) == 0
    test = folder / "test"
    (test / "dark").rename(test / "tmp")
    (test / "light").rename(test / "dark")
    (test / "tmp").rename(test / "light")
    assert main(args) == 0
    lines = (tmp_path / "out" / "transfer.jsonl").read_text().splitlines()
    recs = [r for r in map(json.loads, lines) if r["type"] == "record"]
    assert [r["cache_hit"] for r in recs] == [False, False]
    assert recs[1]["accuracy"] == pytest.approx(1 - recs[0]["accuracy"])
    assert "cache hit" not in capsys.readouterr().out
