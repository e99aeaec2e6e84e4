"""Plan the jobs and run each in a fresh worker subprocess, as tasks of a
``zoo.executors`` executor (this machine, or a Ray cluster).

Conversions and static figures run side by side (``--jobs``); a GEMM peak or latency
task takes a whole node, so nothing runs beside it, and every distinct node hardware
measures (or reuses its cached) GEMM peak on one of its own nodes. Records are appended
to the raw JSON-lines file as soon as a task returns, stamped with the node and hardware
they were measured on, so an interrupted run keeps what it measured and the tables group
rows by hardware. A worker that crashes, hangs or prints no result becomes records
carrying the error text.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from bench.latency import peak_cache
from bench.latency.peak_cache import default_cache_dir as default_peak_cache_dir
from bench.latency.records import (ConvertRecord, Job, LatencyRecord, PeakRecord, StaticRecord,
                                   thread_env)
from bench.latency.timing import TimingPolicy
from zoo.executors import PYTHON, NodeInfo, Task, TaskResult

if TYPE_CHECKING:
    from zoo.executors.base import Executor
    from zoo.executors.progress import TaskProgress

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BenchOptions:
    device: str
    models: tuple[str, ...]
    runtimes: tuple[str, ...]
    batch_sizes: tuple[int, ...] = (1,)
    threads: int = 1
    timing: TimingPolicy = TimingPolicy()
    weights: str = "auto"
    artifacts_root: Path = Path("artifacts")
    results_dir: Path = Path("results")
    name: str = ""
    job_timeout: float = 1200.0
    convert_timeout: float = 1800.0
    reconvert: bool = False
    check_overhead: bool = False
    repeats: int = 3  # fresh processes per row, interleaved; their samples are pooled
    remeasure_peak: bool = False  # else the GEMM peak comes from the per-machine cache
    peak_cache: Path = field(default_factory=default_peak_cache_dir)
    on_damaged: str = "reconvert"  # artifacts that differ from their manifest: reconvert | refuse
    verify: str = "fast"  # how artifacts are checked before reuse (converters.manifest.VERIFY)
    skipped: tuple[tuple[str, str], ...] = ()  # (runtime, why it cannot run here): not timed

    def job(self, kind: str, **overrides: Any) -> Job:
        """A worker job carrying this run's settings; ``overrides`` win."""
        settings: dict[str, Any] = dict(
            device=self.device, batch_sizes=self.batch_sizes, threads=self.threads,
            weights=self.weights, artifacts_root=str(self.artifacts_root.resolve()),
            timing=self.timing, check_overhead=self.check_overhead, on_damaged=self.on_damaged,
            verify=self.verify)
        return Job(kind=kind, **{**settings, **overrides})


class WorkerError(RuntimeError):
    """The worker produced no result (crash, timeout, unparseable output)."""


# A whole node: nothing else runs beside a timed worker (latency) or the GEMM peak.
WHOLE_NODE_KINDS = ("latency", "peak")


def worker_task(job: Job, timeout: float, key: str, on_node: str = "") -> Task:
    """One worker job as an executor task; ``collect_worker`` reads its records."""
    env = dict(thread_env(job.threads))
    if job.device == "cpu":  # TensorFlow would otherwise place CPU rows on a visible GPU
        env["CUDA_VISIBLE_DEVICES"] = ""
    whole = job.kind in WHOLE_NODE_KINDS
    return Task(key=key, argv=(PYTHON, "-m", "bench.latency.worker", job.to_json()),
                fingerprint="", collect=collect_worker, timeout=timeout, whole_node=whole,
                gpu=whole and job.device == "cuda", env=env, cwd=str(REPO), on_node=on_node)


def collect_worker(task: Task, proc: subprocess.CompletedProcess
                   ) -> tuple[list[dict[str, Any]], str]:
    """The worker's one result line: its records, or why there are none."""
    from zoo.executors.worker import read_result

    payload = read_result(proc.stdout)
    if payload is None or not payload.get("records"):
        return [], _death_text(proc.returncode, proc.stderr, payload)
    return payload["records"], ""


def _records(result: TaskResult) -> list[dict[str, Any]]:
    """A task's records, or WorkerError with the reason it has none."""
    if not result.records:
        error = result.error
        if error.startswith("timed out"):
            error = f"worker {error}"
        raise WorkerError(error or f"worker exit status {result.exit_code}: no output")
    return result.records


