"""TensorFlow's native start-up lines are silenced unless MODELZOO_VERBOSE=1 (--verbose)."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

CODE = """
from converters.tf_compat import preload_triton
preload_triton()
import tensorflow as tf
print(float(tf.constant(1.0) + 1))
"""


def _run(verbose: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["MODELZOO_VERBOSE"] = "1" if verbose else "0"
    return subprocess.run([sys.executable, "-c", CODE], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_start_up_lines_silenced_by_default_and_kept_when_verbose():
    quiet, loud = _run(False), _run(True)
    assert quiet.returncode == loud.returncode == 0
    assert quiet.stdout.strip() == "2.0" and quiet.stderr == ""
    # The lines exist, so the quiet run really hid them. Which ones depends on the machine
    # (oneDNN's notice, absl's preamble, a failed cuInit on a CUDA build without a GPU).
    loud_lines = loud.stderr.strip().splitlines()
    assert loud_lines and any(k in loud.stderr for k in ("oneDNN", "absl", "cuInit", "I0000"))
