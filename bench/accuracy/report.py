"""CSV, Markdown and PNG views of the accuracy records (``<results>/accuracy-<photos>.*``)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from bench.accuracy.records import AccuracyRecord, read_jsonl
from zoo import atomic
from zoo.tables import md_table

SAMPLE_NOTE = ("The imagenet-sample photos may come from ImageNet's *train* split: read top-1 "
               "and top-5 as a check that conversion keeps what PyTorch computes, not as "
               "ImageNet validation accuracy.")


@dataclass(frozen=True)
class ReportFiles:
    raw: Path
    csv: Path
    markdown: Path
    png: Path


def paths(results: Path, photos: str) -> ReportFiles:
    stem = f"accuracy-{photos}"
    return ReportFiles(results / "raw" / f"{stem}.jsonl", results / f"{stem}.csv",
                       results / f"{stem}.md", results / f"{stem}.png")


def _pct(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{100 * x:.{digits}f}"


def _ci(x: float | None, lo: float | None, hi: float | None) -> str:
    """``71.2 [68.1, 74.1]`` (percent)."""
    if x is None:
        return "-"
    return f"{_pct(x)} [{_pct(lo)}, {_pct(hi)}]"


def _err(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def md_row(r: AccuracyRecord) -> list[str]:
    if r.error:
        return [r.model, r.format, r.precision, str(r.n or ""), "", "", "", "", "", "", "",
                f"error: {r.error}"]
    return [r.model, r.format, r.precision, str(r.n), _ci(r.top1, r.top1_lo, r.top1_hi),
            _ci(r.top5, r.top5_lo, r.top5_hi),
            "" if r.relative_top1 is None else f"{100 * r.relative_top1:.1f}%",
            _ci(r.agreement, r.agreement_lo, r.agreement_hi), str(r.changed),
            _err(r.mean_logit_err), _err(r.max_logit_err), r.quantization]


HEADERS = ("model", "format", "precision", "photos", "top-1 % [95% CI]", "top-5 % [95% CI]",
           "top-1 vs PyTorch", "top-1 agreement % [95% CI]", "top-1 changed",
           "mean \\|logit err\\|", "max \\|logit err\\|", "int8 calibration / error")


def markdown(env: dict[str, Any], records: Sequence[AccuracyRecord], photos_text: str) -> str:
    from zoo.env import markdown_header

    labelled = [r for r in records if r.labelled]
    weights = sorted({f"{r.model}: {r.weights}" for r in records})
    text = markdown_header(env, "Accuracy on labelled photos, per format and precision")
    text += (f"Photos: {photos_text}. {SAMPLE_NOTE}\n\n"
             "Top-1/top-5 intervals are 95% Wilson score intervals over the photos. "
             "*top-1 vs PyTorch* is the artifact's top-1 divided by PyTorch fp32's on the "
             "same photos (MLPerf asks int8 to keep >= 99%). *Agreement* counts photos whose "
             "top-1 class equals PyTorch fp32's; *changed* is how many differ. Logit errors "
             "are against PyTorch fp32's logits. Models with random weights have no "
             "meaningful top-1: their rows report agreement only.\n\n"
             f"Weights: {'; '.join(weights)}.\n\n")
    if not labelled:
        text += "No model here has real weights: agreement only.\n\n"
    return text + md_table(HEADERS, [md_row(r) for r in records])


CSV_COLUMNS = tuple(f.name for f in fields(AccuracyRecord))


def write_csv(records: Sequence[AccuracyRecord], path: Path) -> Path:
    with atomic.atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if v is None else v) for k, v in r.to_json().items()})
    return path


def generate(files: ReportFiles, photos_text: str | None = None) -> ReportFiles:
    """Rewrite the CSV, Markdown and PNG from the raw records (``photos_text``: how the
    photos were chosen; default what the raw file's header says)."""
    from bench.accuracy.plot import write_plot

    env, records = read_jsonl(files.raw)
    if not records:
        raise FileNotFoundError(f"no accuracy records in {files.raw}")
    text = photos_text or env.get("accuracy", {}).get("photos", files.raw.stem)
    write_csv(records, files.csv)
    atomic.write_text(files.markdown, markdown(env, records, text))
    write_plot(records, files.png)
    return files
