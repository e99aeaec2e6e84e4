"""Worker subprocess: ``python -m bench.latency.worker '<job json>'`` prints one JSON line.

The line is ``{"records": [...]}``. Thread counts are pinned in the environment
before any runtime is imported; library chatter on stdout is sent to stderr so
the one line stays parseable. Errors become records with their text.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bench.latency.records import Job, LatencyRecord, PeakRecord, StaticRecord, thread_env
from zoo.executors.worker import stdout_to_stderr, write_result
from zoo.exits import raise_if_exhausted, terminate_as_interrupt

if TYPE_CHECKING:
    from bench.latency.runtimes import Runtime
    from converters.runners import BaseRunner


def _artifact_spec(job: Job, artifact: str):
    """RunnerSpec, record and per-image input shape of ``artifact`` from the model's manifest."""
    from converters.manifest import load_manifest
    from converters.pipeline import runner_spec

    folder = Path(job.artifacts_root) / job.model
    manifest = load_manifest(folder)
    try:
        record = manifest.artifact(artifact)
    except KeyError as exc:
        note = f" ({job.note})" if job.note else ""
        raise LookupError(f"{exc.args[0]} at {folder}{note}") from None
    chw = tuple(int(d) for d in manifest.input_spec["shape"][1:])
    return runner_spec(folder, record, threads=job.threads), record, chw


def _torch_input_shape(job: Job) -> tuple[int, ...]:
    from zoo.meta import input_shape  # imports torchvision: only for PyTorch runtimes
    from zoo.registry import get_entry

    return input_shape(get_entry(job.model), 1)[1:]


def _import_all(modules: tuple[str, ...]) -> float:
    t0 = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return time.perf_counter() - t0


