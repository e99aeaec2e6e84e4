"""PNG: transfer accuracy against CPU latency, one panel per protocol."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.transfer.records import TransferRecord

if TYPE_CHECKING:
    from bench.transfer.report import Latency

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_accuracy_latency(records: list[TransferRecord], latency: dict[str, "Latency"],
                          path: Path) -> None:
    """Filled markers: ImageNet weights; hollow: the random-weights control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = sorted({r.protocol for r in records}, key=("linear", "finetune").index) or ["linear"]
    fig, axes = plt.subplots(1, len(protocols), figsize=(6.5 * len(protocols), 4.8),
                             squeeze=False)
    models = list(dict.fromkeys(r.model for r in records))
    datasets = list(dict.fromkeys(r.dataset for r in records))
    for ax, protocol in zip(axes[0], protocols):
        for r in (r for r in records if r.protocol == protocol):
            _point(ax, r, latency, models, datasets)
        _decorate(ax, protocol, latency, models)
    _legend(fig, datasets)
    if not records:
        axes[0][0].text(0.5, 0.5, "no transfer records yet", ha="center",
                        transform=axes[0][0].transAxes)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _x(r: TransferRecord, latency: dict[str, "Latency"], models: list[str],
       datasets: list[str]) -> float:
    if latency:
        lat = latency.get(r.model)
        return lat.median_ms if lat else float("nan")
    # Categorical axis: datasets side by side within each model's slot.
    spread = 0.6 / max(len(datasets), 1)
    return models.index(r.model) + (datasets.index(r.dataset) - (len(datasets) - 1) / 2) * spread


def _point(ax, r: TransferRecord, latency, models: list[str], datasets: list[str]) -> None:
    marker = MARKERS[datasets.index(r.dataset) % len(MARKERS)]
    color = f"C{datasets.index(r.dataset) % 10}"
    filled = r.weights != "random"
    x = _x(r, latency, models, datasets)
    ax.scatter([x], [r.accuracy], marker=marker, s=60, facecolors=color if filled else "none",
               edgecolors=color)
    text = f"{r.accuracy:.3f}" + ("" if not latency else f" {r.model}")
    ax.annotate(text, (x, r.accuracy), fontsize=7, xytext=(5, 2), textcoords="offset points")
    ax.axhline(1 / r.num_classes, color=color, lw=0.6, ls=":")


def _decorate(ax, protocol: str, latency, models: list[str]) -> None:
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"protocol: {protocol} (dotted: chance)")
    if latency:
        ax.set_xscale("log")
        ax.set_xlabel("CPU latency, batch 1, fastest runtime (ms)")
    else:
        ax.set_xticks(range(len(models)), models, rotation=20)
        ax.set_xlim(-0.5, max(len(models), 1) - 0.5)
        ax.set_xlabel("model (CPU latency not measured: no results/latency-cpu-*.csv)")


def _legend(fig, datasets: list[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=MARKERS[i % len(MARKERS)], color=f"C{i % 10}", ls="",
                      label=d) for i, d in enumerate(datasets)]
    handles += [Line2D([], [], marker="o", color="k", ls="", label="imagenet weights"),
                Line2D([], [], marker="o", color="k", mfc="none", ls="", label="random weights")]
    fig.suptitle("Transfer accuracy vs CPU latency", y=0.995, fontsize=10)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.95),
               ncol=min(len(handles), 6), fontsize=8)
