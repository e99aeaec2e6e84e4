"""A task, its result, and running one task in a fresh process on whatever node holds it."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from zoo.exits import raise_if_exhausted

# argv[0] placeholder: the node's own interpreter (a cluster node may keep it elsewhere)
PYTHON = "{python}"

# What a task's process left, turned into records and a one-line error ("" when none).
Collect = Callable[["Task", subprocess.CompletedProcess], "tuple[list[dict[str, Any]], str]"]

# Exit codes with which a process ends on its own (zoo.exits.ExitCode: ok, checks failed,
# bad input, partial): a real outcome, never retried. A process killed by a signal died.
OWN_EXITS = (0, 1, 2, 3)


@dataclass(frozen=True)
class NodeInfo:
    """Where a task ran: host name, CPU (or GPU) model and cores, the grouping key of
    latency rows (medians are never pooled across different hardware)."""
    name: str
    cpu: str
    cpus: int
    gpu: str = ""

    @property
    def hardware(self) -> str:
        return f"{self.cpu} ({self.cpus} CPUs)"


@functools.lru_cache(maxsize=1)
def this_node() -> NodeInfo:
    from zoo.env import available_cpus, cpu_description

    return NodeInfo(name=platform.node() or "localhost", cpu=cpu_description(),
                    cpus=available_cpus(), gpu=_gpu_name())


def _gpu_name() -> str:
    """GPU 0's name from nvidia-smi (importing torch for it would take seconds), or ""."""
    import shutil

    if not shutil.which("nvidia-smi"):
        return ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().splitlines()[0].strip() if out.strip() else ""


@dataclass(frozen=True)
class Task:
    """One unit of work: ``argv`` in a fresh process, then ``collect`` on the same node.

    ``key`` names the task in a run and in the done-store ("parity/resnet18");
    ``fingerprint`` covers code, weights and options: a done task is skipped only when it
    matches. ``whole_node``: nothing else runs on the node beside it (latency);
    ``gpu``: it also takes one GPU; ``on_node``: run on the node of that name (a
    whole-node task: each node measures its own GEMM peak). ``data``: plain values
    ``collect`` needs (the model).
    """
    key: str
    argv: tuple[str, ...]
    fingerprint: str
    collect: Collect | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    whole_node: bool = False
    gpu: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    on_node: str = ""

    def command(self) -> list[str]:
        return [sys.executable if a == PYTHON else a for a in self.argv]


@dataclass(frozen=True)
class TaskResult:
    """What came back to the driver. ``status``: ok (exit 0), failed (the process ended on
    its own with 1/2/3, or timed out: a real reason, one error row), died (its process
    killed, or the worker lost; retried up to the executor's bound first)."""
    key: str
    fingerprint: str
    status: str
    exit_code: int | None
    records: list[dict[str, Any]]
    error: str
    node: NodeInfo
    seconds: float
    attempts: int = 1
    cached: bool = False  # from the done-store of an earlier run

    @property
    def done(self) -> bool:
        """Finished with outputs that a re-run would only repeat (not a death, not bad input)."""
        return self.exit_code in (0, 1, 3)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TaskResult":
        return cls(**{**d, "node": NodeInfo(**d["node"]), "records": list(d["records"])})

    def with_(self, **changes: Any) -> "TaskResult":
        return replace(self, **changes)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """Why a process failed, in one line: its last ``error:`` line, else its last line."""
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors[-1] if errors else lines[-1] if lines else f"exit {proc.returncode}")[:500]


