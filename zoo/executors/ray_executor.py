"""``RayExecutor``: tasks as Ray tasks on a cluster (``ray start --head`` / ``ray start
--address=...``), or on a local one started here when no ``--address`` is given.

Each Ray task runs ``zoo.executors.task.execute`` on its node: the task's own process
(killed with the Ray worker if that dies), then its ``collect``; the result, records
included, comes back to the driver. Faults: Ray re-runs a task whose worker process or
node died (``max_retries``); a task whose own process was killed is re-submitted by the
driver, within the same bound; a process that exits 1/2/3 is a result, never retried.
A whole-node task is pinned to a free node and takes all of its CPUs (and one GPU with
``gpu``), so Ray starts nothing beside it.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

from zoo.executors.base import CLUSTER_EXTRA, MAX_RETRIES, Events, ExecutorUnavailable
from zoo.executors.task import NodeInfo, Task, TaskResult, execute, this_node

GRACE_S = 10.0  # SIGTERM, then SIGKILL: as zoo.exits.stop_process_group
RAY_WORKER_ENV = ("OMP_NUM_THREADS",)  # set by Ray in a worker when the driver has none
TASK_CPUS = 1  # Ray CPUs (and threads) a task holds, unless it takes the whole node


CONNECT_TIMEOUT_S = 5.0  # a cluster address that answers nothing fails within this


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """``ExecutorUnavailable`` (one line, exit 2) when nothing accepts a connection at a
    ``host:port`` or ``ray://host:port`` address within ``timeout`` seconds; Ray itself
    would retry the GCS for minutes. ``auto`` (the cluster ``ray start`` made here) is
    left to Ray, which fails at once when there is none."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ExecutorUnavailable(
            f"--address {address}: no Ray cluster there ({why} within {timeout:g} s; start "
            "one with `ray start --head`, or leave --address out for a local one)") from None


def _run_on_node(task: Task, unset: tuple[str, ...], threads: int | None) -> TaskResult:
    return execute(task, die_with_parent=True, unset=unset, threads=threads)


def _probe() -> tuple[NodeInfo, Any]:
    import ray

    return this_node(), ray.get_runtime_context().get_node_id()


