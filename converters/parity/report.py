"""Views of parity reports: JSON (the record), CSV, a terminal table, a PNG plot."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from converters.parity.run import PairReport
from zoo import atomic

CSV_COLUMNS = ("model", "weights", "reference", "test", "precision", "depth", "tensor", "module",
               "op", "shape", "max_abs", "mean_abs", "rel_l2", "cosine", "snr_db", "passed",
               "fused_with", "nonfinite", "floor_snr_db")


def pair_slug(r: PairReport) -> str:
    return f"{r.reference}_vs_{r.test}"


def report_json(r: PairReport) -> dict:
    first, worst, nonfinite = r.first_divergent, r.worst, r.first_nonfinite
    return {
        "model": r.model, "weights": r.weights, "reference": r.reference, "test": r.test,
        "precision": r.precision, "inputs": r.inputs, "passed": r.passed, "error": r.error,
        "cause": r.cause, "floor": r.floor,
        "n_onnx_tensors": r.n_sites, "n_aligned": len(r.diffs),
        "aligned_fraction": round(r.aligned_fraction, 4),
        "first_divergent": first.to_json() if first else None,
        "first_nonfinite": nonfinite.to_json() if nonfinite else None,
        "worst": worst.to_json() if worst else None,
        "tensors": [d.to_json() | {"fused_with": r.fused.get(d.name, [])} for d in r.diffs],
        "unaligned": r.unaligned,
    }


def write_reports(reports: list[PairReport], folder: Path) -> list[Path]:
    """One JSON per pair, one CSV for all pairs, one PNG; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in reports:
        path = folder / f"{pair_slug(r)}.json"
        # allow_nan=False: a bare NaN is not JSON; TensorDiff.to_json maps them to null
        atomic.write_json(path, report_json(r), indent=1, allow_nan=False)
        written.append(path)
    written.append(write_csv(reports, folder / "parity.csv"))
    written.append(plot_depth(reports, folder / "parity.png"))
    return written


def write_csv(reports: list[PairReport], path: Path) -> Path:
    with atomic.atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in reports:
            for d in r.diffs:
                w.writerow([r.model, r.weights, r.reference, r.test, r.precision, d.depth, d.name,
                            d.module, d.op, "x".join(map(str, d.shape)), f"{d.max_abs:.3e}",
                            f"{d.mean_abs:.3e}", f"{d.rel_l2:.3e}", f"{d.cosine:.8f}",
                            f"{d.snr_db:.2f}", d.passed, ";".join(r.fused.get(d.name, [])),
                            d.nonfinite,
                            "" if d.floor_snr_db is None else f"{d.floor_snr_db:.2f}"])
    return path


# Series of different pairs often coincide (SavedModel and Keras are both exact copies of
# the ONNX graph): distinct markers, hollow and shrinking, keep each one visible.
_STYLES = (("o", 7, "-"), ("s", 6, "--"), ("^", 5, "-."), ("D", 4, ":"), ("v", 3, "-"))


