"""Executors: run many independent tasks (one model, or one model x runtime) each in a
fresh process, on this machine (``LocalExecutor``, a process pool) or on a Ray cluster
(``RayExecutor``), and hand every task's records back to the driver.

Why in ``zoo``: the executor serves ``converters`` commands (``parity-catalog``) and
``bench`` commands (latency, accuracy, transfer), and the dependency direction is ``bench -> converters ->
zoo``: ``converters`` may not import ``bench``, so the one interface both use lives below
both. Nothing here imports ``converters`` or ``bench``; a command describes its work as
``Task`` entries (a command line, a fingerprint, and a module-level ``collect`` function
that turns what the process left into records), and never learns which executor ran it.

A task's process that is a Python worker writes its records as one JSON line on stdout,
read back by ``worker.collect_result`` (``worker``: both sides of that line).

``run_tasks`` is the driver's loop: tasks already done with the same fingerprint (a
done-store on disk, see ``done``) are skipped, the rest run on the executor with one
progress display (``progress``), and each result is recorded as done once its outputs
are complete.
"""
from __future__ import annotations

from zoo.executors.task import PYTHON, NodeInfo, Task, TaskResult, code_digest, fingerprint

__all__ = ["PYTHON", "NodeInfo", "Task", "TaskResult", "code_digest", "fingerprint"]
