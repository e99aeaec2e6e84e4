"""The end of a GPU run's log: ``python -m bench.gpu.summary RESULTS_DIR``.

Per latency table: rows measured, errored and skipped, the runtimes left out and why, the
GEMM peaks, and the fastest runtime per model at batch 1 and at the largest batch measured;
per agreement table, the rows that did not pass. Read from the CSV and raw files the run
wrote: nothing is measured here.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _env_and_peaks(raw: Path) -> tuple[dict, list[dict]]:
    env, peaks = {}, []
    if raw.is_file():
        for line in raw.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if record.get("type") == "env":
                env = record
            elif record.get("type") == "peak":
                peaks.append(record)
    return env, peaks


def _fastest(rows: list[dict[str, str]], batch: str) -> list[str]:
    best: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["batch_size"] != batch or r["error"] or not r["median_ms"]:
            continue
        if r["model"] not in best or float(r["median_ms"]) < float(best[r["model"]]["median_ms"]):
            best[r["model"]] = r
    return [f"  {m:18s} {r['runtime']:20s} {float(r['median_ms']):8.3f} ms "
            f"{float(r['images_per_s']):10.0f} img/s  of peak {r['peak_fraction'] or '-'}"
            for m, r in best.items()]


def latency_summary(table: Path) -> list[str]:
    rows = _csv(table)
    stem = table.stem
    env, peaks = _env_and_peaks(table.parent / "raw" / f"{stem}.jsonl")
    errors = [r for r in rows if r["error"] and not r["error"].startswith("skipped:")]
    skipped = [r for r in rows if r["error"].startswith("skipped:")]
    lines = [f"{table.name}: {len(rows) - len(errors) - len(skipped)} rows measured, "
             f"{len(errors)} with an error, {len(skipped)} not tried (after out of memory)"]
    for name, why in (env.get("bench", {}).get("skipped_runtimes") or {}).items():
        lines.append(f"  not run: {name}: {why}")
    for p in peaks:
        rates = ", ".join(f"{k} {v / 1e3:.1f}" for k, v in (p.get("by_precision") or {}).items())
        lines.append(f"  GEMM peak ({p.get('when')}), TFLOP/s: {rates or p.get('error')}")
    batches = sorted({int(r["batch_size"]) for r in rows if not r["error"]})
    for batch in dict.fromkeys([batches[0], batches[-1]] if batches else []):
        lines.append(f"  fastest at batch {batch}:")
        lines += _fastest(rows, str(batch))
    for r in errors[:10]:
        lines.append(f"  error: {r['model']} {r['runtime']} b{r['batch_size']}: "
                     f"{r['error'][:160]}")
    return lines


def agreement_summary(table: Path) -> list[str]:
    rows = _csv(table)
    bad = [r for r in rows if r["passed"] not in ("True", "skipped")]
    lines = [f"{table.name}: {len(rows)} rows, {len(bad)} not passed, "
             f"{sum(r['passed'] == 'skipped' for r in rows)} skipped"]
    return lines + [f"  {r['model']} {r['runtime']}: max|err| {r['max_abs_err']} top-1 "
                    f"{r['top1_agreement']} {r['error'][:120]}" for r in bad[:10]]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0] if argv else "runs")
    lines: list[str] = []
    for table in sorted(folder.glob("latency-*.csv")):
        lines += latency_summary(table)
    for table in sorted(folder.glob("agreement-*.csv")):
        lines += agreement_summary(table)
    print("\n".join(lines or [f"no tables in {folder}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