def plot_depth(reports: list[PairReport], path: Path) -> Path:
    """Relative L2 error of every aligned tensor against its depth in the graph, per pair,
    with each precision's pass bar and the first divergent layer named at its marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    for k, r in enumerate(reports):
        marker, size, style = _STYLES[k % len(_STYLES)]
        pts = [(d.depth, max(d.rel_l2, 1e-12)) for d in r.diffs if math.isfinite(d.rel_l2)]
        if pts:
            line, = ax.plot(*zip(*pts), marker=marker, markersize=size, markerfacecolor="none",
                            linestyle=style, linewidth=0.9, label=f"{r.reference} vs {r.test}")
            _mark_failures(ax, r, line.get_color())
    _pass_bars(ax, reports)
    ax.set_yscale("log")
    ax.set_xlabel("ONNX node index (depth)")
    ax.set_ylabel("relative L2 error  (SNR = -20 log10 of it)")
    title = reports[0].model if reports else ""
    ax.set_title(f"{title}: per-layer error ({reports[0].weights if reports else ''})")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    try:
        return atomic.save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def _pass_bars(ax, reports: list[PairReport]) -> None:
    """A horizontal line per precision at the largest error that still passes."""
    from converters.tolerance import DEFAULT_POLICY

    for precision in sorted({r.precision for r in reports}):
        snr = DEFAULT_POLICY.for_(reports[0].model, precision).tensors.min_snr_db
        ax.axhline(10 ** (-snr / 20), color="grey", linewidth=0.8, linestyle=(0, (6, 3)))
        ax.annotate(f"{precision} pass bar (SNR {snr:g} dB)", (1.0, 10 ** (-snr / 20)),
                    xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=7,
                    color="grey")


def _mark_failures(ax, r: PairReport, color: str) -> None:
    """The first divergent layer (and where NaN/Inf start) marked and named on the plot."""
    first, nonfinite = r.first_divergent, r.first_nonfinite
    for d, style, what in ((first, "--", "first divergent"), (nonfinite, ":", "non-finite from")):
        if d is None or (what == "first divergent" and d.nonfinite):
            continue
        ax.axvline(d.depth, linestyle=style, linewidth=1.0, color=color)
        ax.annotate(f"{what}: {d.module or '<top level>'} ({d.op})", (d.depth, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(-4, -4),
                    textcoords="offset points", rotation=90, ha="right", va="top",
                    fontsize=7, color=color)


def describe(d, fused: list[str], modules: dict[str, str]) -> str:
    """``features.3.squeeze (Conv)``, plus what a fused op computed with it."""
    text = f"{d.module or '<top level>'} ({d.op})"
    if fused:
        text += " fused with " + ", ".join(modules.get(f, f) for f in fused)
    return text


def first_failure_text(r: PairReport, modules: dict[str, str]) -> str:
    """The first divergent layer and, in words of their own, where NaN/Inf first appear."""
    first, nonfinite = r.first_divergent, r.first_nonfinite
    parts = []
    if first and not first.nonfinite:
        parts.append(describe(first, r.fused.get(first.name, []), modules)
                     + (f": {r.cause}" if r.cause else ""))
    if nonfinite:
        where = describe(nonfinite, r.fused.get(nonfinite.name, []), modules)
        parts.append(f"non-finite values ({nonfinite.nonfinite}) first at {where}")
    return "; ".join(parts)


def print_summary(reports: list[PairReport]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from converters.terminal import fit_left, stdout_console

    if not reports:
        return
    console = stdout_console()
    failing = any(r.error or not r.passed for r in reports)  # else no "first divergent" column
    # Module paths cut from the left (the layer's own name stays) to what an 80-column
    # terminal leaves beside pair, precision, alignment, result and SNR.
    path_width = max(16, (console.width - 47) // (2 if failing else 1))
    modules = {d.name: fit_left(f"{d.module} ({d.op})", path_width)
               for r in reports for d in r.diffs}
    table = Table(title=f"{reports[0].model}: per-layer parity ({reports[0].weights}; "
                        f"{reports[0].inputs})", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("pair", "prec", "aligned", "result", "min SNR"):
        table.add_column(col, no_wrap=True, justify="right" if col == "min SNR" else "left")
    for col in ("at layer", *(("first divergent",) if failing else ())):
        table.add_column(col, overflow="fold", ratio=1)
    for r in reports:
        table.add_row(*_summary_row(r, modules, failing, escape))
    console.print(table)
    for r in reports:
        if r.floor:
            console.print(f" {r.reference}\u2192{r.test}: {escape(r.floor)}", soft_wrap=False)


def _summary_row(r: PairReport, modules: dict[str, str], failing: bool, escape) -> list[str]:
    pair = f"{r.reference}\u2192{r.test}"
    if r.error:
        return [pair, r.precision, "-", "[red]ERROR[/red]", "-", escape(r.error[:100]),
                *(("-",) if failing else ())]
    first, worst = first_failure_text(r, modules), r.worst
    snr = ("non-finite" if worst.nonfinite else f"{worst.snr_db:.1f}") if worst else "-"
    where = modules.get(worst.name, worst.name) if worst else "-"  # the JSON says what fused
    row = [pair, r.precision, f"{len(r.diffs)}/{r.n_sites}",
           "[green]pass[/green]" if r.passed else "[red]FAIL[/red]", snr, escape(where)]
    return row + ([f"[red]{escape(first)}[/red]" if first else "-"] if failing else [])