def share_of_cpus(cpus: int, slots: int) -> int | None:
    """Threads for each of ``slots`` tasks running at once on ``cpus`` CPUs: None for a
    task alone on its node (the runtimes' own default, every core), else ``cpus // slots``
    (at least 1), so concurrent tasks never oversubscribe the node."""
    return None if slots <= 1 else max(1, cpus // slots)


def task_env(task: Task, base: Mapping[str, str], threads: int | None) -> dict[str, str]:
    """The task's process environment: ``base``, the executor's thread share (``threads``,
    for a task that does not take the whole node, unless the user pinned threads in
    ``base`` already), then the task's own variables."""
    from zoo.env import THREAD_ENV_VARS, thread_env

    env = dict(base)
    if threads and not task.whole_node and not any(v in base for v in THREAD_ENV_VARS):
        env.update(thread_env(threads))
    env.update(task.env)
    return env


def execute(task: Task, *, die_with_parent: bool = False,
            on_start: Callable[[subprocess.Popen], None] | None = None,
            unset: Sequence[str] = (), threads: int | None = None) -> TaskResult:
    """Run ``task`` here: its process, then its ``collect``. Used by every executor.
    ``unset``: variables of this process's environment the task's process must not see
    (what a Ray worker sets for itself), unless the task sets them. ``threads``: the
    executor's share of this node's CPUs per task (``share_of_cpus``)."""
    from zoo.exits import first_line, run_child

    t0, node = time.perf_counter(), this_node()
    env = task_env(task, {k: v for k, v in os.environ.items() if k not in unset}, threads)
    # The driver's folder, where this node has it (paths in argv are absolute anyway).
    cwd = task.cwd if task.cwd and os.path.isdir(task.cwd) else None
    try:
        proc = run_child(task.command(), timeout=task.timeout, env=env, cwd=cwd,
                         on_start=on_start, die_with_parent=die_with_parent)
    except subprocess.TimeoutExpired:  # a hang is this task's error, not a death to retry
        return TaskResult(task.key, task.fingerprint, "failed", None, [],
                          f"timed out after {task.timeout:g} s", node,
                          time.perf_counter() - t0)
    except OSError as exc:  # no interpreter or working folder there: not worth a retry
        return TaskResult(task.key, task.fingerprint, "failed", None, [],
                          f"cannot start the task's process: {first_line(exc)}", node,
                          time.perf_counter() - t0)
    if proc.returncode not in OWN_EXITS:
        how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exit {proc.returncode}")
        return TaskResult(task.key, task.fingerprint, "died", proc.returncode, [],
                          f"process {how}: {error_line(proc)}", node, time.perf_counter() - t0)
    records: list[dict[str, Any]] = []
    error = "" if proc.returncode == 0 else error_line(proc)
    if task.collect is not None:
        try:
            records, error = task.collect(task, proc)
        except Exception as exc:  # a collector bug is this task's error row, not a crash
            raise_if_exhausted(exc, memory=False)
            error = f"collecting outputs: {type(exc).__name__}: {first_line(exc)}"
    status = "ok" if proc.returncode == 0 else "failed"
    return TaskResult(task.key, task.fingerprint, status, proc.returncode, records, error,
                      node, time.perf_counter() - t0)


def collect_stdout_json(task: Task, proc: subprocess.CompletedProcess
                        ) -> tuple[list[dict[str, Any]], str]:
    """Records a process printed, one JSON object per stdout line (other lines ignored)."""
    records = []
    for line in proc.stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records, "" if proc.returncode == 0 else error_line(proc)


def code_digest(packages: Sequence[str]) -> str:
    """sha256 of every ``.py`` file of the named top-level packages (located, not imported)."""
    h = hashlib.sha256()
    for name in packages:
        spec = importlib.util.find_spec(name)
        roots = list(spec.submodule_search_locations or []) if spec else []
        for root in roots:
            for path in sorted(Path(root).rglob("*.py")):
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(*parts: Any) -> str:
    """A stable digest of code, weights and options (any JSON-able values)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def absolute_spec(spec: str) -> str:
    """A weights spec that names a file, as its absolute path (every node, and the task's
    process in its own folder, then reads the same file); any other spec as it is."""
    return str(Path(spec).absolute()) if Path(spec).is_file() else spec


def weights_identity(spec: str) -> str:
    """A weights spec, with a file's size and mtime when it names one (its contents may change)."""
    path = Path(spec)
    try:
        st = path.stat()
    except (OSError, ValueError):
        return spec
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}" if path.is_file() else spec
