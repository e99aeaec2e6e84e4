"""SIGTERM during a latency run: exit 143, the worker is killed, no finished-looking raw file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.bench.latency_helpers import FAST_ARGS
from tests.conftest import REPO


def _latency_worker(parent: psutil.Process) -> psutil.Process | None:
    for child in parent.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "bench.latency.worker" in cmd and '"kind": "latency"' in cmd:
            return child
    return None


def test_sigterm_kills_the_worker_and_keeps_no_finished_raw_file(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--models", "squeezenet1_1", "--runtimes", "pytorch",
         "--weights", "random", *FAST_ARGS, "--min-time", "60", "--max-time", "120",
         "--artifacts", str(tmp_path / "artifacts"), "--results", str(results)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 300
    while (worker := _latency_worker(parent)) is None:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no latency worker started"
        time.sleep(0.2)
    time.sleep(1.0)  # let it start timing
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr and "terminated (SIGTERM)" in stderr
    worker.wait(timeout=10) if worker.is_running() else None
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    raw = results / "raw"
    names = sorted(p.name for p in raw.iterdir())
    assert len(names) == 1 and names[0].endswith(".interrupted.jsonl"), names
    assert not list(results.glob("latency-*.csv"))  # no table from an unfinished run


def test_sigterm_during_the_conversion_worker_leaves_no_stage(tmp_path):
    """The worker gets SIGTERM before SIGKILL, so its conversion removes its own stage."""
    artifacts = tmp_path / "artifacts"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--models", "squeezenet1_1", "--runtimes", "onnxruntime",
         "--weights", "random", *FAST_ARGS, "--artifacts", str(artifacts),
         "--results", str(tmp_path / "results")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.monotonic() + 300
    while not any(artifacts.glob(".squeezenet1_1.partial-*/*.onnx")):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the conversion never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    assert list(artifacts.iterdir()) == [], list(artifacts.iterdir())
