"""The latency bench on an executor: rows record their node and are grouped by node
hardware, each hardware with its own GEMM peak (never one median pooled across CPUs),
and a real run on a local Ray cluster gives the same rows as a local one."""
from __future__ import annotations

import json
import platform
from dataclasses import replace

import pytest

from tests.bench.latency_helpers import FAST_ARGS, read_csv, run_bench_cli, write_synthetic_raw

MODEL = "squeezenet1_1"
CPU_A, CPU_B = "AMD EPYC (2 CPUs)", "Intel Xeon (16 CPUs)"


def _two_hardware_raw(path):
    """The synthetic run, measured again on a second, faster kind of node."""
    from bench.latency.records import LatencyRecord, PeakRecord

    raw = write_synthetic_raw(path, medians_ms={"onnxruntime": 20.0}, peak=100.0)
    lines = [json.loads(x) for x in raw.read_text().splitlines()]
    out = []
    for d in lines:
        if d["type"] in ("latency", "peak"):
            d = {**d, "node": "a1", "hardware": CPU_A}
        out.append(d)
    faster = LatencyRecord.from_json(next(d for d in out if d["type"] == "latency"
                                          and not d["error"]))
    m = dict(faster.measurement, raw_times=[t / 4 for t in faster.measurement["raw_times"]])
    out.append(replace(faster, measurement=m, node="b1", hardware=CPU_B).to_json())
    out.append(PeakRecord("cpu", 2, gflops_per_s=1000.0, node="b1", hardware=CPU_B).to_json())
    raw.write_text("".join(json.dumps(d) + "\n" for d in out))
    return raw


def test_rows_of_different_hardware_are_never_pooled(tmp_path):
    from bench.latency.records import load_raw
    from bench.latency.report import generate, table_rows

    raw = _two_hardware_raw(tmp_path / "raw" / "latency-cpu-2t-x.jsonl")
    run = load_raw(raw)
    assert run.hardware == [CPU_A, CPU_B]
    rows = {(r["runtime"], r["hardware"]): r for r in table_rows(run)}
    a, b = rows[("onnxruntime", CPU_A)], rows[("onnxruntime", CPU_B)]
    assert (a["n_processes"], b["n_processes"]) == (1, 1)  # not one pooled row
    assert a["median_ms"] == pytest.approx(20.0, rel=0.01)
    assert b["median_ms"] == pytest.approx(5.0, rel=0.01)
    assert (a["nodes"], b["nodes"]) == ("a1", "b1")
    # Each against its own hardware's peak: 2 GFLOP x 4 images / 20 ms = 400 GFLOP/s of 100
    # on A (the better of its two peaks), 1600 of 1000 on B.
    assert a["peak_fraction"] == pytest.approx(400 / 100, rel=0.01)
    assert b["peak_fraction"] == pytest.approx(1600 / 1000, rel=0.01)
    md = generate(raw, tmp_path)["md"].read_text()
    assert f"## {CPU_A}" in md and f"## {CPU_B}" in md
    assert "measured peak 100.0 GFLOP/s" in md and "measured peak 1000.0 GFLOP/s" in md


def test_one_machine_tables_keep_one_section(tmp_path):
    from bench.latency.report import generate

    raw = write_synthetic_raw(tmp_path / "raw" / "latency-cpu-2t-x.jsonl",
                              medians_ms={"onnxruntime": 20.0})
    md = generate(raw, tmp_path)["md"].read_text()
    assert "## All runs" in md and "## Fastest runtime per model" in md


def test_latency_on_a_local_ray_cluster(tmp_path):
    """A real run with --executor ray: rows and peaks carry the node and its hardware."""
    pytest.importorskip("ray", reason="ray is in the dev extra (pip install -e '.[dev]')")
    from zoo.executors.task import this_node

    proc = run_bench_cli("--models", MODEL, "--runtimes", "pytorch", "--weights", "random",
                         *FAST_ARGS, "--artifacts", str(tmp_path / "artifacts"),
                         "--results", str(tmp_path / "results"), "--executor", "ray",
                         "--jobs", "2", "--remeasure-peak")
    assert proc.returncode == 0, proc.stderr[-3000:]
    hardware = this_node().hardware
    (row,) = read_csv(tmp_path / "results")
    assert (row["model"], row["runtime"], row["error"]) == (MODEL, "pytorch", "")
    assert float(row["median_ms"]) > 0 and 0 < float(row["peak_fraction"]) < 1
    assert (row["hardware"], row["nodes"]) == (hardware, platform.node())
    (raw,) = (tmp_path / "results" / "raw").glob("*.jsonl")
    peaks = [json.loads(x) for x in raw.read_text().splitlines() if '"type": "peak"' in x]
    assert [(p["when"], p["hardware"]) for p in peaks] == [("before", hardware),
                                                           ("after", hardware)]
    assert "bench: " in proc.stderr and "0 failed" in proc.stderr
