"""The catalog-wide parity table, built from the records of the per-model runs.

Kept apart from how the runs are executed (``converters.parity.catalog``: one task per
model on a ``zoo.executors`` executor). The rows come from the records each task returned
to the driver (``rows_from_results``, with the node it ran on), or, for
``--collect-only``, from what the runs left on disk: each model's
``<model>/parity/*_vs_*.json``, or its ``<model>.parity-error.txt`` (``collect_rows``).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from converters.tolerance import parity_bars_text
from zoo import atomic
from zoo.env import markdown_header
from zoo.tables import md_table

COLUMNS = ("model", "weights", "pair", "precision", "result", "aligned", "aligned_fraction",
           "first_divergent", "worst_layer", "worst_snr_db", "worst_max_abs", "error", "node")


def error_file(out_root: Path, model: str) -> Path:
    """Where a run records, in one line, why ``model`` could not be checked at all."""
    return out_root / f"{model}.parity-error.txt"


def collect_rows(models: list[str], out_root: Path) -> list[dict]:
    """Rows from what the runs left under ``out_root`` (``--collect-only``); no node column."""
    rows = []
    for model in models:
        err_file = error_file(out_root, model)
        if err_file.exists():
            rows.append({"model": model, "result": "error",
                         "error": err_file.read_text().strip()})
            continue
        for path in sorted((out_root / model / "parity").glob("*_vs_*.json")):
            rows.append(_row(json.loads(path.read_text())))
    return rows


def rows_from_results(models: list[str], results: list) -> list[dict]:
    """Rows from the records each task returned to the driver (``zoo.executors.TaskResult``,
    one per model, in ``models`` order), each with the node it ran on. A model that
    checked nothing, or whose worker died past its retries, is one error row."""
    rows = []
    for model, result in zip(models, results):
        node = result.node.name
        if result.error or not result.records:
            rows.append({"model": model, "result": "error", "node": node,
                         "error": result.error or f"exit {result.exit_code}: no parity reports"})
            continue
        rows += [{**_row(record), "node": node} for record in result.records]
    return rows


def _where(d: dict | None) -> str:
    return f"{d['module'] or '<top level>'} ({d['op']})" if d else ""


def _first_failure(r: dict) -> str:
    """The first divergent layer, and where NaN/Inf first appear, said as such."""
    first, nonfinite = r["first_divergent"], r.get("first_nonfinite")
    parts = [_where(first)] if first and not first.get("nonfinite") else []
    if nonfinite:
        parts.append(f"non-finite values ({nonfinite['nonfinite']}) first at {_where(nonfinite)}")
    return "; ".join(parts)


def _worst_snr(worst: dict | None) -> str | float:
    if not worst:
        return ""
    if worst.get("nonfinite"):
        return "non-finite"
    return round(worst["snr_db"], 1) if worst["snr_db"] is not None else ""


def _row(r: dict) -> dict:
    worst = r["worst"]
    return {"model": r["model"], "weights": r["weights"],
            "pair": f"{r['reference']} vs {r['test']}", "precision": r["precision"],
            "result": "pass" if r["passed"] else "FAIL",
            "aligned": f"{r['n_aligned']}/{r['n_onnx_tensors']}",
            "aligned_fraction": r["aligned_fraction"], "first_divergent": _first_failure(r),
            "worst_layer": _where(worst), "worst_snr_db": _worst_snr(worst),
            "worst_max_abs": f"{worst['max_abs']:.2e}" if worst and worst["max_abs"] is not None
            else "", "error": r.get("error", "")}


def write_tables(rows: list[dict], results: Path, env: dict) -> tuple[Path, Path]:
    results.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = results / "parity-catalog.csv", results / "parity-catalog.md"
    with atomic.atomic_open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k, "") for k in COLUMNS})
    lines = [markdown_header(env, "Per-layer parity across the catalog"),
             "Each row compares every aligned intermediate tensor of one format pair "
             f"({parity_bars_text()}). `aligned` counts ONNX float tensors with a counterpart; "
             "per-model JSON under `artifacts/<model>/parity/` says why the others have none.\n",
             md_table(COLUMNS, [[row.get(k, "") for k in COLUMNS] for row in rows])]
    atomic.write_text(md_path, "\n".join(lines))
    return csv_path, md_path
