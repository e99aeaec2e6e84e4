"""``bench transfer`` as one task per model: two tiny models (random weights, 32 px, a
16-image folder) on two processes give the rows of one process, in the same order, each
naming its node; a re-run skips the models done and appends nothing."""
from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

import pytest

from bench.transfer import tasks as transfer_tasks
from bench.transfer.cli import main
from tests.support.images import make_image_folder

MODELS = ("squeezenet1_1", "mobilenet_v3_small")
# Wall times, the clock, and whether the features came from the cache: the only columns
# two runs may differ in.
TIMED = ("extract_s", "fit_s", "features_s", "date")


@pytest.fixture
def frozen_code(monkeypatch):
    """The code part of the fingerprint as it is now (other edits to the tree during the
    test must not make its re-run look like new code)."""
    code = transfer_tasks.code_digest(transfer_tasks.CODE)
    monkeypatch.setattr(transfer_tasks, "code_digest", lambda packages: code)


def _run(capsys, tmp_path: Path, folder: Path, out: str, jobs: str) -> tuple[str, str]:
    """The run's (stdout, stderr), once it exited 0."""
    code = main(["--models", *MODELS, "--datasets", str(folder), "--weights", "random",
                 "--resolution", "32", "--batch-size", "8", "--threads", "1",
                 "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / f"cache-{out}"),
                 "--jobs", jobs])
    out_text, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return out_text, err


def _rows(tmp_path: Path, out: str) -> list[dict]:
    with open(tmp_path / out / "transfer.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMED} for r in csv.DictReader(fh)]


def _raw_records(tmp_path: Path, out: str) -> list[dict]:
    lines = (tmp_path / out / "transfer.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == "record"]


def test_two_processes_give_the_rows_of_one_and_a_rerun_skips_them(tmp_path, capsys,
                                                                    frozen_code):
    folder = make_image_folder(tmp_path / "tiny", per_class=4)
    _run(capsys, tmp_path, folder, "one", "1")
    _run(capsys, tmp_path, folder, "two", "2")
    one, two = _rows(tmp_path, "one"), _rows(tmp_path, "two")
    assert [r["model"] for r in one] == list(MODELS)
    assert two == one
    assert all(r["node"] == platform.node() and r["cache_hit"] == "False" for r in one)
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 and r["n_test"] == "8" for r in one)
    before = _raw_records(tmp_path, "two")
    out, err = _run(capsys, tmp_path, folder, "two", "2")
    assert "2 skipped (done before)" in err and "0 ok" in err, err
    assert out.count("tiny linear: accuracy") == 2  # the records, from the done-store
    assert _raw_records(tmp_path, "two") == before  # nothing appended twice
    assert _rows(tmp_path, "two") == one
