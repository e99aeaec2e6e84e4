"""``bench accuracy`` as one task per model: two tiny models (random weights, ONNX only,
4 photos) on two processes give the rows of one process, each naming its node; a re-run
skips the models done. On a local Ray cluster (slow: the cluster's start-up) the same."""
from __future__ import annotations

import csv
import platform
from pathlib import Path

import pytest

from bench.accuracy import tasks as accuracy_tasks
from converters.calibration import imagenet_sample_dir

MODELS = ("squeezenet1_1", "mobilenet_v3_small")
TIMED = ("seconds", "date")  # wall time and clock: columns two runs differ in
# Float round-off: a task alone gets every core, two at once one thread each (the
# executor's share), and a runtime sums in another order on another thread count.
ROUNDING = ("mean_logit_err", "max_logit_err")
needs_sample = pytest.mark.skipif(not imagenet_sample_dir().is_dir(),
                                  reason=f"no {imagenet_sample_dir()} on this machine")


@pytest.fixture
def frozen_code(monkeypatch):
    """The code part of the fingerprint as it is now: other edits to the tree during the
    test must not make its re-run look like new code."""
    code = accuracy_tasks.code_digest(accuracy_tasks.CODE)
    monkeypatch.setattr(accuracy_tasks, "code_digest", lambda packages: code)


def _run(capsys, tmp_path: Path, results: str, *extra: str) -> str:
    """The run's stderr, once it exited 0."""
    from bench.__main__ import main

    code = main(["accuracy", "--models", *MODELS, "--weights", "random", "--formats", "onnx",
                 "--limit", "4", "--artifacts", str(tmp_path / "artifacts"),
                 "--results", str(tmp_path / results), *extra])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    return err


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    """Equal rows, but for the logit errors' last digits (within 1e-6 of each other)."""
    assert [{k: v for k, v in r.items() if k not in ROUNDING} for r in a] == \
        [{k: v for k, v in r.items() if k not in ROUNDING} for r in b]
    for ra, rb in zip(a, b):
        for k in ROUNDING:
            assert (ra[k] == rb[k] == "") or float(ra[k]) == pytest.approx(float(rb[k]), abs=1e-6)


def _rows(tmp_path: Path, results: str) -> list[dict]:
    with open(tmp_path / results / "accuracy-imagenet-sample.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMED} for r in csv.DictReader(fh)]


@needs_sample
def test_two_processes_give_the_rows_of_one_and_a_rerun_skips_them(tmp_path, capsys,
                                                                    frozen_code):
    _run(capsys, tmp_path, "one", "--jobs", "1")  # converts both models (ONNX)
    _run(capsys, tmp_path, "two", "--jobs", "2")
    one, two = _rows(tmp_path, "one"), _rows(tmp_path, "two")
    assert [(r["model"], r["format"]) for r in one] == [
        (m, f) for m in MODELS for f in ("pytorch", "onnx")]
    assert_same_rows(two, one)
    assert all(r["n"] == "4" and r["error"] == "" and r["node"] == platform.node() for r in one)
    assert all(float(r["agreement"]) == 1.0 for r in one)
    assert float(one[1]["max_logit_err"]) < 1e-4  # squeezenet's ONNX row really ran
    err = _run(capsys, tmp_path, "two", "--jobs", "2")
    assert "2 skipped (done before)" in err and "0 ok" in err, err
    assert _rows(tmp_path, "two") == two  # the rows done before, as they were


@needs_sample
@pytest.mark.slow
def test_on_a_local_ray_cluster_the_rows_are_the_local_ones(tmp_path, capsys, frozen_code):
    pytest.importorskip("ray", reason="ray is in the dev extra (pip install -e '.[dev]')")
    _run(capsys, tmp_path, "local")
    _run(capsys, tmp_path, "ray", "--executor", "ray", "--jobs", "2")
    assert_same_rows(_rows(tmp_path, "ray"), _rows(tmp_path, "local"))
    assert {r["node"] for r in _rows(tmp_path, "ray")} == {platform.node()}
