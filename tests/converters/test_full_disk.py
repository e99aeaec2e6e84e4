"""A full disk stops a run: one line, exit 2, nothing half-written under a finished name.

A tmpfs of its own (``mount``: root only; elsewhere these tests skip, saying so) is filled
to leave a chosen number of bytes, so the disk runs out at a known step.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

MB = 1 << 20


@pytest.fixture
def small_disk(tmp_path):
    """An empty 64 MB tmpfs mounted under ``tmp_path``."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"a full disk needs a tmpfs of its own, and mount failed here: "
                    f"{proc.stderr.strip() or proc.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def leave_free(disk: Path, free: int) -> None:
    """Fill ``disk`` so that ``free`` bytes are left."""
    st = os.statvfs(disk)
    fd = os.open(disk / "filler", os.O_CREAT | os.O_WRONLY)
    try:
        os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - free)
    finally:
        os.close(fd)


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def test_convert_onto_a_full_disk_stops_instead_of_falling_back(small_disk):
    """23 MB: enough for the ONNX file, the Keras model and onnx2tf's inputs, not for its
    TFLite files. onnx2tf's ENOSPC once read as "onnx2tf failed": the Keras export then
    made SavedModel/TFLite in the space onnx2tf's files had freed and the run exited 0."""
    leave_free(small_disk, 23 * MB)
    out = small_disk / "out"
    proc = run_cli("converters", "convert", "tests/fixtures/user_model.py:wide_net",
                   "--no-parity", "--out", str(out))
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Keras model" not in proc.stdout
    (error,) = _errors(proc.stderr)
    assert "no space left on device" in error and "onnx2tf" in error, error
    steps = [ln for ln in proc.stderr.splitlines() if ln.startswith("  ... ")]
    assert steps[-1].startswith("  ... onnx2tf"), steps  # the step the disk ran out in
    assert list(out.iterdir()) == []  # no folder, no staging left


def test_convert_with_room_to_spare_lands_every_format(small_disk):
    """The same model with 40 MB free: the fixture leaves room for a whole conversion."""
    leave_free(small_disk, 40 * MB)
    out = small_disk / "out"
    proc = run_cli("converters", "convert", "tests/fixtures/user_model.py:wide_net",
                   "--no-parity", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [p.name for p in out.iterdir()] == ["user_model-wide_net"]


def test_tables_onto_a_full_disk_leave_no_partial_file(small_disk, tmp_path):
    """``bench report`` regenerating tables with 8 KB free: one line, exit 2, and no file
    under a finished table's name (it once left a 0-byte CSV and a traceback, exit 1)."""
    raw = tmp_path / "raw.jsonl"
    shutil.copy(next((REPO / "results" / "raw").glob("latency-cpu-2t-*.jsonl")), raw)
    whole = tmp_path / "whole"
    assert run_cli("bench", "report", str(raw), "--out", str(whole)).returncode == 0
    results = small_disk / "results"
    results.mkdir()
    leave_free(small_disk, 8 << 10)
    proc = run_cli("bench", "report", str(raw), "--out", str(results))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (error,) = _errors(proc.stderr)
    assert "no space left on device" in error
    written = sorted(p.name for p in results.iterdir())
    assert len(written) < len(list(whole.iterdir())), written  # the disk did run out
    for name in written:  # whatever is there is whole: no partial or temporary file
        assert (results / name).read_bytes() == (whole / name).read_bytes(), name