def _pin_torch_threads(job: Job) -> None:
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(job.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already started its pool
            pass
        if job.device == "cuda":
            from bench.latency.peak import strict_fp32

            strict_fp32()


def run_latency(job: Job) -> list[LatencyRecord]:
    """Load once, then measure each batch size; a failure stops only what it touches."""
    from bench.latency.runtimes import get_runtime

    rt = get_runtime(job.runtime)
    base = LatencyRecord(model=job.model, runtime=rt.name, precision=rt.precision,
                         device=job.device, batch_size=job.batch_sizes[0], threads=job.threads,
                         weights=job.weights_label)
    rows = [replace(base, batch_size=b) for b in job.batch_sizes]
    try:
        if job.device not in rt.devices:
            raise RuntimeError(f"{rt.name} does not run on {job.device} "
                               f"(runs on {', '.join(rt.devices)})")
        if rt.artifact:
            spec, record, chw = _artifact_spec(job, rt.artifact)
            for row in rows:
                row.artifact, row.artifact_bytes = record.path, record.size_bytes
        import_s = _import_all(rt.imports)
        if not rt.artifact:
            spec, chw = rt.torch_spec(job), _torch_input_shape(job)
        _pin_torch_threads(job)
        runner = rt.build(job, spec)
        t0 = time.perf_counter()
        runner.activate()
        activate_s = time.perf_counter() - t0
        details = {"description": rt.description, "layout": rt.layout, **rt.describe(runner)}
    except Exception as exc:  # noqa: BLE001  any failure is a row, the run goes on
        raise_if_exhausted(exc, memory=False)
        return [replace(r, error=_error_text(exc)) for r in rows]
    for row in rows:
        row.import_s, row.activate_s, row.details = import_s, activate_s, details
    try:
        measure_sweep(rows, lambda row: _measure_row(job, rt, runner, row, chw))
    finally:
        runner.deactivate()
    return rows


def measure_sweep(rows: list[LatencyRecord], measure_row: Callable[[LatencyRecord], None]
                  ) -> None:
    """Measure rows in order of batch size; once one runs out of memory, the larger ones are
    not tried (their rows say so) and the smaller ones keep their numbers."""
    oom_at: int | None = None
    for row in sorted(rows, key=lambda r: r.batch_size):
        if oom_at is not None:
            row.error = f"skipped: batch {oom_at} already ran out of memory"
            continue
        measure_row(row)
        if row.error and is_out_of_memory(row.error):
            oom_at = row.batch_size
            _release_gpu_memory()


OOM_MARKERS = ("outofmemoryerror", "out of memory", "resourceexhaustederror",
               "failed to allocate memory", "cudnn_status_alloc_failed")


def is_out_of_memory(error: str) -> bool:
    """Whether a row's error text is a device (or host) allocation failure: PyTorch's
    OutOfMemoryError, ONNX Runtime's BFC arena, TensorFlow's ResourceExhaustedError."""
    text = error.lower()
    return any(marker in text for marker in OOM_MARKERS)


def _release_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _measure_row(job: Job, rt: "Runtime", runner: "BaseRunner", row: LatencyRecord,
                 chw: tuple[int, ...]) -> None:
    import numpy as np

    from bench.latency.memory import gpu_memory, peak_rss_mb, reset_torch_gpu_peak
    from bench.latency.timing import measure

    if job.device == "cuda":
        reset_torch_gpu_peak()  # each batch size its own high-water mark
    try:
        shape = (row.batch_size, *chw)
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        native = runner.prepare({runner.spec.input_names[0]: x})
        t0 = time.perf_counter()
        first = runner.run_prepared(native)
        row.first_run_s = time.perf_counter() - t0
        row.load_s = row.activate_s + row.first_run_s
        out = next(iter(first.values()))
        if out.shape[0] != row.batch_size or not np.isfinite(out).all():
            raise RuntimeError(f"bad output: shape {out.shape}, finite={np.isfinite(out).all()}")
        call = lambda: runner.run_prepared(native)  # noqa: E731
        m = measure(call, job.timing, clock=rt.clock(job.device))
        row.measurement = m.to_json()
        if job.check_overhead:
            from bench.latency.overhead import harness_overhead

            row.overhead = harness_overhead(call, call_s=m.median)
    except Exception as exc:  # noqa: BLE001  e.g. out of memory at a large batch
        raise_if_exhausted(exc, memory=False)
        row.error = _error_text(exc)
    row.peak_rss_mb = peak_rss_mb()
    if job.device == "cuda":
        row.peak_gpu_mb, gpu = gpu_memory()
        row.details = {**row.details, **gpu}


def run_static(job: Job) -> list[StaticRecord]:
    from bench.latency.static import static_figures

    try:
        return [static_figures(job)]
    except Exception as exc:  # noqa: BLE001
        raise_if_exhausted(exc, memory=False)
        return [StaticRecord(model=job.model, weights=job.weights_label, error=_error_text(exc))]


def run_peak(job: Job) -> list[PeakRecord]:
    from bench.latency.peak import gemm_peak

    try:
        return [gemm_peak(job)]
    except Exception as exc:  # noqa: BLE001
        raise_if_exhausted(exc, memory=False)
        return [PeakRecord(device=job.device, threads=job.threads, error=_error_text(exc))]


def run_convert(job: Job) -> list:
    from bench.latency.artifacts import ensure_artifacts

    return [ensure_artifacts(job)]


HANDLERS: dict[str, Callable[[Job], list]] = {
    "latency": run_latency, "static": run_static, "peak": run_peak, "convert": run_convert}


def _error_text(exc: BaseException) -> str:
    """The whole message on one line, not ``zoo.exits.first_line``: TensorFlow and ONNX
    Runtime put the cause after a first line that says little ("Graph execution error:")."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:500]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = Job.from_json(argv[0])
    for key, value in thread_env(job.threads).items():
        os.environ.setdefault(key, value)
    out = stdout_to_stderr()
    try:
        with terminate_as_interrupt():  # SIGTERM from the parent: clean up, as on Ctrl-C
            records = HANDLERS[job.kind](job)
        write_result(out, [r.to_json() for r in records])
    except BaseException as exc:  # noqa: BLE001  the parent turns this into error rows
        traceback.print_exc()
        write_result(out, [], _error_text(exc))
    return 0


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
