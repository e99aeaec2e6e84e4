"""SIGTERM during a conversion: one line, exit 143, no staging folder left; stale stages go."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from converters.manifest import remove_stale_stages, staged_folder
from tests.conftest import REPO


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"exited early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def test_sigterm_mid_conversion_removes_the_stage(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "converters", "convert", "squeezenet1_1", "--weights", "random",
         "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    # Wait until the ONNX file is in the staging folder: the conversion is under way.
    _wait_for(lambda: any(out.glob(".squeezenet1_1.partial-*/*.onnx")), 300, proc)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    # within a scheduler's grace period: no minutes of interpreter shutdown after the line
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(
        "python -m converters convert: terminated (SIGTERM)")
    assert list(out.iterdir()) == []  # neither a stage nor a folder that looks finished


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_later_run_removes_stale_stages_of_dead_processes(tmp_path):
    final = tmp_path / "model"
    dead = tmp_path / f".model.partial-{_dead_pid()}"
    old = tmp_path / f".model.old-{_dead_pid()}"
    live = tmp_path / f".model.partial-{os.getppid()}"  # our parent: alive, maybe writing
    other = tmp_path / f".other.partial-{_dead_pid()}"  # another model's: not ours to judge
    for d in (dead, old, live, other):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "big.onnx").write_bytes(b"x" * 1000)
    with staged_folder(final) as stage:
        (stage / "a.txt").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model", live.name, other.name])
    assert remove_stale_stages(tmp_path / "other") == [other]


def test_a_killed_process_not_yet_reaped_counts_as_gone(tmp_path):
    """A lost Ray worker's conversion is SIGKILLed with it and stays a zombie until its new
    parent reaps it; the retry must still remove its stage (it failed CI 2 runs in 3)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc.kill()  # not waited for: a zombie, which os.kill(pid, 0) still finds
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.05)
        stage = tmp_path / f".model.partial-{proc.pid}"
        stage.mkdir()
        assert remove_stale_stages(tmp_path / "model") == [stage] and not stage.exists()
    finally:
        proc.wait()
