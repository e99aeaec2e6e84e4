"""Tables and plot generated from ``results/transfer.jsonl``: CSV, Markdown, PNG."""
from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The plot takes plain latencies (ms per model), so it never imports this module back.
from bench.transfer.plot import plot_transfer
from bench.transfer.records import CSV_COLUMNS, TransferRecord, latest, read_jsonl
from zoo import atomic
from zoo.tables import md_table

LATENCY_GLOB = "latency-cpu-*.csv"


@dataclass(frozen=True)
class Latency:
    median_ms: float
    runtime: str
    source: str
    threads: int | None = None
    unstable: bool = False

    def rank(self, threads: int | None) -> tuple[bool, bool, float]:
        """Same thread count first, then stable (IQR/median <= 0.1) rows, then fastest."""
        return (threads is not None and self.threads != threads, self.unstable, self.median_ms)

    def text(self) -> str:
        t = f", {self.threads}t" if self.threads is not None else ""
        return f"{self.median_ms:.2f} ({self.runtime}{t}{', unstable' if self.unstable else ''})"


@dataclass(frozen=True)
class ReportFiles:
    csv: Path
    markdown: Path
    png: Path
    records: int
    latency_found: bool


def cpu_latency(results_dir: Path, *, threads: int | None = None) -> dict[str, Latency]:
    """Batch-1 median latency of each model's fastest runtime, from the latency results.

    Rows with an error are skipped; rows measured with ``threads`` threads and
    without the unstable flag are preferred over faster ones that are not.
    """
    best: dict[str, Latency] = {}
    for path in sorted(results_dir.glob(LATENCY_GLOB)):
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                lat = _latency_row(row, path)
                model = row.get("model", "")
                if lat and model and (model not in best
                                      or lat.rank(threads) < best[model].rank(threads)):
                    best[model] = lat
    return best


def _latency_row(row: dict[str, str], path: Path) -> Latency | None:
    if str(row.get("batch_size", "1")).strip() not in ("1", "1.0") or row.get("error"):
        return None
    try:
        ms = float(row["median_ms"])
    except (KeyError, TypeError, ValueError):
        return None
    if not math.isfinite(ms):
        return None
    threads = row.get("threads", "")
    return Latency(ms, row.get("runtime", row.get("backend", "?")), path.name,
                   int(float(threads)) if threads.strip() else None,
                   row.get("unstable", "").strip().lower() == "true")


def write_csv(records: list[TransferRecord], path: Path, latency: dict[str, Latency]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*CSV_COLUMNS, "cpu_latency_ms",
                                                "latency_runtime", "latency_source"])
        writer.writeheader()
        for r in records:
            lat = latency.get(r.model)
            writer.writerow({**{k: _csv_value(v) for k, v in r.row().items()},
                             "cpu_latency_ms": f"{lat.median_ms:.3f}" if lat else "",
                             "latency_runtime": lat.runtime if lat else "",
                             "latency_source": lat.source if lat else ""})


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    return "" if v is None else v


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _details(r: TransferRecord) -> str:
    if r.protocol == "linear":
        edge = " (grid edge)" if r.c_grid and r.best_c in (min(r.c_grid), max(r.c_grid)) else ""
        return (f"C={r.best_c:g}{edge}"
                + ("" if r.converged in (None, True) else " (not converged)"))
    return (f"freeze {r.freeze} ({r.stages_frozen}/{r.stages_total} stages), {r.optimizer} "
            f"lr {r.lr:g}/{r.backbone_lr:g}, {r.epochs} ep")


MD_COLUMNS = ("model", "weights", "dataset", "protocol", "n_train", "n_test", "res", "accuracy",
              "chance", "extract_s", "fit_s", "features_s", "cache hit", "CPU latency (ms)",
              "details")