def run_worker(job: Job, timeout: float) -> list[dict[str, Any]]:
    """Run one job in a fresh interpreter here and now; its records, or WorkerError."""
    from zoo.executors.task import execute

    # Own session (zoo.exits.run_child): a timeout or Ctrl-C also ends the worker's
    # children (compile workers).
    return _records(execute(worker_task(job, timeout, key=f"{job.kind}/{job.model}")))


def _death_text(code: int, stderr: str, payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("error"):
        return payload["error"]
    how = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
    tail = [ln for ln in stderr.splitlines() if ln.strip()][-1:] or ["no output"]
    return f"worker {how}: {tail[0].strip()}"[:500]


def needed_formats(runtimes: Iterable[str]) -> tuple[str, ...]:
    from bench.latency.runtimes import get_runtime

    return tuple(f for f in (get_runtime(r).artifact for r in runtimes) if f)


def _convert_job(opts: BenchOptions, model: str) -> Job:
    return opts.job("convert", model=model, formats=needed_formats(opts.runtimes),
                    reconvert=opts.reconvert)


def refuse_damaged(opts: BenchOptions) -> None:
    """With ``--on-damaged refuse``: ``DamagedArtifactsError`` (exit 2, one line naming the
    files) for the first model whose artifacts differ from their manifest, before anything
    is converted, measured or timed (the GEMM peak included)."""
    from bench.latency.artifacts import reuse_existing

    if opts.on_damaged != "refuse":
        return
    for model in opts.models:
        reuse_existing(_convert_job(opts, model), opts.artifacts_root.resolve() / model)


def _convert_record(opts: BenchOptions, model: str, records: Callable[[], list]) -> ConvertRecord:
    try:
        return ConvertRecord.from_json(records()[0])
    except WorkerError as exc:
        folder = opts.artifacts_root.resolve() / model
        return ConvertRecord(model, folder=str(folder), error=f"conversion: {exc}")


def prepare_model(opts: BenchOptions, model: str) -> ConvertRecord:
    """Reuse matching artifacts (lacking at most what cannot be made); else a worker converts."""
    from bench.latency.artifacts import reuse_existing

    job = _convert_job(opts, model)
    if existing := reuse_existing(job, opts.artifacts_root.resolve() / model):
        return existing
    return _convert_record(opts, model, lambda: run_worker(job, opts.convert_timeout))


def _latency_job(opts: BenchOptions, conv: ConvertRecord, runtime: str) -> Job:
    return opts.job("latency", model=conv.model, runtime=runtime, weights=conv.weights,
                    weights_label=conv.weights_label, note=conv.note or conv.error)


def _latency_records(job: Job, records: Callable[[], list], repeat: int,
                     conv: ConvertRecord) -> list[LatencyRecord]:
    from bench.latency.runtimes import get_runtime

    precision = get_runtime(job.runtime).precision
    if not conv.weights:  # weights could not even be resolved
        out = _latency_errors(job, precision, conv.error)
    else:
        try:
            out = [LatencyRecord.from_json(r) for r in records()]
        except WorkerError as exc:
            out = _latency_errors(job, precision, str(exc))
    return [replace(r, repeat=repeat) for r in out]


def measure_model(opts: BenchOptions, conv: ConvertRecord, runtime: str, repeat: int = 0
                  ) -> list[LatencyRecord]:
    job = _latency_job(opts, conv, runtime)
    return _latency_records(job, lambda: run_worker(job, opts.job_timeout), repeat, conv)


def _latency_errors(job: Job, precision: str, error: str) -> list[LatencyRecord]:
    base = LatencyRecord(model=job.model, runtime=job.runtime, precision=precision,
                         device=job.device, batch_size=0, threads=job.threads,
                         weights=job.weights_label, error=error or "unknown error")
    return [replace(base, batch_size=b) for b in job.batch_sizes]


def _static_record(conv: ConvertRecord, records: Callable[[], list]) -> StaticRecord:
    try:
        return StaticRecord.from_json(records()[0])
    except WorkerError as exc:
        return StaticRecord(conv.model, conv.weights_label, error=str(exc))


def measure_static(opts: BenchOptions, conv: ConvertRecord) -> StaticRecord:
    job = opts.job("static", model=conv.model, weights_label=conv.weights_label)
    return _static_record(conv, lambda: run_worker(job, opts.job_timeout))


def _peak_job(opts: BenchOptions) -> Job:
    # A GEMM is steady: up to 1 s and 5 calls per size is plenty.
    timing = replace(opts.timing, min_time=min(1.0, opts.timing.min_time),
                     min_runs=max(3, min(5, opts.timing.min_runs)))
    return opts.job("peak", timing=timing)


def _peak_record(opts: BenchOptions, records: Callable[[], list], when: str) -> PeakRecord:
    try:
        record = PeakRecord.from_json(records()[0])
    except WorkerError as exc:
        record = PeakRecord(opts.device, opts.threads, error=str(exc))
    return replace(record, when=when)


def measure_peak(opts: BenchOptions, when: str) -> PeakRecord:
    return _peak_record(opts, lambda: run_worker(_peak_job(opts), opts.job_timeout), when)


def run_bench(opts: BenchOptions, header: dict[str, Any], raw_path: Path,
              progress: "TaskProgress", executor: "Executor | None" = None,
              on_record: Callable[[Any], None] = lambda r: None) -> Path:
    """Conversions, each node hardware's GEMM peak, static figures, ``repeats`` passes of one
    worker per (model, runtime), and the GEMM peak again, as tasks of ``executor``
    (default: this machine, one task at a time).

    Passes are interleaved (every row once, then every row again) rather than repeated
    back to back, so a slow minute on a shared machine, or one process's unlucky memory
    layout, touches one of a row's processes and not all of them (pyperf's reasoning).
    A peak taken while the machine was briefly busy would flatter every row: hence two."""
    from zoo.executors.local import LocalExecutor

    raw_path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a hidden name and renamed when complete: an interrupted run never
    # replaces a finished run's records with a half-written file.
    partial = raw_path.with_name(f".{raw_path.name}.partial-{os.getpid()}")
    try:
        with partial.open("w") as fh:
            fh.write(json.dumps({"type": "env", **header}, default=str) + "\n")
            run = _Run(opts, header, executor or LocalExecutor(), progress, fh, on_record)
            run.passes()
    except BaseException:
        kept = raw_path.with_name(f"{raw_path.stem}.interrupted.jsonl")
        os.replace(partial, kept)
        print(f"kept the records measured so far in {kept} (an unfinished run; "
              f"`python -m bench report` reads it)", file=sys.stderr)
        raise
    os.replace(partial, raw_path)
    return raw_path


class _Run:
    """One bench run's phases on an executor; every record is written as it arrives."""

    def __init__(self, opts: BenchOptions, header: dict[str, Any], executor: "Executor",
                 progress: "TaskProgress", fh: Any, on_record: Callable[[Any], None]) -> None:
        self.opts, self.header, self.executor = opts, header, executor
        self.progress, self.fh, self.on_record = progress, fh, on_record

    def emit(self, record: Any) -> None:
        self.fh.write(json.dumps(record.to_json(), default=str) + "\n")
        self.fh.flush()
        self.on_record(record)

    def tasks(self, tasks: list[Task], on_result: Callable[[TaskResult], None]) -> None:
        from zoo.executors.driver import run_tasks

        run_tasks(self.executor, tasks, done_root=None, progress=self.progress,
                  on_result=on_result)

    def passes(self) -> None:
        opts = self.opts
        converts = self.prepare()
        groups = hardware_groups(self.executor.nodes(), opts.device)
        keys = {hw: _peak_key(opts, self.header, node) for hw, node in groups.items()}
        cached = {hw: None if opts.remeasure_peak else peak_cache.load(key, opts.peak_cache)
                  for hw, key in keys.items()}
        for hw, record in cached.items():
            if record is not None:
                self.emit(replace(record, node=groups[hw].name, hardware=hw))
        to_measure = {hw: node for hw, node in groups.items() if cached[hw] is None}
        before = self.peaks(to_measure, "before")
        self.static(converts)
        # Rows never timed (no artifact) belong to the one hardware there is, if one.
        self.latency(converts, next(iter(groups)) if len(groups) == 1 else "")
        after = self.peaks(to_measure, "after")
        for hw in to_measure:
            best = max((before[hw], after[hw]), key=lambda p: p.gflops_per_s or 0.0)
            peak_cache.store(keys[hw], opts.peak_cache, best)

    def prepare(self) -> list[ConvertRecord]:
        """Reuse matching artifacts; convert the rest, side by side (not timed)."""
        from bench.latency.artifacts import reuse_existing

        opts, found = self.opts, {}
        todo = []
        for model in opts.models:
            job = _convert_job(opts, model)
            if existing := reuse_existing(job, opts.artifacts_root.resolve() / model):
                found[model] = existing
            else:
                todo.append(worker_task(job, opts.convert_timeout, f"convert/{model}"))

        def done(r: TaskResult) -> None:
            model = r.key.split("/", 1)[1]
            found[model] = _convert_record(opts, model, lambda: _records(r))

        self.tasks(todo, done)
        converts = [found[m] for m in opts.models]
        for conv in converts:
            self.emit(conv)
        return converts

    def static(self, converts: list[ConvertRecord]) -> None:
        """Parameters, FLOPs and sizes per model, side by side (not timed)."""
        by_key = {f"static/{c.model}": c for c in converts}
        self.tasks([worker_task(self.opts.job("static", model=c.model,
                                              weights_label=c.weights_label),
                                self.opts.job_timeout, key) for key, c in by_key.items()],
                   lambda r: self.emit(_static_record(by_key[r.key], lambda: _records(r))))

    def peaks(self, nodes: dict[str, NodeInfo], when: str) -> dict[str, PeakRecord]:
        """The GEMM peak of each hardware, measured on one of its own nodes."""
        out: dict[str, PeakRecord] = {}
        by_key = {f"peak-{when}/{hw}": hw for hw in nodes}

        def done(r: TaskResult) -> None:
            hw = by_key[r.key]
            out[hw] = replace(_peak_record(self.opts, lambda: _records(r), when),
                              node=r.node.name, hardware=hw)
            self.emit(out[hw])

        self.tasks([worker_task(_peak_job(self.opts), self.opts.job_timeout, key,
                                on_node=nodes[hw].name) for key, hw in by_key.items()], done)
        return out

    def latency(self, converts: list[ConvertRecord], untimed_hardware: str) -> None:
        """``repeats`` interleaved passes of one whole-node task per (model, runtime)."""
        opts, tasks, context = self.opts, [], {}
        for repeat in range(opts.repeats):
            for conv in converts:
                for runtime in opts.runtimes:
                    job = _latency_job(opts, conv, runtime)
                    if not conv.weights:  # nothing to time: the rows carry why
                        for record in _latency_records(job, list, repeat, conv):
                            self.emit(replace(record, hardware=untimed_hardware))
                        continue
                    key = f"latency/{conv.model}/{runtime}/{repeat}"
                    context[key] = (job, repeat, conv)
                    tasks.append(worker_task(job, opts.job_timeout, key))

        def done(r: TaskResult) -> None:
            job, repeat, conv = context[r.key]
            for record in _latency_records(job, lambda: _records(r), repeat, conv):
                self.emit(replace(record, node=r.node.name, hardware=node_hardware(
                    r.node, opts.device)))

        self.tasks(tasks, done)


def node_hardware(node: NodeInfo, device: str) -> str:
    """What a row's numbers depend on: the GPU on cuda, else the CPU model and its cores."""
    return f"{node.gpu} on {node.hardware}" if device == "cuda" and node.gpu else node.hardware


def hardware_groups(nodes: list[NodeInfo], device: str) -> dict[str, NodeInfo]:
    """One node per distinct hardware (the one that measures its GEMM peak)."""
    groups: dict[str, NodeInfo] = {}
    for node in nodes:
        groups.setdefault(node_hardware(node, device), node)
    return groups


def _peak_key(opts: BenchOptions, header: dict[str, Any], node: NodeInfo
              ) -> "peak_cache.PeakKey":
    gpu = header.get("gpu") if opts.device == "cuda" else None
    if opts.device == "cuda":
        hardware = node.gpu or (gpu["name"] if gpu else "unknown GPU")
    else:
        hardware = node.cpu or str(header.get("cpu", "unknown"))
    return peak_cache.PeakKey.for_machine(opts.device, opts.threads, hardware)
