"""Plan the jobs and run each in a fresh worker subprocess, one at a time.

Records are appended to the raw JSON-lines file as soon as a worker returns,
so an interrupted run keeps what it measured. A worker that crashes, hangs or
prints no result becomes records carrying the error text.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from bench.latency import peak_cache
from zoo.exits import stop_process_group
from bench.latency.peak_cache import default_cache_dir as default_peak_cache_dir
from bench.latency.records import (ConvertRecord, Job, LatencyRecord, PeakRecord, StaticRecord,
                                   thread_env)
from bench.latency.timing import TimingPolicy

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

    def job(self, kind: str, **overrides: Any) -> Job:
        """A worker job carrying this run's settings; ``overrides`` win."""
        settings: dict[str, Any] = dict(
            device=self.device, batch_sizes=self.batch_sizes, threads=self.threads,
            weights=self.weights, artifacts_root=str(self.artifacts_root.resolve()),
            timing=self.timing, check_overhead=self.check_overhead, on_damaged=self.on_damaged)
        return Job(kind=kind, **{**settings, **overrides})


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def step(self, description: str) -> None: ...
    def advance(self) -> None: ...


class WorkerError(RuntimeError):
    """The worker produced no result (crash, timeout, unparseable output)."""


def run_worker(job: Job, timeout: float) -> list[dict[str, Any]]:
    """Run one job in a fresh interpreter; its records, or WorkerError with the reason."""
    env = {**os.environ, **thread_env(job.threads)}
    if job.device == "cpu":  # TensorFlow would otherwise place CPU rows on a visible GPU
        env["CUDA_VISIBLE_DEVICES"] = ""
    # Own session: a timeout or Ctrl-C also ends the worker's children (compile workers).
    proc = subprocess.Popen([sys.executable, "-m", "bench.latency.worker", job.to_json()],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException as exc:
        stop_process_group(proc)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise WorkerError(f"worker timed out after {timeout:g} s") from None
        raise
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    payload = None
    if lines:
        try:
            payload = json.loads(lines[-1])
        except json.JSONDecodeError:
            payload = None
    if not isinstance(payload, dict) or not payload.get("records"):
        raise WorkerError(_death_text(proc.returncode, stderr, payload))
    return payload["records"]


def _death_text(code: int, stderr: str, payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("error"):
        return payload["error"]
    how = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
    tail = [ln for ln in stderr.splitlines() if ln.strip()][-1:] or ["no output"]
    return f"worker {how}: {tail[0].strip()}"[:500]


def needed_formats(runtimes: Iterable[str]) -> tuple[str, ...]:
    from bench.latency.runtimes import get_runtime

    return tuple(f for f in (get_runtime(r).artifact for r in runtimes) if f)


def prepare_model(opts: BenchOptions, model: str) -> ConvertRecord:
    """Reuse matching artifacts (lacking at most what cannot be made); else a worker converts."""
    from bench.latency.artifacts import reuse_existing

    folder = opts.artifacts_root.resolve() / model
    job = opts.job("convert", model=model, formats=needed_formats(opts.runtimes),
                   reconvert=opts.reconvert)
    if existing := reuse_existing(job, folder):
        return existing
    try:
        return ConvertRecord.from_json(run_worker(job, opts.convert_timeout)[0])
    except WorkerError as exc:
        return ConvertRecord(model, folder=str(folder), error=f"conversion: {exc}")


def measure_model(opts: BenchOptions, conv: ConvertRecord, runtime: str, repeat: int = 0
                  ) -> list[LatencyRecord]:
    from bench.latency.runtimes import get_runtime

    rt = get_runtime(runtime)
    job = opts.job("latency", model=conv.model, runtime=runtime, weights=conv.weights,
                   weights_label=conv.weights_label, note=conv.note or conv.error)
    if not conv.weights:  # weights could not even be resolved
        records = _latency_errors(job, rt.precision, conv.error)
    else:
        try:
            records = [LatencyRecord.from_json(r) for r in run_worker(job, opts.job_timeout)]
        except WorkerError as exc:
            records = _latency_errors(job, rt.precision, str(exc))
    return [replace(r, repeat=repeat) for r in records]


def _latency_errors(job: Job, precision: str, error: str) -> list[LatencyRecord]:
    base = LatencyRecord(model=job.model, runtime=job.runtime, precision=precision,
                         device=job.device, batch_size=0, threads=job.threads,
                         weights=job.weights_label, error=error or "unknown error")
    return [replace(base, batch_size=b) for b in job.batch_sizes]


def measure_static(opts: BenchOptions, conv: ConvertRecord) -> StaticRecord:
    job = opts.job("static", model=conv.model, weights_label=conv.weights_label)
    try:
        return StaticRecord.from_json(run_worker(job, opts.job_timeout)[0])
    except WorkerError as exc:
        return StaticRecord(conv.model, conv.weights_label, error=str(exc))


def measure_peak(opts: BenchOptions, when: str) -> PeakRecord:
    # A GEMM is steady: up to 1 s and 5 calls per size is plenty.
    timing = replace(opts.timing, min_time=min(1.0, opts.timing.min_time),
                     min_runs=max(3, min(5, opts.timing.min_runs)))
    job = opts.job("peak", timing=timing)
    try:
        record = PeakRecord.from_json(run_worker(job, opts.job_timeout)[0])
    except WorkerError as exc:
        record = PeakRecord(opts.device, opts.threads, error=str(exc))
    return replace(record, when=when)


def _job(progress: Progress, description: str, fn: Callable[[], Any]) -> Any:
    progress.step(description)
    try:
        return fn()
    finally:
        progress.advance()


def run_bench(opts: BenchOptions, header: dict[str, Any], raw_path: Path,
              progress: Progress, on_record: Callable[[Any], None] = lambda r: None) -> Path:
    """Conversions, the GEMM peak, static figures, ``repeats`` passes of one worker per
    (model, runtime), and the GEMM peak again.

    Passes are interleaved (every row once, then every row again) rather than repeated
    back to back, so a slow minute on a shared machine, or one process's unlucky memory
    layout, touches one of a row's processes and not all of them (pyperf's reasoning).
    A peak taken while the machine was briefly busy would flatter every row: hence two."""
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a hidden name and renamed when complete: an interrupted run never
    # replaces a finished run's records with a half-written file.
    partial = raw_path.with_name(f".{raw_path.name}.partial-{os.getpid()}")
    try:
        _run_passes(opts, header, partial, progress, on_record)
    except BaseException:
        kept = raw_path.with_name(f"{raw_path.stem}.interrupted.jsonl")
        os.replace(partial, kept)
        print(f"kept the records measured so far in {kept} (an unfinished run; "
              f"`python -m bench report` reads it)", file=sys.stderr)
        raise
    os.replace(partial, raw_path)
    return raw_path


def _run_passes(opts: BenchOptions, header: dict[str, Any], raw_path: Path,
                progress: Progress, on_record: Callable[[Any], None]) -> None:
    with raw_path.open("w") as fh:
        def emit(record: Any) -> None:
            fh.write(json.dumps(record.to_json(), default=str) + "\n")
            fh.flush()
            on_record(record)

        fh.write(json.dumps({"type": "env", **header}, default=str) + "\n")
        n = len(opts.models)
        key = _peak_key(opts, header)
        cached = None if opts.remeasure_peak else peak_cache.load(key, opts.peak_cache)
        progress.start(2 * n + (0 if cached else 2) + opts.repeats * n * len(opts.runtimes))
        converts = []
        for model in opts.models:
            converts.append(_job(progress, f"{model}: artifacts",
                                 lambda: prepare_model(opts, model)))
            emit(converts[-1])
        peak_step = f"fp32 GEMM peak ({opts.device}, {opts.threads} threads)"
        before = cached or _job(progress, peak_step, lambda: measure_peak(opts, "before"))
        emit(before)
        for conv in converts:
            emit(_job(progress, f"{conv.model}: params, FLOPs", lambda: measure_static(opts, conv)))
        for repeat in range(opts.repeats):
            tag = f" ({repeat + 1}/{opts.repeats})" if opts.repeats > 1 else ""
            for conv in converts:
                for runtime in opts.runtimes:
                    for record in _job(progress, f"{conv.model} / {runtime}{tag}",
                                       lambda: measure_model(opts, conv, runtime, repeat)):
                        emit(record)
        if cached is None:
            after = _job(progress, f"{peak_step}, again", lambda: measure_peak(opts, "after"))
            emit(after)
            best = max((before, after), key=lambda p: p.gflops_per_s or 0.0)
            peak_cache.store(key, opts.peak_cache, best)


def _peak_key(opts: BenchOptions, header: dict[str, Any]) -> "peak_cache.PeakKey":
    gpu = header.get("gpu") if opts.device == "cuda" else None
    hardware = gpu["name"] if gpu else str(header.get("cpu", "unknown"))
    return peak_cache.PeakKey.for_machine(opts.device, opts.threads, hardware)