def _md_cells(r: TransferRecord, latency: dict[str, Latency]) -> tuple[str, ...]:
    lat = latency.get(r.model)
    return (r.model, r.weights, r.dataset, r.protocol, str(r.n_train), str(r.n_test),
            f"{r.resolution} ({r.resize_mode})", f"{r.accuracy:.4f}", f"{1 / r.num_classes:.2f}",
            _fmt(r.extract_s), _fmt(r.fit_s), _fmt(r.features_s, 2), _fmt(r.cache_hit),
            lat.text() if lat else "not measured", _details(r))


def markdown(records: list[TransferRecord], envs: dict[str, dict[str, Any]],
             latency: dict[str, Latency]) -> str:
    from zoo.env import markdown_header

    env = envs.get(records[-1].run_id) if records else None
    text = markdown_header(env, "Transfer accuracy (linear probe and fine-tuning)") if env else (
        "# Transfer accuracy\n\nNo records yet.\n")
    text += _notes(records, latency)
    text += md_table(MD_COLUMNS, [_md_cells(r, latency) for r in records])
    text += _datasets_section(records) + _weights_section(records) + _runs_section(records, envs)
    return text


def _notes(records: list[TransferRecord], latency: dict[str, Latency]) -> str:
    files = ", ".join(sorted({f"`{v.source}`" for v in latency.values()}))
    lat = ("CPU latency: batch-1 median of the model's fastest runtime, preferring the "
           f"records' thread count and stable rows, from {files}." if latency else
           f"CPU latency: not measured yet (no `results/{LATENCY_GLOB}`); the plot shows "
           "per-dataset bars (ImageNet weights vs the random-weights control) instead.")
    return ("Linear: L2 multinomial logistic regression on standardised frozen features, C "
            "chosen on a held-out 20% of train, refit on all of train. extract_s: feature "
            "extraction time when it ran; features_s: this run's time to get the features "
            "(extraction, or the on-disk cache on a hit). fit_s: regression incl. the C search, "
            f"or fine-tuning. Timings are wall seconds on a shared CPU.\n\n{lat}\n\n")


def _datasets_section(records: list[TransferRecord]) -> str:
    seen: dict[str, TransferRecord] = {}
    for r in records:
        seen.setdefault(r.dataset, r)
    rows = [(d, r.num_classes, f"{_fmt(r.dataset_train_size)} / {_fmt(r.dataset_test_size)}",
             r.grayscale_text, r.dataset_source) for d, r in seen.items()]
    return "\n## Datasets\n\n" + md_table(
        ("dataset", "classes", "train / test images", "grayscale -> RGB", "source"), rows)


def _weights_section(records: list[TransferRecord]) -> str:
    labels = sorted({(r.model, r.weights, r.weights_label) for r in records})
    lines = ["\n## Weights\n"] + [f"- {m} / {w}: {label}" for m, w, label in labels]
    return "\n".join(lines) + "\n"


def _runs_section(records: list[TransferRecord], envs: dict[str, dict[str, Any]]) -> str:
    ids = list(dict.fromkeys(r.run_id for r in records))
    lines = ["\n## Runs\n"]
    for i in ids:
        env = envs.get(i, {})
        lines.append(f"- {i}: {env.get('date', '?')}, {env.get('cpu', '?')}, "
                     f"threads {env.get('threads', '?')}")
    return "\n".join(lines) + "\n"


def generate(results_dir: Path, *, stem: str = "transfer") -> ReportFiles:
    """Regenerate ``{stem}.csv``, ``{stem}.md`` and ``{stem}.png`` from ``{stem}.jsonl``."""

    envs, all_records = read_jsonl(results_dir / f"{stem}.jsonl")
    records = latest(all_records)
    threads = Counter(r.threads for r in records).most_common(1)
    latency = cpu_latency(results_dir, threads=threads[0][0] if threads else None)
    files = ReportFiles(results_dir / f"{stem}.csv", results_dir / f"{stem}.md",
                        results_dir / f"{stem}.png", len(records), bool(latency))
    write_csv(records, files.csv, latency)
    atomic.write_text(files.markdown, markdown(records, envs, latency))
    plot_transfer(records, {m: lat.median_ms for m, lat in latency.items()}, files.png)
    return files