class RayExecutor:
    name = "ray"

    def __init__(self, *, address: str | None = None, jobs: int | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailable(f"--executor ray needs Ray, which is not installed: "
                                      f"{CLUSTER_EXTRA}") from None
        self.ray, self.max_retries = ray, max_retries
        address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own variable
        local = address is None
        if not local:
            check_reachable(address)
        try:
            ray.init(address=address, num_cpus=(jobs or 1) if local else None,
                     include_dashboard=False, log_to_driver=False, configure_logging=False,
                     ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorUnavailable(f"--address {address}: cannot join the Ray cluster "
                                      f"({str(exc).splitlines()[0][:200]})") from None
        self._remote = ray.remote(_run_on_node)
        # Ray sets OMP_NUM_THREADS in its workers (to the task's CPUs, 1) when it is unset;
        # the task's process gets the executor's own thread settings instead: a task holds
        # one of its node's CPUs, so it runs on one thread (as a local run's tasks do with
        # --jobs equal to the CPUs), and a whole-node task on every core.
        self.threads = TASK_CPUS
        self._unset = tuple(v for v in RAY_WORKER_ENV if v not in os.environ)
        self._nodes: dict[str, tuple[NodeInfo, float]] | None = None

    def _node_table(self) -> dict[str, tuple[NodeInfo, float]]:
        """Every alive node with CPUs for tasks (a head started with ``--num-cpus 0`` runs
        none): id -> (what it is, its CPU count), probed once by a task pinned to it (the
        CPU model is only known on the node itself)."""
        if self._nodes is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            alive = [n for n in self.ray.nodes()
                     if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
            probe = self.ray.remote(_probe)
            refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote() for n in alive]
            cpus = {n["NodeID"]: float(n["Resources"]["CPU"]) for n in alive}
            self._nodes = {nid: (info, cpus[nid]) for info, nid in self.ray.get(refs)}
        return self._nodes

    def nodes(self) -> list[NodeInfo]:
        return [info for info, _ in self._node_table().values()]

    def close(self) -> None:
        self.ray.shutdown()

    def _place(self, task: Task, free: list[str]) -> str | None:
        """The node a whole-node task takes now (removed from ``free``; None when none is
        free), or the node a pinned task must run on."""
        table = self._node_table()
        wanted = [nid for nid, (info, _) in table.items()
                  if not task.on_node or info.name == task.on_node]
        if not wanted:
            raise ValueError(f"task {task.key}: no alive node named {task.on_node!r}")
        if not task.whole_node:
            return wanted[0] if task.on_node else None
        node_id = next((nid for nid in free if nid in wanted), None)
        if node_id is not None:
            free.remove(node_id)
        return node_id

    def _submit(self, task: Task, node_id: str | None) -> Any:
        opts: dict[str, Any] = {"num_cpus": TASK_CPUS, "max_retries": self.max_retries,
                                "retry_exceptions": False}
        if node_id is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        if task.whole_node:  # all the node's CPUs: Ray starts nothing beside it
            opts.update(num_cpus=self._node_table()[node_id][1], num_gpus=1 if task.gpu else 0)
        return self._remote.options(**opts).remote(task, self._unset, self.threads)

    def run(self, tasks: Sequence[Task], events: Events) -> Iterator[TaskResult]:
        ray = self.ray
        pending = list(tasks)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        free = list(self._node_table()) if any(t.whole_node for t in tasks) else []
        running: dict[Any, tuple[Task, int, str | None]] = {}
        try:
            while pending or running:
                for task in list(pending):
                    if len(running) >= slots:
                        break
                    node_id = self._place(task, free)
                    if task.whole_node and node_id is None:
                        continue  # its node (or every node) is busy: wait for one
                    pending.remove(task)
                    running[self._submit(task, node_id)] = (task, 1, node_id)
                    events.started(task, self._node_table()[node_id][0].name
                                   if node_id is not None else "(cluster)")
                [ref], _ = ray.wait(list(running), num_returns=1)
                task, attempt, node_id = running.pop(ref)
                if task.whole_node:
                    free.append(node_id)
                result, lost = self._result(ref, task)
                result = result if lost else result.with_(attempts=attempt)
                if result.status == "died" and not lost and attempt <= self.max_retries:
                    events.retried(task, result.error)
                    running[self._submit(task, node_id)] = (task, attempt + 1, node_id)
                    if task.whole_node:
                        free.remove(node_id)
                    continue
                yield result
        except BaseException:
            self._stop(list(running))
            raise

    def _stop(self, refs: list[Any]) -> None:
        """Interrupted: each running task gets KeyboardInterrupt, so its process gets
        SIGTERM and removes its staging folder; what still runs after the grace period is
        killed with its worker (and its process with it)."""
        if not refs:
            return
        for ref in refs:
            self.ray.cancel(ref)
        _, left = self.ray.wait(refs, num_returns=len(refs), timeout=GRACE_S)
        for ref in left:
            self.ray.cancel(ref, force=True)

    def _result(self, ref: Any, task: Task) -> tuple[TaskResult, bool]:
        """The task's result, and whether its worker was lost (Ray has retried it already)."""
        from ray.exceptions import RayError, RayTaskError

        try:
            return self.ray.get(ref), False
        except RayTaskError as exc:  # raised in our own code on the node: a bug, not a death
            return TaskResult(task.key, task.fingerprint, "failed", None, [],
                              f"{type(exc.cause).__name__}: {str(exc.cause)[:300]}",
                              NodeInfo("(unknown)", "", 0), 0.0), True
        except RayError as exc:  # the worker or its node died, after Ray's own retries
            line = str(exc).strip().splitlines()
            return TaskResult(task.key, task.fingerprint, "died", None, [],
                              f"Ray worker lost after {self.max_retries} retries: "
                              f"{type(exc).__name__}: {line[0][:200] if line else ''}",
                              NodeInfo("(unknown)", "", 0), 0.0,
                              attempts=self.max_retries + 1), True
