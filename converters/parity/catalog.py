"""Parity for many catalog models: each one checked by ``python -m converters parity`` in a
fresh process (TensorFlow and big models leak memory), one after the other.

It stays in ``converters``: it runs a converters command and backs ``parity-catalog``, a
converters command, and ``converters`` may not import ``bench``. Only the running is here;
the table is built by ``converters.parity.catalog_table`` from what each run leaves on disk
(its parity JSON, or a one-line error file), so another executor can replace this loop.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from converters.parity.catalog_table import error_file
from zoo.exits import run_child


def run_catalog(models: list[str], *, out_root: Path, weights: str = "auto",
                log: Callable[[str], None] = print) -> None:
    """``python -m converters parity`` per model in a fresh process."""
    for i, model in enumerate(models, 1):
        t0 = time.perf_counter()
        proc = run_child([sys.executable, "-m", "converters", "parity", model,
                          "--weights", weights, "--out", str(out_root)])
        record_outcome(model, proc, out_root)
        log(f"[{i}/{len(models)}] {model}: exit {proc.returncode} "
            f"({time.perf_counter() - t0:.0f} s)")


def record_outcome(model: str, proc: subprocess.CompletedProcess, out_root: Path) -> None:
    """Leave the model's error file when its run checked nothing (bad input, or no parity
    folder), saying why in one line; remove a stale one otherwise."""
    err_file = error_file(out_root, model)
    if proc.returncode == 2 or not (out_root / model / "parity").is_dir():
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        err_file.write_text((errors[-1] if errors else lines[-1] if lines else
                             f"exit {proc.returncode}") + "\n")
    elif err_file.exists():
        err_file.unlink()
