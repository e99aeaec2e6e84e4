"""Transfer datasets: registry, ImageFolder (grayscale), IDX files, torchvision path, offline errors."""
from __future__ import annotations

from dataclasses import replace
from urllib.error import URLError

import numpy as np
import pytest

from bench.transfer import datasets as ds
from bench.transfer.datasets import DatasetUnavailableError, open_dataset
from bench.transfer.readers import read_idx
from tests.support.images import make_image_folder, write_idx

DOWNLOADERS = ("cifar10", "fashion-mnist", "oxford-pets", "flowers102")


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """No shared folders, no Debian IDX files, an empty torchvision cache."""
    monkeypatch.setenv("MODELZOO_DATA", str(tmp_path / "no_shared"))
    monkeypatch.setenv("MODELZOO_DATASETS", str(tmp_path / "tv_cache"))
    monkeypatch.delenv("MODELZOO_OFFLINE", raising=False)
    for name, spec in list(ds.REGISTRY.items()):
        if spec.idx is not None:
            monkeypatch.setitem(ds.REGISTRY, name,
                                replace(spec, idx=replace(spec.idx, folder=str(tmp_path / "no_idx"))))
    return tmp_path


class FakeTorchvision:
    """Stands in for a torchvision dataset class; records calls, never touches the network."""

    calls: list[bool] = []
    online = False

    def __init__(self, root, download=False, **kwargs):
        FakeTorchvision.calls.append(download)
        if not download or not FakeTorchvision.online:
            if download:
                raise URLError("no network in tests")
            raise RuntimeError("Dataset not found or corrupted. You can use download=True")
        from PIL import Image

        self.classes = ["a", "b", "c"]
        self.targets = [0, 1, 2, 1]
        self._img = Image.new("L", (8, 8), 128)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self._img, self.targets[i]


@pytest.fixture
def fake_tv(monkeypatch):
    import torchvision.datasets as tvd

    FakeTorchvision.calls, FakeTorchvision.online = [], False
    for spec in ds.REGISTRY.values():
        if spec.torchvision is not None:
            monkeypatch.setattr(tvd, spec.torchvision.cls, FakeTorchvision)
    return FakeTorchvision


def test_registry_has_the_five_datasets_with_a_source():
    assert set(ds.list_datasets()) == {"cifar10", "fashion-mnist", "cats-vs-dogs", "oxford-pets",
                                       "flowers102"}
    for spec in ds.REGISTRY.values():
        assert spec.folder or spec.idx or spec.torchvision
        assert spec.resize_mode in ("resize", "crop") and spec.num_classes >= 2


def test_image_folder_gives_rgb_images_and_replicates_grayscale(tmp_path):
    data = open_dataset(str(make_image_folder(tmp_path / "tiny", per_class=6)))
    assert data.classes == ("dark", "light") and data.name == "tiny"
    assert len(data.train) == 12 and len(data.test) == 12
    assert list(np.bincount(data.train.labels)) == [6, 6]
    assert data.train.grayscale == pytest.approx(1 / 3)  # every third file is an 'L' image
    img = data.train.image(0)
    arr = np.asarray(img)
    assert img.mode == "RGB" and arr.shape == (24, 24, 3)
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])


def test_folder_without_test_split_is_one_clear_line(tmp_path):
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetUnavailableError) as err:
        open_dataset(str(tmp_path / "d"))
    assert "\n" not in str(err.value) and "test" in str(err.value)


def test_unknown_name_lists_the_registry():
    with pytest.raises(DatasetUnavailableError, match="cifar10"):
        open_dataset("no-such-dataset")


def test_subset_is_seeded_and_without_replacement(tmp_path):
    data = open_dataset(str(make_image_folder(tmp_path / "tiny", per_class=6)))
    a, b = data.train.subset(5, seed=1), data.train.subset(5, seed=1)
    assert len(a) == 5 and a.subset_seed == 1
    assert np.array_equal(a.labels, b.labels)
    assert data.train.subset(None) is data.train and data.train.subset(100) is data.train


def test_idx_files_round_trip_and_load_as_grayscale(tmp_path, no_local_data, monkeypatch):
    images = np.random.default_rng(0).integers(0, 255, size=(7, 28, 28)).astype(np.uint8)
    labels = np.arange(7, dtype=np.uint8) % 10
    folder = tmp_path / "idx"
    folder.mkdir()
    spec = ds.REGISTRY["fashion-mnist"]
    for split, (img_name, lbl_name) in spec.idx.files.items():
        write_idx(folder / img_name, images)
        write_idx(folder / lbl_name, labels)
    assert np.array_equal(read_idx(folder / spec.idx.files["train"][0]), images)
    monkeypatch.setitem(ds.REGISTRY, "fashion-mnist",
                        replace(spec, idx=replace(spec.idx, folder=str(folder))))
    data = open_dataset("fashion-mnist")
    assert "dataset-fashion-mnist" in data.source and data.train.grayscale == 1.0
    assert len(data.classes) == 10 and list(data.test.labels) == list(labels)
    arr = np.asarray(data.train.image(3))
    assert arr.shape == (28, 28, 3) and np.array_equal(arr[..., 0], images[3])


def test_shared_folder_is_preferred(tmp_path, no_local_data, fake_tv, monkeypatch):
    make_image_folder(tmp_path / "shared" / "cifar10", per_class=2)
    monkeypatch.setenv("MODELZOO_DATA", str(tmp_path / "shared"))
    data = open_dataset("cifar10")
    assert data.source.startswith("ImageFolder") and fake_tv.calls == []


@pytest.mark.parametrize("name", DOWNLOADERS)
def test_downloader_offline_error_is_one_line_naming_what_to_get(name, no_local_data, fake_tv):
    with pytest.raises(DatasetUnavailableError) as err:
        open_dataset(name)
    msg = str(err.value)
    spec = ds.REGISTRY[name]
    assert "\n" not in msg and msg.startswith(f"{name}: ")
    assert "download failed (URLError)" in msg
    assert f"torchvision.datasets.{spec.torchvision.cls}" in msg
    assert str(no_local_data / "no_shared" / spec.folder) in msg
    assert fake_tv.calls == [False, True]  # cache first, then one download attempt
    if spec.idx is not None:
        assert f"apt-get install {spec.idx.package}" in msg


def test_offline_mode_never_tries_to_download(no_local_data, fake_tv, monkeypatch):
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    with pytest.raises(DatasetUnavailableError, match="MODELZOO_OFFLINE=1"):
        open_dataset("oxford-pets")
    assert True not in fake_tv.calls


def test_dataset_without_downloader_says_where_to_put_it(no_local_data):
    with pytest.raises(DatasetUnavailableError) as err:
        open_dataset("cats-vs-dogs")
    msg = str(err.value)
    assert "\n" not in msg and "no downloader" in msg and "cats-vs-dogs/{train,test}" in msg


@pytest.mark.parametrize("name", DOWNLOADERS)
def test_torchvision_datasets_share_the_split_path(name, no_local_data, fake_tv):
    fake_tv.online = True
    data = open_dataset(name)
    parts = len(ds.REGISTRY[name].torchvision.splits["train"])
    assert len(data.train) == 4 * parts and data.classes == ("a", "b", "c")
    assert data.train.image(len(data.train) - 1).mode == "RGB"
    assert data.source.startswith(f"torchvision.datasets.{ds.REGISTRY[name].torchvision.cls}")
