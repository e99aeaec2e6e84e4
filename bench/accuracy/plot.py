"""PNG of the accuracy records: top-1 with its 95% interval per artifact (real weights), or
top-1 agreement with PyTorch (random weights), one bar per (model, format)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bench.accuracy.records import AccuracyRecord
from bench.latency.plot import DPI, save

COLOURS = {"fp32": "#4c72b0", "fp16": "#55a868", "int8": "#c44e52"}


def write_plot(records: Sequence[AccuracyRecord], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(figure(records), path)


def _value(r: AccuracyRecord) -> tuple[float, float, float, str]:
    """(value, low, high, what) in percent."""
    if r.labelled and r.top1 is not None:
        return 100 * r.top1, 100 * (r.top1_lo or 0), 100 * (r.top1_hi or 0), "top-1"
    a = r.agreement or 0.0
    return 100 * a, 100 * (r.agreement_lo or 0), 100 * (r.agreement_hi or 0), "agreement"


def figure(records: Sequence[AccuracyRecord]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if not r.error and r.agreement is not None]
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.3 * max(len(rows), 1)), dpi=DPI,
                           layout="constrained")
    for i, r in enumerate(rows):
        v, lo, hi, what = _value(r)
        ax.barh(i, v, color=COLOURS.get(r.precision, "#8172b2"),
                xerr=[[max(0.0, v - lo)], [max(0.0, hi - v)]], capsize=2, error_kw={"lw": 0.8})
        ax.text(hi + 1, i, f"{v:.1f} ({what})", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{r.model} {r.format}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 118)
    ax.set_xlabel("%: top-1 (real weights) or top-1 agreement with PyTorch fp32 (random "
                  "weights); whiskers: 95% Wilson interval", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), fontsize=7, loc="lower right")
    photos = sorted({r.photos for r in records})
    ax.set_title(f"Accuracy per format and precision ({', '.join(photos) or 'no records'})",
                 fontsize=10)
    return fig
