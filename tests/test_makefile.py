"""The Makefile passes user values as single arguments, never as shell code."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``make`` on the project's Makefile, run in ``tmp_path``, with this interpreter and
    without reinstalling (``-o``: the stamp counts as up to date)."""
    return subprocess.run(["make", "--no-print-directory", "-f", str(REPO / "Makefile"),
                           "-o", ".venv/.installed", f"PY={sys.executable}", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                               "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_model_with_shell_syntax_is_one_argument(tmp_path):
    proc = make(tmp_path, "convert", "MODEL=squeezenet1_0;touch injected;echo",
                "WEIGHTS=random", "OUT=out dir")
    assert not (tmp_path / "injected").exists()
    assert proc.returncode == 2  # make's own code for "a recipe failed"
    assert "unknown model 'squeezenet1_0;touch injected;echo'" in proc.stderr
    assert "Error 2" in proc.stderr  # the command's own exit code, as make reports it


def test_model_with_spaces_is_not_split_into_options(tmp_path):
    proc = make(tmp_path, "parity", "MODEL=squeezenet1_1 --help")
    assert proc.returncode == 2 and "usage:" not in proc.stdout
    assert "unknown model 'squeezenet1_1 --help'" in proc.stderr


def test_out_with_a_space_names_one_folder(tmp_path):
    (tmp_path / "my").write_text("keep me")
    (tmp_path / "my out" / "m").mkdir(parents=True)
    proc = make(tmp_path, "clean", "OUT=my out")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "my out").exists() and (tmp_path / "my").read_text() == "keep me"


def test_list_variables_split_on_spaces_only(tmp_path):
    proc = make(tmp_path, "bench", "BENCH_ARGS=--models no_such_net;touch injected --threads 1")
    assert not (tmp_path / "injected").exists()
    assert proc.returncode == 2 and "unknown model 'no_such_net;touch'" in proc.stderr
