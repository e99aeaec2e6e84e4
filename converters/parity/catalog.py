"""Parity for many catalog models: each one checked by ``python -m converters parity`` in a
fresh process (TensorFlow and big models leak memory), as tasks of a ``zoo.executors``
executor: one at a time, a local process pool (``--jobs``), or a Ray cluster.

It stays in ``converters``: it runs a converters command and backs ``parity-catalog``, a
converters command, and ``converters`` may not import ``bench``. Only the running is here;
the table is built by ``converters.parity.catalog_table`` from the records each task
returns to the driver (its parity JSON, or a one-line error), which are also what the run
left on disk under ``--out`` (so ``--collect-only`` builds the same table).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from converters.parity.catalog_table import error_file
from zoo import atomic
from zoo.executors import PYTHON, Task, TaskResult, code_digest, fingerprint
from zoo.executors.done import DONE_DIR  # under --out: which models are done
from zoo.executors.task import absolute_spec


def weights_identity(model: str, weights: str) -> str:
    """What decides a model's weights: ``auto`` resolved as a run would, a file by its
    size and mtime (zoo.executors.task.weights_identity)."""
    from zoo.executors.task import weights_identity as identity
    from zoo.registry import get_entry
    from zoo.weights import imagenet_available_offline

    if weights == "auto":
        offline = imagenet_available_offline(get_entry(model))
        return f"auto->{'imagenet' if offline else 'random'}"
    return identity(weights)


def catalog_tasks(models: list[str], *, out_root: Path, weights: str = "auto") -> list[Task]:
    """One task per model; the fingerprint covers the converters' and zoo's code, the
    weights and the command line (a change to any re-runs the model)."""
    out = str(Path(out_root).absolute())  # every node sees the same path (a shared --out)
    weights = absolute_spec(weights)  # a state dict: the same absolute path on every node
    code = code_digest(("zoo", "converters"))
    tasks = []
    for model in models:
        argv = (PYTHON, "-m", "converters", "parity", model, "--weights", weights, "--out", out)
        tasks.append(Task(key=f"parity/{model}", argv=argv, collect=collect_parity,
                          fingerprint=fingerprint(argv[1:], code, weights_identity(model, weights)),
                          data={"model": model, "out_root": out}, cwd=str(Path.cwd())))
    return tasks


def collect_parity(task: Task, proc: subprocess.CompletedProcess) -> tuple[list[dict], str]:
    """On the node, once the model's process ended: its parity JSON records, or why it
    checked nothing (also left on disk as the model's error file)."""
    model, out_root = task.data["model"], Path(task.data["out_root"])
    record_outcome(model, proc, out_root)
    err_file = error_file(out_root, model)
    if err_file.exists():
        return [], err_file.read_text().strip()
    return [json.loads(p.read_text())
            for p in sorted((out_root / model / "parity").glob("*_vs_*.json"))], ""


def run_catalog(models: list[str], *, out_root: Path, weights: str = "auto",
                executor=None, show: bool = True) -> list[TaskResult]:
    """``python -m converters parity`` per model, on ``executor`` (default: one local
    process at a time); models done before with the same fingerprint are skipped."""
    from zoo.executors.driver import run_tasks

    tasks = catalog_tasks(models, out_root=out_root, weights=weights)
    return run_tasks(executor, tasks, done_root=Path(out_root) / DONE_DIR,
                     title="parity-catalog", show=show)


def record_outcome(model: str, proc: subprocess.CompletedProcess, out_root: Path) -> None:
    """Leave the model's error file when its run checked nothing (bad input, or no parity
    folder), saying why in one line; remove a stale one otherwise."""
    err_file = error_file(out_root, model)
    if proc.returncode == 2 or not (out_root / model / "parity").is_dir():
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        atomic.write_text(err_file, (errors[-1] if errors else lines[-1] if lines else
                                     f"exit {proc.returncode}") + "\n")
    elif err_file.exists():
        err_file.unlink()
