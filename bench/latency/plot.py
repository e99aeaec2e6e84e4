"""Latency vs FLOPs per runtime, one panel per batch size, against the measured peak."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.latency.report import RawRun

MARKERS = "osD^v<>pP*Xh"


def _panel(ax: Any, rows: list[dict[str, Any]], batch: int, peak: float | None,
           runtimes: list[str]) -> None:
    for i, runtime in enumerate(runtimes):
        pts = [r for r in rows if r["runtime"] == runtime and r["batch_size"] == batch
               and r["median_ms"] is not None and r["gflops"]]
        if pts:
            ax.scatter([r["gflops"] * batch for r in pts], [r["median_ms"] for r in pts],
                       label=runtime, marker=MARKERS[i % len(MARKERS)], s=28, alpha=0.8)
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["batch_size"] == batch and r["median_ms"] is not None and r["gflops"]:
            if r["model"] not in best or r["median_ms"] < best[r["model"]]["median_ms"]:
                best[r["model"]] = r
    for model, r in best.items():
        ax.annotate(model, (r["gflops"] * batch, r["median_ms"]), fontsize=7,
                    xytext=(4, -8), textcoords="offset points")
    xs = [r["gflops"] * batch for r in best.values()]
    if peak and xs:
        lo, hi = min(xs) / 1.5, max(xs) * 1.5
        ax.plot([lo, hi], [lo / peak * 1e3, hi / peak * 1e3], "k--", lw=1,
                label=f"at measured peak ({peak:.0f} GFLOP/s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"GFLOPs per call (batch {batch})")
    ax.set_ylabel("median latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def write_plot(run: "RawRun", rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch_size"] for r in rows}) or [1]
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    peak = run.peak.gflops_per_s if run.peak else None
    fig, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 5), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        _panel(ax, rows, batch, peak, runtimes)
    bench = run.env.get("bench", {})
    weights = sorted({r["weights"] for r in rows if r["weights"]})
    fig.suptitle(f"Latency vs FLOPs: {bench.get('device', '?')}, {run.env.get('threads')} threads, "
                 f"{run.env.get('cpu', '')}\nweights: {'; '.join(weights)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
