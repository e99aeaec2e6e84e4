"""Typed jobs (parent -> worker) and records (worker -> raw JSON lines).

A job travels as JSON on the worker's command line; every record is one JSON
line of ``results/raw/*.jsonl`` with a ``type`` field, and tables are built from
these lines only.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from bench.latency.timing import TimingPolicy
from zoo.env import thread_env as pinned_threads
from zoo.jsonrecord import known_fields


def thread_env(threads: int) -> dict[str, str]:
    """Environment that pins every runtime's thread pools before it is imported."""
    env = pinned_threads(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["MODELZOO_OFFLINE"] = "1"
    return env


_TIMING_FIELDS = tuple(f.name for f in fields(TimingPolicy))


def _from_dict(cls: type, data: Mapping[str, Any]):
    return cls(**known_fields(cls, data, tuples=("batch_sizes", "formats")))


class _JsonRecord:
    """JSON round trip shared by the record dataclasses."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]):
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Job:
    """One worker invocation. ``kind``: latency | static | peak | convert."""

    kind: str
    model: str = ""
    runtime: str = ""
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1,)
    threads: int = 1
    weights: str = "auto"  # a weights spec, or "auto" (imagenet if offline, else random)
    weights_label: str = ""
    artifacts_root: str = "artifacts"
    formats: tuple[str, ...] = ()
    timing: TimingPolicy = TimingPolicy()
    note: str = ""  # context for error text (e.g. why an artifact is missing)
    check_overhead: bool = False
    reconvert: bool = False
    on_damaged: str = "reconvert"  # artifacts that differ from their manifest: reconvert | refuse
    verify: str = "fast"  # how artifacts are checked before reuse (converters.manifest.VERIFY)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Job":
        data = json.loads(text)
        timing = data.pop("timing", None)
        if timing is None:  # a job from before TimingPolicy travelled whole: flat fields
            timing = {k: data.pop(k) for k in _TIMING_FIELDS if k in data}
        return _from_dict(cls, {**data, "timing": TimingPolicy(**timing)})


@dataclass
class LatencyRecord(_JsonRecord):
    """One (model, runtime, device, batch size) measurement, or its error."""

    model: str
    runtime: str
    precision: str
    device: str
    batch_size: int
    threads: int
    weights: str
    type: str = "latency"
    measurement: dict[str, Any] | None = None  # Measurement.to_json()
    import_s: float | None = None
    load_s: float | None = None  # activate + first inference (compilation included)
    activate_s: float | None = None
    first_run_s: float | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    artifact: str = ""
    artifact_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    overhead: dict[str, Any] | None = None
    repeat: int = 0  # which of the run's fresh processes for this row (0-based)
    error: str = ""
    node: str = ""  # the host that measured it (zoo.executors.NodeInfo.name)
    hardware: str = ""  # its CPU model and cores (GPU on cuda): rows are grouped by it



@dataclass
class StaticRecord(_JsonRecord):
    """Per-model figures that do not depend on the runtime."""

    model: str
    weights: str
    type: str = "static"
    params: int | None = None
    gflops: float | None = None  # counted at batch 1 (a multiply-add is 2 FLOPs)
    published_gflops: float | None = None  # torchvision's _ops (GMACs) * 2
    state_dict_bytes: int | None = None
    artifact_bytes: dict[str, int] = field(default_factory=dict)
    error: str = ""



@dataclass
class PeakRecord(_JsonRecord):
    """The machine's own fp32 GEMM rate, measured with the run's thread count.

    ``when``: "before" or "after" the model rows; a run keeps the faster of the two.
    """

    device: str
    threads: int
    type: str = "peak"
    when: str = "before"
    gflops_per_s: float | None = None
    by_size: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    node: str = ""
    hardware: str = ""  # the peak of this hardware only (a cluster has one per kind of node)
    # each precision's own peak (fp32 always; on GPU also tf32, fp16, bf16): the reference
    # of the rows of that precision
    by_precision: dict[str, float] = field(default_factory=dict)

    def for_precision(self, precision: str) -> float | None:
        """The peak a row of ``precision`` is read against: its own where measured, else the
        fp32 peak (CPU rows of every precision, as before precisions were measured)."""
        return self.by_precision.get(precision) or self.gflops_per_s



@dataclass
class ConvertRecord(_JsonRecord):
    """Where a model's artifacts are and which weights they carry."""

    model: str
    type: str = "convert"
    weights: str = ""  # spec that rebuilds them
    weights_label: str = ""
    folder: str = ""
    formats: tuple[str, ...] = ()
    converted: bool = False
    seconds: float | None = None
    note: str = ""
    error: str = ""



RECORD_TYPES: dict[str, type] = {"latency": LatencyRecord, "static": StaticRecord,
                                 "peak": PeakRecord, "convert": ConvertRecord}


def parse_record(data: Mapping[str, Any]):
    """A raw JSON line -> its record dataclass (the env header stays a dict)."""
    cls = RECORD_TYPES.get(str(data.get("type")))
    return cls.from_json(data) if cls else dict(data)


@dataclass
class RawRun:
    """Everything one raw file holds, typed. Tables, Markdown and plots all read this."""

    env: dict[str, Any]
    peaks: list[PeakRecord] = field(default_factory=list)
    static: dict[str, StaticRecord] = field(default_factory=dict)
    converts: dict[str, ConvertRecord] = field(default_factory=dict)
    latency: list[LatencyRecord] = field(default_factory=list)

    @property
    def peak(self) -> PeakRecord | None:
        """The fastest GEMM measurement of the run (noise only ever slows a GEMM down)."""
        measured = [p for p in self.peaks if p.gflops_per_s]
        if measured:
            return max(measured, key=lambda p: p.gflops_per_s)
        return self.peaks[0] if self.peaks else None

    def peak_for(self, hardware: str) -> PeakRecord | None:
        """The fastest GEMM measurement on ``hardware`` (a run on several kinds of node
        has one per kind; a record without hardware is from a one-machine run)."""
        own = [p for p in self.peaks if p.hardware == hardware and p.gflops_per_s]
        if own:
            return max(own, key=lambda p: p.gflops_per_s)
        return self.peak if not any(p.hardware for p in self.peaks) else None

    def peak_rate(self, hardware: str, precision: str = "fp32") -> float | None:
        """The fastest GEMM rate on ``hardware`` in ``precision`` (its own peak where
        measured, else the fp32 peak), over every peak record of that hardware."""
        own = [p for p in self.peaks if p.hardware == hardware and p.gflops_per_s]
        if not own and not any(p.hardware for p in self.peaks):
            own = [p for p in self.peaks if p.gflops_per_s]
        return max((p.for_precision(precision) for p in own), default=None)

    @property
    def hardware(self) -> list[str]:
        """The distinct node hardware of the latency rows, in order of appearance."""
        return list(dict.fromkeys(r.hardware for r in self.latency))


def load_raw(path: Path) -> RawRun:
    """Read ``results/raw/*.jsonl`` back into its records."""
    run = RawRun(env={})
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = parse_record(json.loads(line))
        if isinstance(record, LatencyRecord):
            run.latency.append(record)
        elif isinstance(record, StaticRecord):
            run.static[record.model] = record
        elif isinstance(record, ConvertRecord):
            run.converts[record.model] = record
        elif isinstance(record, PeakRecord):
            run.peaks.append(record)
        elif record.get("type") == "env":
            run.env = record
    return run
