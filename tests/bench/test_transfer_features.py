"""Feature extraction at the catalog's feature layer, and the on-disk feature cache."""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from bench.transfer import cache as cache_mod
from bench.transfer import runner
from bench.transfer.datasets import open_dataset
from bench.transfer.features import (FeatureTap, build_transform, extract_features, pool,
                                     transform_spec)
from tests.support.images import make_image_folder
from zoo.build import build_model
from zoo.meta import published_meta
from zoo.registry import get_entry

RES = 64


@pytest.fixture(scope="module")
def squeeze():
    model, source = build_model("squeezenet1_1", weights="random")
    return model, source, get_entry("squeezenet1_1")


@pytest.fixture
def tiny(tmp_path):
    return open_dataset(str(make_image_folder(tmp_path / "tiny", per_class=5)))


def _spec(entry, mode="crop"):
    return transform_spec(published_meta(entry).preprocessing, resolution=RES, mode=mode)


def test_transform_spec_modes_and_shapes(squeeze, tiny):
    entry = squeeze[2]
    crop, resize = _spec(entry, "crop"), _spec(entry, "resize")
    assert crop.resize_size == 73 and crop.key != resize.key  # 64 * 256 / 224
    for t in (crop, resize):
        x = build_transform(t)(tiny.train.image(0))
        assert tuple(x.shape) == (3, RES, RES)
    with pytest.raises(ValueError):
        transform_spec(published_meta(entry).preprocessing, resolution=RES, mode="stretch")


def test_pool_averages_spatial_maps():
    import torch

    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(pool(x), x.mean(dim=(2, 3)))
    assert tuple(pool(torch.ones(2, 5)).shape) == (2, 5)


def test_tap_matches_the_feature_layer_output(squeeze):
    import torch

    model, _, entry = squeeze
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        want = model.features(x).mean(dim=(2, 3))
        got = FeatureTap(model, entry)(x)
    assert torch.allclose(got, want, atol=1e-5)


def test_extraction_shape_is_n_by_feature_dim(squeeze, tiny):
    model, _, entry = squeeze
    feats = extract_features(model, entry, tiny.test, _spec(entry), batch_size=4)
    assert feats.shape == (len(tiny.test), entry.feature_dim) == (10, 512)
    assert feats.dtype == np.float32 and np.isfinite(feats).all()


def test_cache_hit_skips_extraction_and_gives_identical_features(squeeze, tiny, tmp_path,
                                                                 monkeypatch):
    model, source, entry = squeeze
    calls = []
    real = runner.extract_features

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "extract_features", counting)
    opts = runner.RunOptions(cache_dir=tmp_path / "cache", batch_size=4, resolution=RES)
    t = _spec(entry)
    first = runner.split_features(model, entry, source, tiny.train, t, opts)
    second = runner.split_features(model, entry, source, tiny.train, t, opts)
    assert len(calls) == 1 and not first.hit and second.hit
    assert np.array_equal(first.features, second.features)
    assert np.array_equal(second.labels, tiny.train.labels)
    assert second.extract_s == pytest.approx(first.extract_s)  # carried from the first run
    runner.split_features(model, entry, source, tiny.train, _spec(entry, "resize"), opts)
    runner.split_features(model, entry, source, tiny.train.subset(4), t, opts)
    assert len(calls) == 3  # another transform or subset is another key
    assert not list((tmp_path / "cache").rglob("*.tmp.npz"))


def _key(**kw) -> cache_mod.FeatureKey:
    base = dict(model="m", feature_layer="features", weights_spec="random:0",
                weights_label="random", weights_digest="w0", dataset="d", dataset_source="src",
                split="train", n=3, subset_seed=None, content="c0", transform="crop64",
                code="v0")
    return cache_mod.FeatureKey(**{**base, **kw})


def test_cache_key_covers_every_field(tmp_path):
    changed = {f.name: (4 if f.name == "n" else 1 if f.name == "subset_seed" else "other")
               for f in fields(cache_mod.FeatureKey)}
    digests = {_key().digest(), *(_key(**{k: v}).digest() for k, v in changed.items())}
    assert len(digests) == 1 + len(changed) == 14


def test_corrupt_cache_file_is_a_miss(tmp_path):
    key = _key()
    path = key.path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    got = cache_mod.cached_features(key, tmp_path, lambda: (np.ones((3, 2), np.float32),
                                                            np.arange(3)))
    assert not got.hit and cache_mod.load(key, tmp_path).hit


def test_tap_takes_a_derived_entrys_head_input():
    """A derived entry names its head (feature_at="input"): the tap returns what the head
    receives, the same features the curated entry's module output gives."""
    import torch

    from bench.transfer.features import FeatureTap
    from zoo.build import build_model
    from zoo.registry import get_entry
    from zoo.sources.torchvision import derive_entry

    derived, curated = derive_entry("shufflenet_v2_x1_0"), get_entry("shufflenet_v2_x1_0")
    assert (derived.feature_layer, derived.feature_at) == ("fc", "input")
    model, _ = build_model(curated, weights="random:1")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        head_input = FeatureTap(model, derived)(x)
        assert head_input.shape == (2, derived.feature_dim)
        torch.testing.assert_close(head_input, FeatureTap(model, curated)(x))
