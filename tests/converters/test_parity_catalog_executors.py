"""parity-catalog on a real local Ray cluster: the worker is killed mid-conversion and the
run still completes, with every row and no half-written folder; the table equals the one
built from disk; a re-run skips the model done. The three-model comparison with a local
run is slow (six full conversions) and marked so."""
from __future__ import annotations

import csv
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAIRS = 5  # pytorch->onnx and onnx->{tf_savedmodel, tflite_fp32, tflite_fp16, keras}


def catalog(out: Path, results: Path, *args: str, timeout: int = 1500
            ) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "converters", "parity-catalog", "--weights",
                           "random", "--out", str(out), "--results", str(results), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def table(results: Path, *, node: bool = True) -> list[dict]:
    with (results / "parity-catalog.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return rows if node else [{k: v for k, v in r.items() if k != "node"} for r in rows]


def half_written(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if re.search(r"\.(partial|old|tmp)-\d+$", p.name)]


def kill_worker_mid_conversion(out: Path, model: str, killed: list, timeout: float = 600) -> None:
    """Once ``model``'s staging folder exists (its conversion is under way), SIGKILL the
    Ray worker process running it (the parent of ``converters parity``)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(out.glob(f".{model}.partial-*")):
            for proc in psutil.process_iter(["cmdline"]):
                cmd = proc.info["cmdline"] or []
                if cmd[1:5] == ["-m", "converters", "parity", model]:
                    worker = proc.parent()
                    killed.append(" ".join(worker.cmdline()))
                    worker.send_signal(signal.SIGKILL)
                    return
        time.sleep(0.2)


def test_ray_run_survives_a_killed_worker_and_resumes(tmp_path):
    pytest.importorskip("ray", reason="ray is in the dev extra (pip install -e '.[dev]')")
    from zoo.executors import code_digest

    out, results = tmp_path / "out", tmp_path / "results"
    code = code_digest(("zoo", "converters"))  # part of every task's fingerprint
    killed: list[str] = []
    watcher = threading.Thread(target=kill_worker_mid_conversion,
                               args=(out, "squeezenet1_1", killed), daemon=True)
    watcher.start()
    proc = catalog(out, results, "--models", "squeezenet1_1", "--executor", "ray", "--jobs", "2")
    watcher.join(timeout=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert killed and "ray" in killed[0].lower(), f"no Ray worker was killed: {killed}"
    rows = table(results)
    assert len(rows) == PAIRS and {r["result"] for r in rows} == {"pass"}
    assert {r["node"] for r in rows} == {platform.node()}
    assert half_written(out) == []
    assert (out / "squeezenet1_1" / "manifest.json").is_file()
    # The rows the driver gathered from the task are the rows on disk.
    disk = catalog(out, tmp_path / "disk", "--models", "squeezenet1_1", "--collect-only")
    assert disk.returncode == 0, disk.stderr[-2000:]
    assert table(tmp_path / "disk", node=False) == table(results, node=False)
    # An interrupted or repeated driver skips the model done with the same fingerprint.
    manifest_mtime = (out / "squeezenet1_1" / "manifest.json").stat().st_mtime_ns
    t0 = time.monotonic()
    again = catalog(out, tmp_path / "again", "--models", "squeezenet1_1", "--executor", "ray")
    assert again.returncode == 0, again.stderr[-2000:]
    assert code_digest(("zoo", "converters")) == code, "the code changed during the test"
    assert "1 skipped (done before)" in again.stderr
    assert (out / "squeezenet1_1" / "manifest.json").stat().st_mtime_ns == manifest_mtime
    assert table(tmp_path / "again") == rows
    assert time.monotonic() - t0 < 60  # Ray start-up and imports only, no conversion


@pytest.mark.slow
def test_ray_table_equals_local_table_on_three_models(tmp_path):
    pytest.importorskip("ray", reason="ray is in the dev extra (pip install -e '.[dev]')")
    models = ["squeezenet1_1", "mobilenet_v3_small", "resnet18"]
    runs = {}
    for executor in ("local", "ray"):
        proc = catalog(tmp_path / executor, tmp_path / f"{executor}-results", "--models",
                       *models, "--executor", executor, "--jobs", "2", timeout=3000)
        assert proc.returncode in (0, 1), proc.stderr[-3000:]
        runs[executor] = table(tmp_path / f"{executor}-results")
        assert half_written(tmp_path / executor) == []
    assert [r["model"] for r in runs["ray"]].count("resnet18") == PAIRS
    assert {r["model"] for r in runs["ray"]} == set(models)
    assert all(r["result"] in ("pass", "FAIL") for r in runs["ray"])
    # Same rows, verdicts and numbers (each task's process sees the same thread settings
    # on either executor), and the same node: both ran here.
    assert runs["ray"] == runs["local"]
    assert {r["node"] for r in runs["ray"]} == {platform.node()}
