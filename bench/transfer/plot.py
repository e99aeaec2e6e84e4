"""PNG of the transfer results, one panel per protocol.

With CPU latency for two or more models: accuracy against latency. Otherwise (one model,
or no latency results yet) a latency axis would say nothing, so per-dataset bars show
ImageNet features against the random-weights control, with chance marked.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.latency.plot import (DPI, fit_suptitle, freeze_layout, save, set_ticks,
                                spread_labels)
from bench.transfer.records import TransferRecord

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
WEIGHTS_ORDER = ("imagenet", "file", "random")
WEIGHTS_TEXT = {"imagenet": "ImageNet weights", "file": "weights file",
                "random": "random weights (control)"}


def plot_transfer(records: Sequence[TransferRecord], latency_ms: Mapping[str, float],
                  path: Path) -> Path:
    """``latency_ms``: batch-1 CPU latency per model (ms), where measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(transfer_figure(records, latency_ms), path)


def transfer_figure(records: Sequence[TransferRecord], latency_ms: Mapping[str, float]) -> Any:
    """Accuracy against latency, or per-dataset bars when fewer than two models have one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = sorted({r.protocol for r in records}, key=lambda p: (p != "linear", p))
    with_latency = sorted({r.model for r in records if r.model in latency_ms})
    scatter = len(with_latency) >= 2
    groups = {p: _groups([r for r in records if r.protocol == p]) for p in protocols}
    ratios = [1.0] * len(protocols) if scatter else [max(len(g), 1) + 0.6 for g in groups.values()]
    width = 6.5 * len(protocols) if scatter else 1.6 * sum(ratios) + 1.2
    fig, axes = plt.subplots(1, max(len(protocols), 1), figsize=(max(width, 6.5), 5.2),
                             squeeze=False, layout="constrained", dpi=DPI,
                             gridspec_kw={"width_ratios": ratios or [1.0]})
    labels: list[tuple[Any, list[tuple[str, float, float]]]] = []
    for ax, protocol in zip(axes[0], protocols):
        mine = [r for r in records if r.protocol == protocol]
        if scatter:
            labels.append((ax, _scatter_panel(ax, mine, latency_ms)))
        else:
            _bar_panel(ax, mine, groups[protocol])
        ax.set_title(f"protocol: {protocol}", fontsize=10)
    if not records:
        axes[0][0].text(0.5, 0.5, "no transfer records yet", ha="center",
                        transform=axes[0][0].transAxes)
    if records:
        fig.legend(handles=_legend(records, scatter), loc="outside lower center", ncol=6,
                   fontsize=8)
    fit_suptitle(fig, _title(records, latency_ms, with_latency, scatter), size=10)
    freeze_layout(fig)
    for ax, points in labels:
        set_ticks(ax, "x")
        spread_labels(ax, points)
    return fig


def _title(records: Sequence[TransferRecord], latency_ms: Mapping[str, float],
           with_latency: list[str], scatter: bool) -> str:
    if scatter:
        missing = sorted({r.model for r in records} - set(with_latency))
        note = f"; not shown (no CPU latency): {', '.join(missing)}" if missing else ""
        return ("Transfer accuracy vs CPU latency (batch 1, fastest runtime)\n"
                f"filled: ImageNet weights, hollow: random-weights control{note}")
    if with_latency:
        lat = f"CPU latency only for {with_latency[0]} ({latency_ms[with_latency[0]]:.2f} ms)"
    else:
        lat = "no CPU latency measured yet (results/latency-cpu-*.csv)"
    models = list(dict.fromkeys(r.model for r in records))
    which = f" ({models[0]})" if len(models) == 1 else ""
    return (f"Transfer accuracy per dataset{which}: ImageNet features vs random-weights control"
            f"\n{lat}: accuracy vs latency needs two or more models")


# -- bars --------------------------------------------------------------------------------------

def _groups(records: Sequence[TransferRecord]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r.model, r.dataset) for r in records))


def _kinds(records: Sequence[TransferRecord]) -> list[str]:
    present = {r.weights for r in records}
    return [w for w in WEIGHTS_ORDER if w in present] + sorted(present - set(WEIGHTS_ORDER))


def _bar_style(kind: str) -> dict[str, Any]:
    if kind == "random":  # the control: hollow, as in the latency scatter
        return {"facecolor": "white", "edgecolor": "C0", "hatch": "//"}
    return {"facecolor": "C0" if kind == "imagenet" else "C2", "edgecolor": "C0"}


def _bar_panel(ax: Any, records: list[TransferRecord], groups: list[tuple[str, str]]) -> None:
    kinds = _kinds(records)
    width = 0.8 / max(len(kinds), 1)
    one_model = len({m for m, _ in groups}) == 1
    for g, (model, dataset) in enumerate(groups):
        mine = [r for r in records if (r.model, r.dataset) == (model, dataset)]
        for k, kind in enumerate(kinds):
            hits = [r for r in mine if r.weights == kind]
            if not hits:
                continue
            r = hits[-1]  # the newest configuration
            x = g + (k - (len(kinds) - 1) / 2) * width
            ax.bar(x, r.accuracy, width * 0.92, lw=1, **_bar_style(kind))
            ax.text(x, r.accuracy + 0.01, f"{r.accuracy:.3f}\nn={r.n_train}", ha="center",
                    va="bottom", fontsize=7)
        chance = 1 / mine[0].num_classes
        ax.hlines(chance, g - 0.45, g + 0.45, colors="k", linestyles=":", lw=1)
    ax.set_xticks(range(len(groups)),
                  [d if one_model else f"{m}\n{d}" for m, d in groups], fontsize=8)
    ax.set_xlim(-0.6, max(len(groups), 1) - 0.4)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("test accuracy")
    ax.grid(True, axis="y", alpha=0.3)


# -- accuracy vs latency -------------------------------------------------------------------

def _scatter_panel(ax: Any, records: list[TransferRecord],
                   latency_ms: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """Points per record; returns the labels to place once the layout is frozen."""
    datasets = list(dict.fromkeys(r.dataset for r in records))
    labels = []
    for r in (r for r in records if r.model in latency_ms):
        i = datasets.index(r.dataset)
        color = f"C{i % 10}"
        x = latency_ms[r.model]
        ax.scatter([x], [r.accuracy], marker=MARKERS[i % len(MARKERS)], s=60, edgecolors=color,
                   facecolors=color if r.weights != "random" else "none")
        ax.axhline(1 / r.num_classes, color=color, lw=0.6, ls=":")
        labels.append((f"{r.accuracy:.3f} {r.model}", x, r.accuracy))
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy (dotted: chance)")
    ax.set_xlabel("CPU latency, batch 1, fastest runtime (ms)")
    ax.grid(True, which="both", alpha=0.3)
    return labels


def _legend(records: Sequence[TransferRecord], scatter: bool) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not scatter:
        return [Patch(label=WEIGHTS_TEXT.get(k, k), **_bar_style(k)) for k in _kinds(records)] + [
            Line2D([], [], color="k", ls=":", label="chance"),
            Patch(color="none", label="n = training images")]
    datasets = list(dict.fromkeys(r.dataset for r in records))
    handles = [Line2D([], [], marker=MARKERS[i % len(MARKERS)], color=f"C{i % 10}", ls="",
                      label=d) for i, d in enumerate(datasets)]
    return handles + [Line2D([], [], marker="o", color="k", ls="", label="ImageNet weights"),
                      Line2D([], [], marker="o", color="k", mfc="none", ls="",
                             label="random weights")]
