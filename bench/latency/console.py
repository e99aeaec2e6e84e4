"""The terminal side of a run: a rich progress bar and a rich summary table."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from bench.latency.orchestrate import BenchOptions
    from zoo.executors.base import Executor


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "" if x is None or x == "" else format(x, spec)


_NARROW = 100  # below this width, p90 and load time are left to the CSV


def summary_table(rows: list[dict[str, Any]], peak: float | None, title: str,
                  width: int = 160):
    from rich import box
    from rich.table import Table

    from bench.latency.report import fastest

    best = {(r["model"], r["batch_size"], r["runtime"]) for r in fastest(rows)}
    wide, errors = width >= _NARROW, any(r["error"] for r in rows)
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=f"median and p90 in ms, peak RSS in MB; peak% = GFLOP/s over the "
                          f"measured peak of the row's precision (fp32: {_fmt(peak, '.1f')} "
                          "GFLOP/s); "
                          "~ = IQR/median > 10%; * = fastest")
    columns = ["model", "runtime", "batch", "median", "IQR%", *(["p90"] if wide else []),
               "GFLOP/s", "peak%", *(["load s"] if wide else []), "RSS",
               *(["error"] if errors else [])]
    for col in columns:
        text = col in ("model", "runtime", "error")
        table.add_column(col, justify="left" if text else "right", no_wrap=col != "error",
                         overflow="fold")
    for r in rows:
        table.add_row(*_cells(r, best, wide, errors))
    return table


def _cells(r: dict[str, Any], best: set, wide: bool, errors: bool) -> list[str]:
    iqr = r["iqr_ms"] / r["median_ms"] * 100 if r["median_ms"] else None
    star = "*" if (r["model"], r["batch_size"], r["runtime"]) in best else ""
    cells = [r["model"], f"{r['runtime']}{star}", str(r["batch_size"]),
             f"{_fmt(r['median_ms'])}{'~' if r['unstable'] else ''}", _fmt(iqr, ".1f"),
             *([_fmt(r["p90_ms"])] if wide else []), _fmt(r["gflops_per_s"], ".1f"),
             _fmt(r["peak_fraction"] and 100 * r["peak_fraction"], ".1f"),
             *([_fmt(r["load_s"], ".2f")] if wide else []), _fmt(r["peak_rss_mb"], ".0f")]
    return cells + ([(r["error"] or "")[:120]] if errors else [])


def run_with_progress(opts: "BenchOptions", env: dict[str, Any], name: str,
                      executor: "Executor | None" = None) -> int:
    """Run the bench on ``executor`` (default: this machine) with the executors' progress
    display (tasks done, running, failed, per node), write the tables, print the summary."""
    from bench.latency.orchestrate import run_bench
    from bench.latency.report import generate, load_raw, table_rows
    from zoo.executors.progress import TaskProgress

    raw_path = opts.results_dir / "raw" / f"{name}.jsonl"
    with TaskProgress(0, title="bench") as progress:
        run_bench(opts, env, raw_path, progress, executor)
    print(progress.summary(), file=sys.stderr)
    paths = generate(raw_path, opts.results_dir)
    run = load_raw(raw_path)
    rows = table_rows(run)
    out = _console()
    hardware = run.hardware
    if len(hardware) <= 1:
        out.print(summary_table(rows, run.peak.gflops_per_s if run.peak else None,
                                f"{name} ({len(rows)} rows)", width=out.width))
    for hw in hardware if len(hardware) > 1 else ():  # per node hardware, its own peak
        peak = run.peak_for(hw)
        out.print(summary_table([r for r in rows if r["hardware"] == hw],
                                peak.gflops_per_s if peak else None,
                                f"{name}: {hw or 'not timed'}", width=out.width))
    for kind, path in {"raw": raw_path, **paths}.items():
        out.print(f"{kind:4s} {path}")
    failed = sum(1 for r in rows if r["error"])
    if failed:
        out.print(f"{failed} of {len(rows)} rows have an error (see the error column)")
    from bench.derived import refresh_derived

    quoting_failed = refresh_derived(opts.results_dir, "latency",  # transfer, ship
                                     artifacts=opts.artifacts_root)
    return rows_status(len(rows), failed + len(quoting_failed))


def rows_status(n_rows: int, n_failed: int) -> int:
    """0 when every row measured; 3 (partial) when any row errored, all of them included."""
    from zoo.exits import ExitCode

    return ExitCode.PARTIAL if n_failed or not n_rows else ExitCode.OK


def _console() -> "Console":
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)
