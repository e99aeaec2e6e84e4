"""PNG views of a latency run.

``write_plot``: latency against FLOPs per runtime, one panel per batch size, against the
measured peak. ``write_batch_plot`` (runs with more than one batch size): latency and
images/s against batch size, one pair of panels per model, one line per runtime.
Figures are laid out once, then frozen, so point labels and ticks can be placed in pixels
without the layout moving them afterwards.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.latency.records import RawRun

Row = dict[str, Any]
MARKERS = "osD^v<>pP*Xh"
DPI = 120
LABEL_SIZE = 7
TITLE_SIZE = 9
MAX_TICKS = 10
# Tick mantissas per decade, densest first; the densest set whose labels do not touch wins.
LOG_SUBS = ((1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 5, 6, 7, 8, 9),
            (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,))


def style(i: int) -> dict[str, Any]:
    """Colour and marker of the i-th runtime, the same in every panel and figure."""
    return {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)]}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _measured(rows: Sequence[Row], batch: int | None = None) -> list[Row]:
    # A row some of whose processes failed still has a median from the others: plotted.
    return [r for r in rows if r["median_ms"] is not None
            and (batch is None or r["batch_size"] == batch)]


# -- figure text -------------------------------------------------------------------------

def weights_summary(rows: Sequence[Row]) -> str:
    """``label: model, model; label: 12 models``: which weights each model ran with."""
    by_label: dict[str, list[str]] = {}
    for r in rows:
        models = by_label.setdefault(r["weights"] or "weights not recorded", [])
        if r["model"] not in models:
            models.append(r["model"])
    if len(by_label) == 1:
        return f"weights: {next(iter(by_label))}"
    parts = [f"{label}: {', '.join(m) if len(m) <= 3 else f'{len(m)} models'}"
             for label, m in by_label.items()]
    return "weights: " + "; ".join(parts)


def fit_suptitle(fig: Any, text: str, *, size: int = TITLE_SIZE) -> Any:
    """The figure title, each line wrapped at the widest width that fits the figure."""
    renderer = fig.canvas.get_renderer()
    title = fig.suptitle(text, fontsize=size)
    limit = 0.96 * fig.bbox.width
    longest = max(len(line) for line in text.splitlines())
    for chars in range(longest, 19, -4):
        title.set_text("\n".join(textwrap.fill(line, chars) for line in text.splitlines()))
        if title.get_window_extent(renderer).width <= limit:
            break
    return title


def _title(run: "RawRun", rows: Sequence[Row], what: str) -> str:
    bench = run.env.get("bench", {})
    return (f"{what}: {bench.get('device', '?')}, {run.env.get('threads')} threads, "
            f"{run.env.get('cpu', '')}\n{weights_summary(rows)}")


# -- ticks and labels ----------------------------------------------------------------------

def _log_candidates(lo: float, hi: float) -> Iterator[list[float]]:
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    # Every mantissa only within one decade: across decades it bunches ticks at the top
    # of each decade (0.8, 0.9, 1) and leaves gaps above.
    for subs in LOG_SUBS[0 if math.log10(hi / lo) < 1 else 2:]:
        yield [s * 10.0**k for k in range(k0, k1 + 1) for s in subs if lo <= s * 10.0**k <= hi]
    for step in (2, 3, 5, 10):
        yield [10.0**k for k in range(k0, k1 + 1) if k % step == 0 and lo <= 10.0**k <= hi]


def _spaced(ticks: Sequence[float], sizes: Sequence[float], lo: float, hi: float,
            length: float, log: bool) -> bool:
    """Whether labels of ``sizes`` pixels (along the axis) at ``ticks`` leave a gap."""
    f = (lambda v: math.log10(v)) if log else float
    pos = [(f(t) - f(lo)) / (f(hi) - f(lo)) * length for t in ticks]
    # Half a label's size again as the gap: labels that merely do not touch read as one.
    return all(b - a >= 0.75 * (sa + sb) + 2 for a, b, sa, sb in
               zip(pos, pos[1:], sizes, sizes[1:]))


def set_ticks(ax: Any, which: str, candidates: Sequence[Sequence[float]] | None = None) -> None:
    """Label only ticks whose labels cannot overlap: the densest candidate set that is spaced.

    Log axes get 1-2-5 style candidates; ``candidates`` overrides them (e.g. the batch
    sizes, then every other one). Minor ticks stay, unlabelled, for the grid.
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    log = axis.get_scale() == "log"
    renderer = ax.figure.canvas.get_renderer()
    prop = FontProperties(size=axis.get_majorticklabels()[0].get_fontsize()
                          if axis.get_majorticklabels() else 10)
    length = ax.bbox.width if which == "x" else ax.bbox.height
    options = [list(c) for c in (candidates or _log_candidates(lo, hi)) if c]
    # Too short a range for round numbers: two ticks with two significant digits.
    chosen = [float(f"{lo + (hi - lo) * q:.2g}") for q in (0.2, 0.8)]
    for ticks in options:
        ticks = [t for t in ticks if lo <= t <= hi]
        extents = [renderer.get_text_width_height_descent(f"{t:g}", prop, ismath=False)
                   for t in ticks]
        sizes = [e[0] if which == "x" else e[1] for e in extents]
        if 2 <= len(ticks) <= MAX_TICKS and _spaced(ticks, sizes, lo, hi, length, log):
            chosen = ticks
            break
    axis.set_major_locator(FixedLocator(chosen))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
    (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)


