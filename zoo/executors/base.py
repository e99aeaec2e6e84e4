"""The executor protocol, the retry bound, and the error of one that cannot start."""
from __future__ import annotations

from typing import Iterator, Protocol, Sequence

from zoo.executors.task import NodeInfo, Task, TaskResult
from zoo.exits import UserError

MAX_RETRIES = 2  # a task whose worker dies runs at most 1 + MAX_RETRIES times
EXECUTORS = ("local", "ray")
CLUSTER_EXTRA = "pip install 'modelzoo[cluster]'"


class ExecutorUnavailable(UserError, RuntimeError):
    """The chosen executor cannot start here (Ray not installed, no cluster at --address):
    one line and exit 2."""


class Events(Protocol):
    """What the driver's display hears; executors call it from the driver's thread only."""
    def started(self, task: Task, node: str) -> None: ...
    def retried(self, task: Task, error: str) -> None: ...
    def finished(self, result: TaskResult) -> None: ...


class Executor(Protocol):
    name: str
    # threads each task's process gets (None: the runtimes' default, every core of its node);
    # what a results header states as the run's threads
    threads: int | None

    def nodes(self) -> list[NodeInfo]:
        """The nodes tasks may run on (this machine, or every alive cluster node)."""
        ...

    def run(self, tasks: Sequence[Task], events: Events) -> Iterator[TaskResult]:
        """Run every task, yielding each result as it completes (any order). A task that
        died is retried up to ``MAX_RETRIES`` times; one that failed is not."""
        ...

    def close(self) -> None: ...
