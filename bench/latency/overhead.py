"""How much the timing harness adds over a bare ``time.perf_counter`` loop of the same call.

The harness times every call on its own (two clock reads and a closure call
inside the timed interval); the bare loop reads the clock once around a block
of calls. Many short rounds alternate harness / bare so load changes on a
shared machine hit both sides of each pair; the estimate is the median of the
per-round ratios of mean time per call.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

from bench.latency.timing import TimingPolicy, measure


def bare_loop(fn: Callable[[], Any], n: int) -> float:
    """Mean seconds per call of ``fn`` over ``n`` calls, one clock read around the block."""
    clock = time.perf_counter
    t0 = clock()
    for _ in range(n):
        fn()
    return (clock() - t0) / n


def calls_per_round(call_s: float, *, round_s: float = 0.1) -> int:
    """Enough calls for ~``round_s`` per side, 3 to 20."""
    return max(3, min(20, round(round_s / call_s))) if call_s > 0 else 20


def harness_overhead(fn: Callable[[], Any], *, call_s: float, rounds: int = 21
                     ) -> dict[str, Any]:
    """Relative and absolute cost of the harness, compared like for like (mean per call)."""
    n = calls_per_round(call_s)
    policy = TimingPolicy(min_time=0.0, min_runs=n, warmup_runs=1, warmup_time=0.0)
    harness_mean, harness_median, bare = [], [], []
    for _ in range(rounds):
        m = measure(fn, policy)
        harness_mean.append(m.mean)
        harness_median.append(m.median)
        bare.append(bare_loop(fn, n))
    ratios = [h / b - 1.0 for h, b in zip(harness_mean, bare)]
    noop = measure(lambda: None, TimingPolicy(min_time=0.2, min_runs=10000, warmup_runs=100))
    return {
        "rounds": rounds, "calls_per_round": n,
        "harness_mean_ms": statistics.median(harness_mean) * 1e3,
        "harness_median_ms": statistics.median(harness_median) * 1e3,
        "bare_mean_ms": statistics.median(bare) * 1e3,
        "overhead_rel": statistics.median(ratios),
        "overhead_rel_per_round": ratios,
        "median_vs_bare_rel": statistics.median(harness_median) / statistics.median(bare) - 1.0,
        "empty_call_ns": noop.median * 1e9,
        "empty_call_rel": noop.median / statistics.median(bare),
    }
