"""The sweep's tasks (one ``zoo.executors`` task per model: ``converters.sweep.worker`` in a
fresh process), their records, and the command's exit status."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any, Sequence

from zoo.executors import PYTHON, Task, TaskResult, code_digest, fingerprint
from zoo.executors.done import DONE_DIR  # under --out: the executor's done-store
from zoo.executors.task import absolute_spec
from zoo.exits import ExitCode

RECORDS_DIR = ".records"  # under --out: each model's records, as its process left them
TASK_TIMEOUT_S = 4 * 3600.0  # a hang is the model's error row, not a stuck sweep


def _weights_identity(model: str, weights: str) -> str:
    from zoo.executors.task import weights_identity
    from zoo.sources.user import is_user_target

    if is_user_target(model):  # the model file's own size and mtime
        return f"{weights_identity(model.rpartition(':')[0])}|{weights_identity(weights)}"
    from converters.parity.catalog import weights_identity as catalog_identity

    return catalog_identity(model, weights)


def sweep_tasks(models: Sequence[str], *, out_root: Path, weights: str = "auto",
                keep_artifacts: bool = False) -> list[Task]:
    """One task per model; its fingerprint covers zoo's and the converters' code, the
    weights (``auto`` resolved) and the command line: a re-run skips a model only when
    all three are unchanged."""
    out = Path(out_root).absolute()
    weights = absolute_spec(weights)
    code = code_digest(("zoo", "converters"))
    tasks = []
    for model in models:
        records = records_path(out, model)
        argv = (PYTHON, "-m", "converters.sweep.worker", model, "--weights", weights,
                "--out", str(out / "artifacts"), "--records", str(records),
                *(("--keep-artifacts",) if keep_artifacts else ()))
        tasks.append(Task(key=f"sweep/{model}", argv=argv, collect=collect_records,
                          fingerprint=fingerprint(argv[1:], code,
                                                  _weights_identity(model, weights)),
                          data={"model": model, "records": str(records)},
                          timeout=TASK_TIMEOUT_S, cwd=str(Path.cwd())))
    return tasks


def collect_records(task: Task, proc: subprocess.CompletedProcess
                    ) -> tuple[list[dict[str, Any]], str]:
    """The records the model's process left (its error row when it left none)."""
    path = Path(task.data["records"])
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if ln.startswith("error:")),
                   lines[-1] if lines else f"exit {proc.returncode}")
        return [{"model": task.data["model"], "format": "", "error": why[:300]}], why
    error = next((r["error"] for r in records if not r.get("format")), "")
    return _stamped(records, path), error


def _stamped(records: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Each record with ``swept``: when its model's process wrote it (the records file's
    mtime), so a table completed from an earlier run's records says how old each row is."""
    when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return [{**r, "swept": r.get("swept") or when.isoformat(timespec="seconds")}
            for r in records]


def records_path(out_root: Path, model: str) -> Path:
    return Path(out_root).absolute() / RECORDS_DIR / (
        model.replace("/", "__").replace(":", "--") + ".json")


def collected_records(models: Sequence[str], out_root: Path,
                      published: Sequence[dict[str, Any]] = ()
                      ) -> tuple[list[dict[str, Any]], list[str]]:
    """What earlier runs left for ``models`` (``--collect-only``): each model's records under
    ``out_root``, else its rows among ``published`` (a results folder's raw records, which
    outlive the ``--out`` folder), in model order; and the models with neither."""
    earlier: dict[str, list[dict[str, Any]]] = {}
    for r in published:
        earlier.setdefault(r["model"], []).append(r)
    records: list[dict[str, Any]] = []
    missing = []
    for model in models:
        path = records_path(out_root, model)
        try:
            records += _stamped(json.loads(path.read_text()), path)
        except (OSError, ValueError):
            if model in earlier:
                records += earlier[model]
            else:
                missing.append(model)
    return records, missing


def records_of(models: Sequence[str], results: Sequence[TaskResult]) -> list[dict[str, Any]]:
    """Every model's records, in model order; a task that left none is its error row."""
    out: list[dict[str, Any]] = []
    for model, result in zip(models, results):
        out += result.records or [{"model": model, "format": "",
                                   "error": result.error or result.status}]
    return out


def run_sweep(models: Sequence[str], *, out_root: Path, weights: str = "auto",
              executor=None, keep_artifacts: bool = False, show: bool = True
              ) -> list[dict[str, Any]]:
    from zoo.executors.driver import run_tasks

    tasks = sweep_tasks(models, out_root=out_root, weights=weights,
                        keep_artifacts=keep_artifacts)
    results = run_tasks(executor, tasks, done_root=Path(out_root) / DONE_DIR, title="sweep",
                        show=show)
    return records_of(models, results)


def sweep_status(records: Sequence[dict[str, Any]]) -> ExitCode:
    """1 when a format the tool converted fails a check (agreement or parity), 3 when a
    model or format could not be converted at all (its row says why), else 0."""
    from converters.sweep.table import ok

    rows = [r for r in records if r.get("format")]
    if any(r.get("converted") and not ok(r) for r in rows):
        return ExitCode.CHECKS_FAILED
    if not records or len(rows) < len(records) or any(not r.get("converted") for r in rows):
        return ExitCode.PARTIAL
    return ExitCode.OK
