"""Bad input does not sink a run: unreadable images skipped and named; bad splits fail in one line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.transfer.cli import main
from bench.transfer.datasets import open_dataset
from bench.transfer.features import extract_features, transform_spec
from bench.transfer.linear import ProbeDataError, check_train_labels
from bench.transfer.readers import UnreadableImageError, one_line
from bench.transfer.records import TransferRecord
from tests.support.images import add_unreadable_files, make_image_folder
from zoo.build import build_model
from zoo.exits import ExitCode
from zoo.meta import published_meta
from zoo.registry import get_entry

RES = 32
BAD_NAMES = ("truncated.jpg", "empty.jpg", "x.png")


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    folder = make_image_folder(tmp_path / "tiny", per_class=4)
    add_unreadable_files(folder / "train" / "dark")
    return folder


def _args(tmp_path: Path, *datasets: Path | str, extra: tuple[str, ...] = ()) -> list[str]:
    return ["--models", "squeezenet1_1", "--datasets", *map(str, datasets), "--weights", "random",
            "--resolution", str(RES), "--batch-size", "8", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--no-report", *extra]


def _records(tmp_path: Path) -> list[dict]:
    path = tmp_path / "out" / "transfer.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [r for r in map(json.loads, lines) if r["type"] == "record"]


def _one_error_line(err: str) -> str:
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_unreadable_files_are_skipped_and_listed(bad_folder):
    data = open_dataset(str(bad_folder))
    assert len(data.train) == 8 and len(data.test) == 8  # the good ones only
    assert sorted(Path(u.path).name for u in data.train.skipped) == sorted(BAD_NAMES)
    reasons = {Path(u.path).name: u.reason for u in data.skipped}
    assert reasons["empty.jpg"] == "empty file" and "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["x.png"]
    assert all(data.train.image(i).mode == "RGB" for i in range(len(data.train)))


def test_cli_run_completes_and_names_the_skipped_files(bad_folder, tmp_path, capsys):
    assert main(_args(tmp_path, bad_folder)) == ExitCode.OK
    out, err = capsys.readouterr()
    assert "3 unreadable image(s) skipped" in err and "3 unreadable image(s) skipped" in out
    assert all(name in err for name in BAD_NAMES)
    (rec,) = _records(tmp_path)
    assert rec["skipped_images"] == 3 and rec["n_train"] == 8
    assert sorted(Path(p).name for p in rec["skipped_paths"]) == sorted(BAD_NAMES)


def test_strict_fails_in_one_line_naming_the_first_bad_file(bad_folder, tmp_path, capsys):
    assert main(_args(tmp_path, bad_folder, extra=("--strict",))) == ExitCode.BAD_INPUT
    line = _one_error_line(capsys.readouterr().err)
    assert str(bad_folder / "train" / "dark" / "empty.jpg") in line  # first in sorted order
    assert "3 unreadable" in line and _records(tmp_path) == []


def test_one_class_train_fails_in_one_line_before_extraction(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "tiny", per_class=4)
    for split in ("train", "test"):
        shutil.rmtree(folder / split / "light")
    assert main(_args(tmp_path, folder)) == ExitCode.BAD_INPUT
    line = _one_error_line(capsys.readouterr().err)
    assert "tiny: train has 4 image(s) of 1 class(es) (dark)" in line
    assert not (tmp_path / "cache").exists()  # nothing was extracted


def test_too_few_images_for_the_held_out_split_fail_in_one_line(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "tiny", per_class=2)
    assert main(_args(tmp_path, folder)) == ExitCode.BAD_INPUT
    line = _one_error_line(capsys.readouterr().err)
    assert "too few for the held-out 20%" in line and "1 held out" in line
    assert not (tmp_path / "cache").exists()


def test_some_combinations_failing_is_a_partial_run(tmp_path, capsys):
    good = make_image_folder(tmp_path / "good", per_class=4)
    few = make_image_folder(tmp_path / "few", per_class=2)
    assert main(_args(tmp_path, good, few)) == ExitCode.PARTIAL
    err = capsys.readouterr().err
    assert "error: few: " in err and "partial run: 1 record(s) written, 1 error(s)" in err
    assert [r["dataset"] for r in _records(tmp_path)] == ["good"]


@pytest.mark.parametrize(("labels", "ok"), [
    ([0, 0, 0, 1, 1, 1], True), ([0, 0, 1, 1], False), ([0, 1], False), ([0, 0, 0, 0, 0], False),
    ([0, 0, 0, 0, 1], True)])  # unstratified: 1 held out, 4 to fit
def test_check_train_labels_mirrors_the_held_out_split(labels, ok):
    y = np.asarray(labels)
    if ok:
        check_train_labels(y, ("a", "b"))
    else:
        with pytest.raises(ProbeDataError):
            check_train_labels(y, ("a", "b"))


@pytest.mark.parametrize("workers", [0, 1])
def test_file_failing_at_decode_time_is_one_line_naming_it(tmp_path, workers):
    data = open_dataset(str(make_image_folder(tmp_path / "tiny", per_class=2)))
    victim = data.test.reader.files[1].path
    Path(victim).write_bytes(b"\x89PNG\r\n\x1a\n broken after the scan")
    model, _ = build_model("squeezenet1_1", weights="random")
    entry = get_entry("squeezenet1_1")
    t = transform_spec(published_meta(entry).preprocessing, resolution=RES, mode="crop")
    with pytest.raises(UnreadableImageError) as err:
        extract_features(model, entry, data.test, t, batch_size=4, workers=workers)
    line = one_line(err.value)
    assert line.startswith(f"{victim}: cannot decode image") and "\n" not in line


def test_grayscale_is_the_share_of_all_files_not_the_first(tmp_path):
    from PIL import Image

    folder = make_image_folder(tmp_path / "tiny", per_class=4)
    for f in sorted(folder.rglob("*.png")):
        img = Image.open(f)
        img.load()
        (img.convert("RGB") if f.name.endswith("_0.png") else img.convert("L")).save(f)
    data = open_dataset(str(folder))
    assert data.train.reader.files[0].mode == "RGB"  # the file the old check looked at
    assert data.train.grayscale == pytest.approx(0.75) and data.grayscale == pytest.approx(0.75)


def test_grayscale_text_and_old_boolean_records():
    base = dict(model="m", weights="random", weights_label="r", weights_spec="random:0",
                dataset="d", dataset_source="s", classes=["a", "b"], protocol="linear",
                n_train=1, n_test=1, subset_seed=None, resolution=32, resize_mode="crop",
                accuracy=0.5, extract_s=1.0, fit_s=1.0, features_s=1.0, cache_hit=False,
                device="cpu", threads=1, date="", run_id="x")
    old = TransferRecord.from_json({**base, "grayscale": True})  # written before the share
    assert old.grayscale == 1.0 and old.grayscale_text == "yes" and old.skipped_images == 0
    assert TransferRecord.from_json({**base, "grayscale": False}).grayscale_text == "no"
    mixed = TransferRecord.from_json({**base, "grayscale": 0.25, "skipped_paths": ["p"]})
    assert mixed.grayscale_text == "mixed (25%)" and mixed.skipped_paths == ("p",)


def test_options_out_of_bounds_fail_in_one_line_before_any_work(tmp_path, capsys):
    from zoo.env import available_cpus

    (tmp_path / "file").write_text("x")
    cases = {("--threads", "999"): f"use 1 to {available_cpus()}",
             ("--n-train", "0"): "--n-train must be positive",
             ("--workers", "-1"): "--workers must be 0 or more",
             ("--out", str(tmp_path / "file")): "--out",
             ("--cache-dir", str(tmp_path / "file" / "c")): "--cache-dir"}
    for extra, words in cases.items():
        args = ["--models", "squeezenet1_1", "--weights", "random", "--datasets", "cifar10",
                "--out", str(tmp_path / "out"), *extra]
        assert main(args) == ExitCode.BAD_INPUT, extra
        assert words in _one_error_line(capsys.readouterr().err), extra
    assert not (tmp_path / "out").exists()
