"""Helpers for tests/bench/test_latency.py: a fast CLI run and CSV reading."""
from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from tests.conftest import run_cli

# Short timing so a run is seconds, one thread so two CI cores are not oversubscribed.
FAST_ARGS = ("--threads", "1", "--repeats", "1", "--min-time", "0.05", "--min-runs", "3",
             "--warmup", "1",
             "--warmup-time", "0")


def run_bench_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_cli("bench", *args, timeout=timeout)


def read_csv(results: Path) -> list[dict[str, str]]:
    """Rows of the one latency CSV under ``results``."""
    (path,) = results.glob("latency-*.csv")
    with path.open() as fh:
        return list(csv.DictReader(fh))


def write_synthetic_raw(path: Path, *, medians_ms: dict[str, float], peak: float = 100.0,
                        gflops: float = 2.0, batch: int = 4) -> Path:
    """A raw file with known numbers: env header, two peaks (``peak`` before the models, a
    slower one after), a static record, one row per runtime."""
    import json

    from zoo.env import environment
    from bench.latency.records import LatencyRecord, PeakRecord, StaticRecord
    from bench.latency.timing import Measurement

    env = {"type": "env", **environment(threads=2, weights="random", with_gpu=False),
           "bench": {"device": "cpu", "batch_sizes": [batch], "runtimes": list(medians_ms)}}
    lines = [env, PeakRecord("cpu", 2, gflops_per_s=peak, when="before").to_json(),
             StaticRecord("tiny", "random weights (seed 0)", params=1234, gflops=gflops,
                          published_gflops=gflops).to_json()]
    for runtime, ms in medians_ms.items():
        m = Measurement(tuple(ms / 1e3 * f for f in (0.9, 1.0, 1.0, 1.05, 1.5)))
        lines.append(LatencyRecord("tiny", runtime, "fp32", "cpu", batch, 2,
                                   "random weights (seed 0)", measurement=m.to_json(),
                                   load_s=0.5, peak_rss_mb=100.0, artifact_bytes=2**20).to_json())
    lines.append(LatencyRecord("tiny", "broken", "fp32", "cpu", batch, 2, "random weights (seed 0)",
                               error="RuntimeError: boom").to_json())
    lines.append(PeakRecord("cpu", 2, gflops_per_s=0.8 * peak, when="after").to_json())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path
