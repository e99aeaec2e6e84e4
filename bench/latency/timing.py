"""Timing with spread (after torch.utils.benchmark's ``Measurement``).

Every call is timed on its own and the raw samples are kept; summaries
(median, IQR, p90/p99, mean) are computed from them, never stored instead of them.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

UNSTABLE_IQR_REL = 0.10  # torch.utils.benchmark warns above this IQR/median


def percentile(sorted_values: tuple[float, ...] | list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Measurement:
    """Raw per-call times in seconds, and the statistics derived from them."""

    raw_times: tuple[float, ...]
    clock: str = "perf_counter"  # or "cuda_event"
    warmup_runs: int = 0
    warmup_s: float = 0.0
    _sorted: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw_times", tuple(float(t) for t in self.raw_times))
        object.__setattr__(self, "_sorted", tuple(sorted(self.raw_times)))

    @property
    def n(self) -> int:
        return len(self.raw_times)

    def quantile(self, q: float) -> float:
        return percentile(self._sorted, q)

    @property
    def median(self) -> float:
        return self.quantile(50)

    @property
    def iqr(self) -> float:
        return self.quantile(75) - self.quantile(25)

    @property
    def p90(self) -> float:
        return self.quantile(90)

    @property
    def p99(self) -> float:
        return self.quantile(99)

    @property
    def mean(self) -> float:
        return sum(self.raw_times) / self.n if self.n else math.nan

    @property
    def iqr_rel(self) -> float:
        return self.iqr / self.median if self.median > 0 else math.nan

    @property
    def unstable(self) -> bool:
        """IQR above 10% of the median: the number is not to be trusted to 10%."""
        return not self.iqr_rel <= UNSTABLE_IQR_REL

    def summary_ms(self) -> dict[str, Any]:
        ms = 1e3
        return {"median_ms": self.median * ms, "iqr_ms": self.iqr * ms, "p90_ms": self.p90 * ms,
                "p99_ms": self.p99 * ms, "mean_ms": self.mean * ms, "min_ms": self._sorted[0] * ms,
                "max_ms": self._sorted[-1] * ms, "n_samples": self.n,
                "iqr_rel": self.iqr_rel, "unstable": self.unstable}

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["raw_times"] = list(self.raw_times)
        return {**data, **self.summary_ms()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Measurement":
        return cls(tuple(data["raw_times"]), data.get("clock", "perf_counter"),
                   int(data.get("warmup_runs", 0)), float(data.get("warmup_s", 0.0)))


@dataclass(frozen=True)
class TimingPolicy:
    """Warm up for ``warmup_runs`` calls and ``warmup_time`` s, then time calls until
    ``min_time`` s and ``min_runs`` calls have both passed; ``max_time`` caps a slow model
    (but never below ``floor_runs`` calls)."""

    min_time: float = 2.0
    min_runs: int = 10
    warmup_runs: int = 3
    warmup_time: float = 0.5
    max_time: float = 60.0
    floor_runs: int = 3

    def done(self, n: int, elapsed: float) -> bool:
        if n >= self.min_runs and elapsed >= self.min_time:
            return True
        return n >= self.floor_runs and elapsed >= self.max_time


Sampler = Callable[[], float]


def wall_sampler(fn: Callable[[], Any]) -> Sampler:
    """One call timed with ``time.perf_counter`` (for runtimes whose call is synchronous)."""
    clock = time.perf_counter

    def sample() -> float:
        t0 = clock()
        fn()
        return clock() - t0

    return sample


def cuda_event_sampler(fn: Callable[[], Any]) -> Sampler:
    """One call timed between CUDA events on the current stream, synchronised after it."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()

    def sample() -> float:
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # ms -> s

    return sample


SAMPLERS: dict[str, Callable[[Callable[[], Any]], Sampler]] = {
    "perf_counter": wall_sampler, "cuda_event": cuda_event_sampler}


def measure(fn: Callable[[], Any], policy: TimingPolicy = TimingPolicy(), *,
            clock: str = "perf_counter") -> Measurement:
    """Warm up, then time single calls of ``fn`` until ``policy`` is satisfied."""
    sample = SAMPLERS[clock](fn)
    now = time.perf_counter
    t0, warm = now(), 0
    while warm < policy.warmup_runs or now() - t0 < policy.warmup_time:
        sample()
        warm += 1
    warmup_s = now() - t0
    samples: list[float] = []
    t0 = now()
    while True:
        samples.append(sample())
        if policy.done(len(samples), now() - t0):
            break
    return Measurement(tuple(samples), clock, warm, warmup_s)
