"""The task's own process side of the result line, and the driver's side that reads it.

A task's process (``python -m bench.latency.worker``, ``bench.accuracy.worker``,
``bench.transfer.worker``) keeps the real stdout for one JSON line, ``{"records": [...],
"error": "..."}``, written last; everything else it or its libraries print (onnx2tf's
chatter, progress) goes to stderr, so the line stays parseable. ``collect_result`` is the
``Task.collect`` that reads it back on the node.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Sequence, TextIO

if TYPE_CHECKING:
    from zoo.executors.task import Task


def stdout_to_stderr() -> TextIO:
    """The real stdout, for the result line; from now on fd 1 is stderr (C libraries too)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(saved, "w")


def write_result(out: TextIO, records: Sequence[dict[str, Any]], error: str = "") -> None:
    """The one result line: the task's records and, when something failed, why."""
    out.write(json.dumps({"records": list(records), "error": error}, default=str) + "\n")
    out.flush()


def read_result(stdout: str) -> dict[str, Any] | None:
    """The last stdout line as a result payload, or None when it is not one."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        payload = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def collect_result(task: "Task", proc: subprocess.CompletedProcess
                   ) -> tuple[list[dict[str, Any]], str]:
    """``Task.collect`` for a process that wrote ``write_result``'s line: its records and
    error; without the line, the last ``error:`` (or any) line of its stderr."""
    from zoo.executors.task import error_line

    payload = read_result(proc.stdout or "")
    if payload is None:
        return [], error_line(proc)
    return list(payload.get("records") or []), str(payload.get("error") or "")
