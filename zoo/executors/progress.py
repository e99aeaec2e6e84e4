"""One progress display on the driver, the same for every executor: tasks done, running,
failed and skipped, and per node what it has done and is running. Redrawn only when a
task starts or ends (a display that redraws 10 times a second takes CPU from the tasks)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zoo.executors.task import Task, TaskResult

if TYPE_CHECKING:
    from rich.live import Live


@dataclass
class NodeCounts:
    hardware: str = ""
    done: int = 0
    failed: int = 0
    running: list[str] = field(default_factory=list)


class TaskProgress:
    """``Events`` on a rich live table (stderr); on a stderr that is not a terminal (a log,
    CI), one line per finished task instead; nothing when ``enabled`` is False."""

    def __init__(self, total: int, *, title: str = "tasks", enabled: bool = True) -> None:
        self.total, self.title, self.enabled = total, title, enabled
        self.done = self.failed = self.skipped = self.retries = 0
        self.nodes: dict[str, NodeCounts] = {}
        self.t0 = time.perf_counter()
        self._live: "Live | None" = None

    def __enter__(self) -> "TaskProgress":
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(stderr=True), auto_refresh=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._redraw()
            self._live.__exit__(*exc)

    def expect(self, n: int) -> None:
        """``n`` more tasks than announced (a command that runs its tasks in phases)."""
        self.total += n
        self._redraw()

    def skipped_done(self, result: TaskResult) -> None:
        self.skipped += 1
        self._redraw()

    def started(self, task: Task, node: str) -> None:
        self.nodes.setdefault(node, NodeCounts()).running.append(task.key)
        self._redraw()

    def retried(self, task: Task, error: str) -> None:
        self.retries += 1
        self._redraw()

    def finished(self, result: TaskResult) -> None:
        for counts in self.nodes.values():  # where it was started ("(cluster)" on Ray)
            if result.key in counts.running:
                counts.running.remove(result.key)
                break
        counts = self.nodes.setdefault(result.node.name, NodeCounts())
        counts.hardware = result.node.hardware
        if result.status == "ok":
            self.done, counts.done = self.done + 1, counts.done + 1
        else:
            self.failed, counts.failed = self.failed + 1, counts.failed + 1
        if self.enabled and self._live is None:
            error = f": {result.error[:200]}" if result.error else ""
            print(f"[{self.done + self.failed + self.skipped}/{self.total}] {result.key}: "
                  f"{result.status} on {result.node.name} ({result.seconds:.0f} s"
                  f"{f', attempt {result.attempts}' if result.attempts > 1 else ''}){error}",
                  file=sys.stderr, flush=True)
        self._redraw()

    def summary(self) -> str:
        return (f"{self.title}: {self.done} ok, {self.failed} failed, {self.skipped} skipped "
                f"(done before), {self.retries} retried, of {self.total} "
                f"in {time.perf_counter() - self.t0:.0f} s")

    def _redraw(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def _render(self):
        from rich.table import Table

        running = sum(len(c.running) for c in self.nodes.values())
        table = Table(title=f"{self.title}: {self.done + self.failed + self.skipped}/"
                            f"{self.total} finished, {running} running, {self.failed} failed, "
                            f"{self.skipped} skipped, {self.retries} retried "
                            f"({time.perf_counter() - self.t0:.0f} s)",
                      title_justify="left")
        for col in ("node", "hardware", "ok", "failed", "running"):
            table.add_column(col, justify="right" if col in ("ok", "failed") else "left",
                             overflow="fold")
        for name, c in sorted(self.nodes.items()):
            table.add_row(name, c.hardware, str(c.done), str(c.failed),
                          ", ".join(c.running[:3]) + (" ..." if len(c.running) > 3 else ""))
        return table
