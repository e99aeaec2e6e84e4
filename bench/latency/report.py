"""Raw JSON lines -> CSV, Markdown and a PNG plot (tables are views of the records).

``python -m bench.latency.report results/raw/latency-cpu-2t-amd-epyc.jsonl`` regenerates
the tables from the records alone.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

from bench.latency.markdown import write_markdown
from bench.latency.plot import write_batch_plot, write_plot
# RawRun and load_raw live with the records (markdown and plot read them without importing
# this module); re-exported because callers know them from here.
from bench.latency.records import LatencyRecord, RawRun, load_raw

MB = 2**20
# images_per_s = batch_size / median. gflops (per image) counts a multiply-add as 2 FLOPs,
# the unit `python -m zoo list` shows as "GFLOPs (2/MAC)".
COLUMNS = ("model", "weights", "runtime", "precision", "device", "batch_size", "threads",
           "median_ms", "iqr_ms", "p90_ms", "p99_ms", "mean_ms", "images_per_s", "n_samples",
           "load_s", "peak_rss_mb", "params", "gflops", "gflops_per_s", "peak_fraction", "error")
# After the columns: the IQR flag, GPU memory and the artifact file size.
EXTRA_COLUMNS = ("unstable", "peak_gpu_mb", "artifact_mb", "n_processes", "process_spread",
                 "hardware", "nodes")  # rows of different hardware are never pooled


def _round(x: float | None, digits: int = 4) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(f"{x:.{digits}g}")


RowKey = tuple[str, str, str, str, int, int, str]


def row_key(r: LatencyRecord) -> RowKey:
    return (r.model, r.runtime, r.precision, r.device, r.batch_size, r.threads, r.hardware)


def pooled(records: list[LatencyRecord]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Statistics over the samples of every process that measured one row, and how far
    the processes' own medians spread: ``(max - min) / min``."""
    from bench.latency.timing import Measurement

    ok = [r.measurement for r in records if r.measurement]
    if not ok:
        return {}, {}
    both = Measurement(tuple(t for m in ok for t in m["raw_times"]), ok[0].get("clock",
                                                                           "perf_counter"))
    medians = [m["median_ms"] for m in ok]
    spread = (max(medians) - min(medians)) / min(medians) if len(ok) > 1 else None
    return both.summary_ms(), {"n_processes": len(ok), "process_spread": spread}


def _processes_error(records: list[LatencyRecord]) -> str:
    failed = [r for r in records if r.error]
    if not failed:
        return ""
    if len(failed) == len(records):
        return failed[0].error
    return f"{len(failed)} of {len(records)} processes failed: {failed[0].error}"


def table_row(run: RawRun, records: list[LatencyRecord]) -> dict[str, Any]:
    """One CSV row: the pooled statistics of the processes that measured it, plus static
    figures and rates derived from them."""
    r = records[0]
    static = run.static.get(r.model)
    m, procs = pooled(records)
    gflops = static.gflops if static and not static.error else None
    rate = gflops * r.batch_size / (m["median_ms"] / 1e3) if gflops and m else None
    peak = run.peak_rate(r.hardware, r.precision)  # this hardware's own, in this precision
    loads = sorted(x.load_s for x in records if x.load_s is not None)
    rss = [x.peak_rss_mb for x in records if x.peak_rss_mb is not None]
    gpu = [x.peak_gpu_mb for x in records if x.peak_gpu_mb is not None]
    row = {"model": r.model, "weights": r.weights, "runtime": r.runtime,
           "precision": r.precision, "device": r.device, "batch_size": r.batch_size,
           "threads": r.threads,
           **{k: _round(m.get(k)) for k in ("median_ms", "iqr_ms", "p90_ms", "p99_ms", "mean_ms")},
           "images_per_s": _round(r.batch_size / (m["median_ms"] / 1e3)) if m else None,
           "n_samples": m.get("n_samples"),
           "load_s": _round(loads[len(loads) // 2]) if loads else None,  # median process
           "peak_rss_mb": _round(max(rss)) if rss else None,
           "params": static.params if static else None,
           "gflops": _round(gflops), "gflops_per_s": _round(rate),
           "peak_fraction": _round(rate / peak) if rate and peak else None,
           "error": _processes_error(records),
           "unstable": m.get("unstable"), "peak_gpu_mb": _round(max(gpu)) if gpu else None,
           "artifact_mb": _round(r.artifact_bytes / MB) if r.artifact_bytes else None,
           "n_processes": procs.get("n_processes", 0),
           "process_spread": _round(procs.get("process_spread")),
           "hardware": r.hardware, "nodes": " ".join(sorted({x.node for x in records if x.node}))}
    return row


def table_rows(run: RawRun) -> list[dict[str, Any]]:
    """One row per (model, runtime, precision, device, batch, threads, node hardware),
    repeats pooled; the rows of each hardware together (a median never mixes CPUs)."""
    groups: dict[RowKey, list[LatencyRecord]] = {}
    order = {hw: i for i, hw in enumerate(run.hardware)}
    for r in sorted(run.latency, key=lambda r: order[r.hardware]):  # stable within one
        groups.setdefault(row_key(r), []).append(r)
    return [table_row(run, records) for records in groups.values()]


def fastest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, batch size, hardware): the row with the lowest median among those
    without error."""
    best: dict[tuple[str, int, str], dict[str, Any]] = {}
    for row in rows:
        if row["error"] or row["median_ms"] is None:
            continue
        key = (row["model"], row["batch_size"], row.get("hardware", ""))
        if key not in best or row["median_ms"] < best[key]["median_ms"]:
            best[key] = row
    return list(best.values())


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    from zoo import atomic

    with atomic.atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*COLUMNS, *EXTRA_COLUMNS])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def generate(raw_path: Path, out_dir: Path) -> dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.png`` for one raw file, and
    ``<stem>-batch.png`` when the run swept more than one batch size."""
    run = load_raw(raw_path)
    rows = table_rows(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = raw_path.stem  # the set-up is in the raw file's name; tables keep it
    paths = {"csv": write_csv(rows, out_dir / f"{stem}.csv"),
             "png": write_plot(run, rows, out_dir / f"{stem}.png")}
    sweep = write_batch_plot(run, rows, out_dir / f"{stem}-batch.png")
    if sweep:
        paths["batch"] = sweep
    paths["md"] = write_markdown(run, rows, out_dir / f"{stem}.md", best=fastest(rows),
                                 plots=[p.name for k, p in paths.items() if k != "csv"])
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from zoo.cli import add_results_argument

    parser.add_argument("raw", nargs="+", type=Path, help="results/raw/latency-*.jsonl")
    add_results_argument(parser, "--out")


def run(args: argparse.Namespace) -> int:
    from zoo.cli import results_dir

    for raw in args.raw:
        if not raw.is_file():
            print(f"error: {raw} does not exist", file=sys.stderr)
            return 2
        for kind, path in generate(raw, results_dir(args)).items():
            print(f"{kind:4s} {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from bench.cli import BENCH_COMMANDS, DESCRIPTION
    from zoo.cli import run_cli

    return run_cli("python -m bench", DESCRIPTION, BENCH_COMMANDS,
                   ["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
