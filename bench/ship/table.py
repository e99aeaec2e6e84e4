"""One row per runtime (format x precision) of a model: latency, size, accuracy and parity
quoted from their tables, and the recommendation drawn from them by ``RULE``.

Nothing is estimated: an input no table holds is a ``missing`` note naming the table (and
the command) that would supply it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.accuracy.records import REFERENCE
from bench.ship.sources import (INT8_PARITY, AccuracyTable, LatencyRun, ParityTable, Source,
                                Sources, model_folder)

MB = 2**20
KEEP = 0.99  # of PyTorch fp32's top-1 (MLPerf's bar for int8); of agreement for random weights
RULE = ("Recommended: the fastest row (lowest median at this thread count) that (1) was "
        f"timed without error, (2) keeps accuracy: top-1 >= {KEEP:.0%} of PyTorch fp32's on "
        f"the same photos (random weights: top-1 class equal to PyTorch fp32's on >= {KEEP:.0%}"
        " of them), and (3) passes per-layer parity on every pair from PyTorch to its format. "
        "A row missing any of these inputs is not eligible, however fast. Eligible rows whose "
        "median lies within the recommended row's IQR above it are named as ties: the timing "
        "does not separate them.")


@dataclass(frozen=True)
class Missing:
    """An input no table holds: which (latency, size, accuracy, parity), why, and what
    would supply it (``{runtimes}`` stands for the rows it is missing from)."""

    input: str
    why: str
    remedy: str = ""

    def text(self, runtimes: list[str]) -> str:
        remedy = self.remedy.format(runtimes=",".join(runtimes))
        return f"{self.input}: {self.why}" + (f" ({remedy})" if remedy else "")


@dataclass(frozen=True)
class ShipRow:
    model: str
    runtime: str
    format: str  # the artifact format, or "pytorch" for the PyTorch runtimes
    precision: str
    weights: str = ""
    median_ms: float | None = None
    iqr_ms: float | None = None
    unstable: bool | None = None
    speed: float | None = None  # the fastest fp32 row's median / this median (> 1: faster)
    size_mb: float | None = None
    size_from: str = ""  # "latency" (the run's static record) | "manifest"
    labelled: bool | None = None  # real weights: top-1 means something
    top1: float | None = None
    top1_change_pp: float | None = None  # top-1 minus PyTorch fp32's, percentage points
    relative_top1: float | None = None  # top-1 / PyTorch fp32's
    agreement: float | None = None  # top-1 class equal to PyTorch fp32's
    parity: str = ""  # reference | pass | FAIL | error | "" (not measured)
    parity_detail: str = ""  # the pairs it rests on and their results
    latency_error: str = ""
    missing: tuple[Missing, ...] = ()
    recommended: bool = False

    def ineligible(self) -> str:
        """Why ``RULE`` does not recommend this row ("" when it is eligible)."""
        if self.latency_error:
            return "timing failed"
        if self.median_ms is None:
            return "latency not measured"
        kept = self.relative_top1 if self.labelled else self.agreement
        if kept is None:
            return "accuracy not measured"
        if kept < KEEP:
            what = "top-1" if self.labelled else "agreement"
            return f"{what} {100 * kept:.1f}% of PyTorch fp32 (< {KEEP:.0%})"
        if self.parity not in ("pass", "reference"):
            return f"parity {self.parity}" if self.parity else "parity not measured"
        return ""


@dataclass(frozen=True)
class ModelShip:
    model: str
    threads: int
    rows: list[ShipRow]
    recommendation: str
    sources: tuple[Source, ...]
    weights: str = ""  # as the latency table states it, else the accuracy or parity table
    notes: tuple[str, ...] = field(default_factory=tuple)


def _runtimes() -> dict[str, Any]:
    from bench.latency.runtimes import RUNTIMES

    return RUNTIMES


def display_format(runtime: str) -> str:
    """The artifact format ``runtime`` runs; "pytorch" for the PyTorch runtimes."""
    rt = _runtimes().get(runtime)
    if rt is None:  # a runtime this version does not know: named as it is
        return runtime
    return rt.artifact or "pytorch"


def primary_runtime(fmt: str) -> str:
    """The runtime the accuracy bench and parity run ``fmt`` with (the first registered)."""
    if fmt == REFERENCE:
        return "pytorch"
    return next((n for n, rt in _runtimes().items() if rt.artifact == fmt), fmt)


def scored_format(runtime: str) -> str | None:
    """The format whose accuracy and parity apply to ``runtime``: only the runtime that
    runs it there (PyTorch eager, Keras traced); None for the others (channels_last,
    torch.compile, Keras eager compute differently)."""
    fmt = display_format(runtime)
    return fmt if primary_runtime(fmt) == runtime else None


def _order(runtime: str) -> int:
    names = list(_runtimes())
    return names.index(runtime) if runtime in names else len(names)


def _parity_formats(parity: ParityTable | None, model: str) -> list[str]:
    if parity is None:
        return []
    return [r.pair.split(" vs ")[-1] for r in parity.rows_of(model) if " vs " in r.pair]


def row_runtimes(model: str, run: LatencyRun | None, acc: AccuracyTable | None,
                 parity: ParityTable | None) -> list[str]:
    """Every runtime the run timed, and the runtime of every format scored or checked."""
    names = [r["runtime"] for r in run.rows_of(model)] if run else []
    formats = [r.format for r in acc.records_of(model)] if acc else []
    names += [primary_runtime(f) for f in [*formats, *_parity_formats(parity, model)]]
    return sorted(dict.fromkeys(names), key=_order)


def _latency_cells(row: dict[str, Any] | None, run: LatencyRun | None, model: str,
                   threads: int, fastest: float | None) -> tuple[dict[str, Any], list[Missing]]:
    cmd = f"`python -m bench --threads {threads} --models {model} --runtimes {{runtimes}}`"
    if run is None:
        return {}, [Missing("latency", f"no {threads}-thread CPU latency run timed {model}",
                            cmd)]
    if row is None:
        return {}, [Missing("latency", f"not in `{run.source.table}`", cmd)]
    if row["error"] or row["median_ms"] is None:
        return {"latency_error": row["error"] or "no samples"}, []
    median = row["median_ms"]
    return {"median_ms": median, "iqr_ms": row["iqr_ms"], "unstable": bool(row["unstable"]),
            "speed": fastest / median if fastest else None}, []


def _size_cells(fmt: str, model: str, run: LatencyRun | None, sources: Sources
                ) -> tuple[dict[str, Any], list[Missing]]:
    from bench.ship.sources import manifest_sizes

    static = run.static.get(model) if run else None
    if static and not static.error:
        n = static.state_dict_bytes if fmt == REFERENCE else static.artifact_bytes.get(fmt)
        if n:
            return {"size_mb": n / MB, "size_from": "latency"}, []
    sizes = manifest_sizes(sources.artifacts, model) if fmt != REFERENCE else None
    if sizes and fmt in sizes.bytes_by_format:
        return {"size_mb": sizes.bytes_by_format[fmt] / MB, "size_from": "manifest"}, []
    why = "no latency run recorded it" if run is None else \
        f"not in `{run.source.table}`'s static record"
    if fmt != REFERENCE:
        why += f", nor in {model_folder(sources.artifacts, model)}/manifest.json"
    return {}, [Missing("size", why)]


def _accuracy_cells(fmt: str | None, runtime: str, model: str, acc: AccuracyTable | None
                    ) -> tuple[dict[str, Any], list[Missing]]:
    cmd = f"`python -m bench accuracy --models {model}`"
    if fmt is None:
        shown = display_format(runtime)
        return {}, [Missing("accuracy and parity", f"the tables score {shown} as "
                                                   f"{primary_runtime(shown)} runs it, not "
                                                   "this runtime")]
    records = {r.format: r for r in acc.records_of(model)} if acc else {}
    rec, ref = records.get(fmt), records.get(REFERENCE)
    if rec is None or rec.error:
        if acc is None:
            return {}, [Missing("accuracy", f"no accuracy table scored {model}", cmd)]
        why = f"error in `{acc.source.table}`: {rec.error}" if rec else \
            f"not in `{acc.source.table}`"
        return {}, [Missing("accuracy", why, cmd)]
    cells: dict[str, Any] = {"labelled": rec.labelled, "agreement": rec.agreement,
                             "relative_top1": rec.relative_top1, "top1": rec.top1}
    if rec.labelled and rec.top1 is not None and ref and ref.top1 is not None:
        cells["top1_change_pp"] = 100 * (rec.top1 - ref.top1)
    return cells, []


def _chain(parity: dict[tuple[str, str], str], fmt: str) -> list[tuple[str, str]] | None:
    """The pairs from PyTorch to ``fmt`` (breadth first), None when none connects them."""
    paths: dict[str, list[tuple[str, str]]] = {REFERENCE: []}
    frontier = [REFERENCE]
    while frontier:
        nxt = []
        for ref in frontier:
            for a, b in parity:
                if a == ref and b not in paths:
                    paths[b] = [*paths[ref], (a, b)]
                    nxt.append(b)
        frontier = nxt
    return paths.get(fmt)


def _parity_cells(fmt: str | None, model: str, sources: Sources
                  ) -> tuple[dict[str, Any], list[Missing], Source | None]:
    from bench.ship.sources import int8_parity

    if fmt is None:
        return {}, [], None  # its accuracy note already says why nothing is quoted
    if fmt == REFERENCE:
        return {"parity": "reference"}, [], None
    rows = sources.parity.rows_of(model) if sources.parity else []
    if broken := next((r for r in rows if r.result == "error" and " vs " not in r.pair), None):
        return ({"parity": "error", "parity_detail": broken.error}, [],
                sources.parity.source if sources.parity else None)
    pairs = {tuple(r.pair.split(" vs ", 1)): r for r in rows if " vs " in r.pair}
    results = {k: r.result for k, r in pairs.items()}
    int8 = int8_parity(sources.artifacts, model, fmt)
    if int8:
        results[(int8.reference, fmt)] = "pass" if int8.passed else "FAIL"
    chain = _chain(results, fmt)
    if chain is None:
        return {}, [_parity_missing(fmt, model, sources)], None
    verdicts = [results[p] for p in chain]
    verdict = next((v for v in ("error", "FAIL") if v in verdicts), "pass")
    detail = "; ".join(f"{a} vs {b}: {results[(a, b)]}" for a, b in chain)
    if int8 and not int8.passed and int8.first_below:
        detail += f" (first int8 layer below the bars: {int8.first_below})"
    used = int8.source if int8 else None
    return {"parity": verdict, "parity_detail": detail}, [], used


def _parity_missing(fmt: str, model: str, sources: Sources) -> Missing:
    if fmt in INT8_PARITY:
        return Missing("parity", f"no int8 per-layer report in "
                                 f"{model_folder(sources.artifacts, model)}/parity/",
                       f"`python -m converters parity {model}` writes it")
    why = f"not in `{sources.parity.source.table}`" if sources.parity else \
        "no parity-catalog table"
    return Missing("parity", why, f"`python -m converters parity-catalog --models {model}`")


def _fastest_fp32(run: LatencyRun | None, model: str) -> float | None:
    medians = [r["median_ms"] for r in (run.rows_of(model) if run else [])
               if r["precision"] == "fp32" and not r["error"] and r["median_ms"] is not None]
    return min(medians) if medians else None


def build_row(model: str, runtime: str, sources: Sources) -> tuple[ShipRow, list[Source]]:
    """One runtime's row, and the sources beyond the model's latency/accuracy/parity
    tables that it quotes (manifest sizes, int8 parity)."""
    run, acc = sources.latency_for(model), sources.accuracy_for(model)
    latency = {r["runtime"]: r for r in run.rows_of(model)} if run else {}
    fmt, scored = display_format(runtime), scored_format(runtime)
    lat, missing = _latency_cells(latency.get(runtime), run, model, sources.threads,
                                  _fastest_fp32(run, model))
    size, size_missing = _size_cells(fmt, model, run, sources)
    accuracy, acc_missing = _accuracy_cells(scored, runtime, model, acc)
    parity, parity_missing, extra = _parity_cells(scored, model, sources)
    rec = latency.get(runtime)
    precision = rec["precision"] if rec else _precision(fmt)
    row = ShipRow(model, runtime, fmt, precision, weights=rec["weights"] if rec else "",
                  **lat, **size, **accuracy, **parity,
                  missing=(*missing, *size_missing, *acc_missing, *parity_missing))
    used = [extra] if extra else []
    if row.size_from == "manifest":
        from bench.ship.sources import manifest_sizes

        sizes = manifest_sizes(sources.artifacts, model)
        used += [sizes.source] if sizes else []
    return row, used


def _precision(fmt: str) -> str:
    from converters.formats import FORMATS

    return FORMATS[fmt].precision if fmt in FORMATS else "fp32"


def recommend(rows: list[ShipRow]) -> tuple[list[ShipRow], str]:
    """``rows`` with the ``RULE``'s pick marked, and one line saying what it is, what ties
    with it and what is faster but not eligible (and why)."""
    from dataclasses import replace

    timed = sorted((r for r in rows if r.median_ms is not None), key=lambda r: r.median_ms)
    eligible = [r for r in timed if not r.ineligible()]
    if not eligible:
        reasons: dict[str, list[str]] = {}
        for r in rows:
            reasons.setdefault(r.ineligible(), []).append(r.runtime)
        why = "; ".join(f"{k} ({', '.join(v)})" for k, v in reasons.items()) or "no rows"
        return rows, f"No recommendation: no row meets the rule: {why}."
    best = eligible[0]
    text = f"Ship **{best.runtime}** ({best.format}, {best.precision}): {_summary(best)}."
    bound = best.median_ms + (best.iqr_ms or 0.0)
    ties = [r for r in eligible[1:] if r.median_ms <= bound]
    if ties:
        text += (" Tied within its IQR: "
                 + ", ".join(f"{r.runtime} ({r.median_ms:.3g} ms)" for r in ties) + ".")
    faster = [r for r in timed if r.median_ms < best.median_ms and r.ineligible()]
    if faster:
        text += (" Faster but not eligible: "
                 + "; ".join(f"{r.runtime} ({r.median_ms:.3g} ms: {r.ineligible()})"
                             for r in faster) + ".")
    return [replace(r, recommended=r is best) for r in rows], text


def _summary(r: ShipRow) -> str:
    parts = [f"{r.median_ms:.3g} ms median (IQR {r.iqr_ms:.2g} ms"
             + (", unstable" if r.unstable else "") + ")"]
    if r.size_mb is not None:
        parts.append(f"{r.size_mb:.3g} MB")
    if r.labelled and r.top1 is not None:
        change = f", {r.top1_change_pp:+.1f} pp vs PyTorch fp32" if r.top1_change_pp is not None \
            else ""
        parts.append(f"top-1 {100 * r.top1:.1f}%{change}")
    elif r.agreement is not None:
        parts.append(f"{100 * r.agreement:.1f}% top-1 agreement with PyTorch fp32")
    parts.append(f"parity {r.parity}")
    return ", ".join(parts)


def _weights(model: str, rows: list[ShipRow], acc: AccuracyTable | None,
             parity: ParityTable | None) -> tuple[str, tuple[str, ...]]:
    """The model's weights as the tables state them, and a note when they differ."""
    labels = {"latency": sorted({r.weights for r in rows if r.weights}),
              "accuracy": sorted({r.weights for r in (acc.records_of(model) if acc else [])}),
              "parity": sorted({r.weights for r in (parity.rows_of(model) if parity else [])
                                if r.weights})}
    first = next((v[0] for v in labels.values() if v), "")
    if len({w for v in labels.values() for w in v}) <= 1:
        return first, ()
    said = "; ".join(f"{k}: {', '.join(v)}" for k, v in labels.items() if v)
    return first, (f"The tables quoted measured different weights ({said}): read the columns "
                   "of different sources as different models.",)


def model_ship(model: str, sources: Sources, *, threads: int) -> ModelShip:
    """The ship table of ``model`` from ``sources``."""
    run, acc = sources.latency_for(model), sources.accuracy_for(model)
    rows, used = [], []
    for runtime in row_runtimes(model, run, acc, sources.parity):
        row, extra = build_row(model, runtime, sources)
        rows.append(row)
        used += extra
    rows, text = recommend(rows)
    quoted = [s.source for s in (run, acc, sources.parity) if s is not None]
    sources_used = tuple(dict.fromkeys([*quoted, *used]))
    weights, notes = _weights(model, rows, acc, sources.parity)
    return ModelShip(model, threads, rows, text, sources_used, weights, notes)