def _boxes_overlap(a: list[float], b: list[float], pad: float) -> bool:
    # Side by side needs a wider gap than one above the other to read as two labels.
    return (a[0] < b[2] + 3 * pad and b[0] < a[2] + 3 * pad
            and a[1] < b[3] + pad and b[1] < a[3] + pad)


def _repel(boxes: list[list[float]], lo: float, hi: float, pad: float = 2.0) -> None:
    """Move overlapping boxes ``[x0, y0, x1, y1]`` apart vertically, within ``[lo, hi]``.

    Deterministic: pairs are visited in a fixed order and each overlap is split evenly
    between the two boxes, until none overlaps (or a bounded number of passes).
    """
    for _ in range(200):
        moved = False
        order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], i))
        for n, i in enumerate(order):
            for j in order[n + 1:]:
                a, b = boxes[i], boxes[j]
                if not _boxes_overlap(a, b, pad):
                    continue
                push = (a[3] + pad - b[1]) / 2 + 0.5  # a is the lower box
                for box, dy in ((a, -push), (b, push)):
                    box[1] += dy
                    box[3] += dy
                moved = True
        for box in boxes:  # keep every label inside the axes
            shift = max(lo - box[1], 0) - max(box[3] - hi, 0)
            box[1] += shift
            box[3] += shift
        if not moved:
            return


def spread_labels(ax: Any, points: Sequence[tuple[str, float, float]], *,
                  size: int = LABEL_SIZE) -> None:
    """Label data points without labels touching; a thin line joins a moved label to its point.

    Call once the figure's layout is frozen: positions are worked out in pixels.
    """
    if not points:
        return
    renderer = ax.figure.canvas.get_renderer()
    to_px, to_data = ax.transData, ax.transData.inverted()
    gap = 4 * ax.figure.dpi / 72  # 4 points right of the marker
    boxes, anchors = [], []
    for text, x, y in points:
        px, py = to_px.transform((x, y))
        probe = ax.text(0, 0, text, fontsize=size)
        ext = probe.get_window_extent(renderer)
        probe.remove()
        # Right of the point, or left of it where the right would leave the axes.
        x0 = px + gap if px + gap + ext.width <= ax.bbox.x1 else px - gap - ext.width
        boxes.append([x0, py - ext.height / 2, x0 + ext.width, py + ext.height / 2])
        anchors.append((px, py))
    _repel(boxes, ax.bbox.y0, ax.bbox.y1)
    for (text, x, y), box, (px, py) in zip(points, boxes, anchors):
        moved = abs((box[1] + box[3]) / 2 - py) > 1
        # A pale box keeps a label readable where it lies over other points' markers.
        ax.annotate(text, (x, y), xytext=to_data.transform((box[0], (box[1] + box[3]) / 2)),
                    textcoords="data", fontsize=size, va="center", ha="left",
                    bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none",
                          "alpha": 0.6},
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5",
                                "shrinkA": 0, "shrinkB": 2} if moved else None)


