"""``LocalExecutor``: up to ``jobs`` tasks at once on this machine, each in its own process
(``zoo.exits.run_child``), driven from a thread pool; a whole-node task runs alone, and so
does the retry of a task whose process was killed while others ran beside it."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Iterator, Sequence

from zoo.executors.base import MAX_RETRIES, Events
from zoo.executors.task import NodeInfo, Task, TaskResult, execute, share_of_cpus, this_node

GRACE_S = 10.0  # SIGTERM, then SIGKILL: as zoo.exits.stop_process_group


class LocalExecutor:
    name = "local"

    def __init__(self, jobs: int = 1, max_retries: int = MAX_RETRIES) -> None:
        self.jobs, self.max_retries = jobs, max_retries
        # jobs tasks at once share the CPUs: each task's process gets cpus // jobs threads
        self.threads = share_of_cpus(this_node().cpus, jobs)
        self._live: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def nodes(self) -> list[NodeInfo]:
        return [this_node()]

    def close(self) -> None:
        pass

    def _track(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._live[proc.pid] = proc
        if self._stopping.is_set():  # started as the driver was stopping
            self._signal_all(signal.SIGTERM)

    def _execute(self, task: Task) -> TaskResult:
        try:
            # die with this driver: one SIGKILLed leaves no conversion running beside a rerun
            return execute(task, on_start=self._track, threads=self.threads,
                           die_with_parent=True)
        finally:
            with self._lock:
                self._live = {p: c for p, c in self._live.items() if c.poll() is None}

    def _signal_all(self, sig: int) -> None:
        with self._lock:
            procs = list(self._live.values())
        for proc in procs:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def run(self, tasks: Sequence[Task], events: Events) -> Iterator[TaskResult]:
        pending = collections.deque((task, 1) for task in tasks)
        running: dict[Future, tuple[Task, int]] = {}
        # tasks killed beside others (the OOM killer takes the biggest process, and two
        # 13 GB conversions outgrow 23 GB where one fits): retried with nothing beside them
        alone: set[str] = set()
        node = this_node().name
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="task") as pool:
            try:
                while pending or running:
                    while pending and _may_start(pending[0][0], running, self.jobs, alone):
                        task, attempt = pending.popleft()
                        running[pool.submit(self._execute, task)] = (task, attempt)
                        if attempt == 1:
                            events.started(task, node)
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        task, attempt = running.pop(fut)
                        result = fut.result().with_(attempts=attempt)
                        if result.status == "died" and attempt <= self.max_retries:
                            events.retried(task, result.error)
                            if running:
                                alone.add(task.key)
                            pending.appendleft((task, attempt + 1))
                            continue
                        yield result
            except BaseException:
                self._stop(running)
                raise

    def _stop(self, running: dict[Future, tuple[Task, int]]) -> None:
        """Interrupted: every live task gets SIGTERM (it removes its staging folder), then
        SIGKILL after the grace period; no queued task starts."""
        self._stopping.set()
        for fut in running:
            fut.cancel()
        self._signal_all(signal.SIGTERM)
        _, not_done = wait(list(running), timeout=GRACE_S)
        if not_done:
            self._signal_all(signal.SIGKILL)


def _may_start(task: Task, running: dict[Future, tuple[Task, int]], jobs: int,
               alone: set[str]) -> bool:
    """A whole-node task, or one in ``alone``, starts when nothing runs; another when a
    slot is free and no such task runs."""
    if task.whole_node or task.key in alone:
        return not running
    return len(running) < jobs and not any(t.whole_node or t.key in alone
                                           for t, _ in running.values())
