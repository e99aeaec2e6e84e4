"""The driver's loop: skip what is done, run the rest, record each result as done."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from zoo.executors.base import Executor
from zoo.executors.done import DoneStore
from zoo.executors.progress import TaskProgress
from zoo.executors.task import Task, TaskResult


def run_tasks(executor: Executor | None, tasks: Sequence[Task], *, done_root: Path | None,
              title: str = "tasks", show: bool = True,
              progress: TaskProgress | None = None,
              on_result: Callable[[TaskResult], None] | None = None) -> list[TaskResult]:
    """Every task's result, in the order of ``tasks``, run on ``executor`` (None: one local
    process at a time); ``progress``: a display the caller
    keeps open across several calls (one per phase), else one of its own; ``on_result``:
    called with each result as it arrives (a command that writes records as they come).

    A task whose done-store entry has the same fingerprint is not run (its stored result
    comes back, ``cached=True``). A finished task is recorded as done only after its
    process ended and its records were collected, atomically (``DoneStore.put``); an
    interrupt at any moment leaves no entry for unfinished work.
    """
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique in a run")
    if executor is None:
        from zoo.executors.local import LocalExecutor

        executor = LocalExecutor(jobs=1)
    store = DoneStore(done_root) if done_root is not None else None
    if progress is not None:
        progress.expect(len(tasks))
        return _run(executor, tasks, store, progress, on_result)
    with TaskProgress(len(tasks), title=title, enabled=show) as own:
        results = _run(executor, tasks, store, own, on_result)
    if show:
        import sys

        print(own.summary(), file=sys.stderr)
    return results


def _run(executor: Executor, tasks: Sequence[Task], store: DoneStore | None,
         progress: TaskProgress, on_result: Callable[[TaskResult], None] | None
         ) -> list[TaskResult]:
    results: dict[str, TaskResult] = {}
    todo = []
    for task in tasks:
        cached = store.get(task.key, task.fingerprint) if store else None
        if cached is not None:
            results[task.key] = cached
            progress.skipped_done(cached)
            if on_result is not None:
                on_result(cached)
        else:
            todo.append(task)
    for result in executor.run(todo, progress):
        if store is not None:
            if result.done:
                store.put(result)
            else:
                store.discard(result.key)
        results[result.key] = result
        progress.finished(result)
        if on_result is not None:
            on_result(result)
    return [results[t.key] for t in tasks]