def freeze_layout(fig: Any) -> None:
    """Lay the figure out once (constrained layout), then keep every axes where it is."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


# -- latency vs FLOPs ------------------------------------------------------------------------

def _best_per_model(rows: Sequence[Row]) -> dict[str, Row]:
    best: dict[str, Row] = {}
    for r in rows:
        if r["model"] not in best or r["median_ms"] < best[r["model"]]["median_ms"]:
            best[r["model"]] = r
    return best


def _flops_panel(ax: Any, rows: list[Row], batch: int, peak: float | None,
                 runtimes: list[str]) -> None:
    pts = [r for r in _measured(rows, batch) if r["gflops"]]
    for i, runtime in enumerate(runtimes):
        mine = [r for r in pts if r["runtime"] == runtime]
        if mine:
            ax.scatter([r["gflops"] * batch for r in mine], [r["median_ms"] for r in mine],
                       s=28, alpha=0.8, **style(i))
    xs = [r["gflops"] * batch for r in pts]
    if peak and xs:
        lo, hi = min(xs) / 1.5, max(xs) * 1.5
        ax.plot([lo, hi], [lo / peak * 1e3, hi / peak * 1e3], "k--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"GFLOPs (2/MAC) per call, batch {batch}")
    ax.set_ylabel("median latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    if not pts:
        ax.text(0.5, 0.5, "no measured rows", ha="center", transform=ax.transAxes)


def _legend_handles(runtimes: list[str], peak: float | None) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", label=rt, **style(i)) for i, rt in enumerate(runtimes)]
    if peak:
        handles.append(Line2D([], [], color="k", ls="--", lw=1,
                              label=f"at measured peak ({peak:.0f} GFLOP/s)"))
    return handles


def save(fig: Any, path: Path) -> Path:
    from zoo.atomic import save_figure

    try:
        return save_figure(fig, path, dpi=DPI)
    finally:
        _pyplot().close(fig)


def write_plot(run: "RawRun", rows: list[Row], path: Path) -> Path:
    return save(flops_figure(run, rows), path)


def flops_figure(run: "RawRun", rows: list[Row]) -> Any:
    """Latency against FLOPs, one panel per batch size (three to a row); the fastest
    runtime's point of every model is labelled."""
    plt = _pyplot()
    batches = sorted({r["batch_size"] for r in rows}) or [1]
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    peak = run.peak.gflops_per_s if run.peak else None
    ncols = min(len(batches), 3)
    nrows = math.ceil(len(batches) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols + 1.5, 5 * nrows + 1),
                             squeeze=False, layout="constrained", dpi=DPI)
    panels = list(zip(axes.flat, batches))
    for ax, batch in panels:
        _flops_panel(ax, rows, batch, peak, runtimes)
    for ax in axes.flat[len(batches):]:
        ax.set_visible(False)
    # Below the panels: beside them it would share the top edge with the title.
    fig.legend(handles=_legend_handles(runtimes, peak), loc="outside lower center",
               ncol=min(len(runtimes) + 1, 5), fontsize=7)
    fit_suptitle(fig, _title(run, rows, "Latency vs FLOPs"))
    freeze_layout(fig)
    for ax, batch in panels:
        set_ticks(ax, "x")
        set_ticks(ax, "y")
        best = _best_per_model([r for r in _measured(rows, batch) if r["gflops"]])
        spread_labels(ax, [(m, r["gflops"] * batch, r["median_ms"]) for m, r in best.items()])
    return fig


# -- batch sweep -------------------------------------------------------------------------------

def images_per_s(row: Row) -> float:
    return row["batch_size"] / (row["median_ms"] / 1e3)


def _sweep_panels(lat: Any, ips: Any, rows: list[Row], model: str, runtimes: list[str]) -> None:
    for i, runtime in enumerate(runtimes):
        mine = sorted((r for r in rows if r["model"] == model and r["runtime"] == runtime),
                      key=lambda r: r["batch_size"])
        if mine:
            xs = [r["batch_size"] for r in mine]
            lat.plot(xs, [r["median_ms"] for r in mine], ms=4, lw=1, **style(i))
            ips.plot(xs, [images_per_s(r) for r in mine], ms=4, lw=1, **style(i))
    for ax, label in ((lat, "median latency (ms)"), (ips, "images/s")):
        ax.set_xscale("log", base=2)
        ax.set_title(f"{model}: {label.split(' (')[0]}", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlabel("batch size", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.tick_params(labelsize=7)
    lat.set_yscale("log")
    ips.set_ylim(bottom=0)


def _batch_candidates(batches: list[int]) -> list[list[float]]:
    return [[float(b) for b in batches[::step]] for step in (1, 2, 3, 4, 8, 16)]


def write_batch_plot(run: "RawRun", rows: list[Row], path: Path) -> Path | None:
    """``path`` for a batch sweep; None (and no file) for a run with one batch size."""
    fig = batch_figure(run, rows)
    return save(fig, path) if fig else None


def batch_figure(run: "RawRun", rows: list[Row]) -> Any | None:
    """Latency and images/s against batch size per model (only for a batch sweep)."""
    batches = sorted({r["batch_size"] for r in rows})
    measured = _measured(rows)
    models = list(dict.fromkeys(r["model"] for r in measured))
    if len(batches) < 2 or not models:
        return None
    plt = _pyplot()
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    per_row = 2 if len(models) > 1 else 1  # models side by side, each a pair of panels
    n_rows = math.ceil(len(models) / per_row)
    fig, axes = plt.subplots(n_rows, 2 * per_row, figsize=(7.2 * per_row, 2.9 * n_rows + 1.3),
                             squeeze=False, layout="constrained", dpi=DPI)
    for k, model in enumerate(models):
        row, col = divmod(k, per_row)
        _sweep_panels(axes[row][2 * col], axes[row][2 * col + 1], measured, model, runtimes)
    for ax in axes.flat[2 * len(models):]:
        ax.set_visible(False)
    fig.legend(handles=_legend_handles(runtimes, None), loc="outside lower center",
               ncol=min(len(runtimes), 5), fontsize=7)
    fit_suptitle(fig, _title(run, rows, "Batch sweep"))
    freeze_layout(fig)
    for ax in axes.flat[:2 * len(models)]:
        set_ticks(ax, "x", _batch_candidates(batches))
        if ax.get_yscale() == "log":
            set_ticks(ax, "y")
    return fig
