"""``ship-<device>-<N>t.{csv,md}``: the ship tables of many models, written together.

The output is a function of its sources alone (its date is the newest source's), so a
table rebuilt from unchanged sources is byte for byte the same: ``is_current`` compares a
fresh build with what is on disk, and says which source dates moved.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from pathlib import Path

from bench.ship.sources import Sources
from bench.ship.table import RULE, Missing, ModelShip, ShipRow, model_ship
from zoo import atomic
from zoo.tables import md_table

ROW_COLUMNS = tuple(f.name for f in fields(ShipRow))
COLUMNS = (*ROW_COLUMNS, "latency_table", "latency_date", "accuracy_table", "accuracy_date",
           "parity_table", "parity_date")


@dataclass(frozen=True)
class ShipFiles:
    csv: Path
    markdown: Path


def ship_files(folder: Path, *, threads: int, device: str = "cpu") -> ShipFiles:
    stem = f"ship-{device}-{threads}t"
    return ShipFiles(folder / f"{stem}.csv", folder / f"{stem}.md")


def build(sources: Sources, models: list[str], *, threads: int) -> list[ModelShip]:
    return [model_ship(m, sources, threads=threads) for m in models]


def _source_cells(ship: ModelShip) -> dict[str, str]:
    out = {}
    for kind in ("latency", "accuracy", "parity"):
        s = next((s for s in ship.sources if s.kind == kind), None)
        out[f"{kind}_table"], out[f"{kind}_date"] = (s.table, s.date) if s else ("", "")
    return out


def _csv_cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return v


def csv_text(ships: list[ModelShip]) -> str:
    fh = io.StringIO()
    w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for ship in ships:
        where = _source_cells(ship)
        for r in ship.rows:
            cells = {k: _csv_cell(getattr(r, k)) for k in ROW_COLUMNS}
            cells["missing"] = "; ".join(m.text([r.runtime]) for m in r.missing)
            w.writerow({**cells, **where})
    return fh.getvalue()


def _ms(r: ShipRow) -> str:
    if r.latency_error:
        return "error"
    if r.median_ms is None:
        return "not measured"
    return f"{r.median_ms:.3g}{'~' if r.unstable else ''} [{r.iqr_ms:.2g}]"


def _accuracy(r: ShipRow) -> str:
    if r.labelled and r.top1 is not None:
        change = "" if r.top1_change_pp is None else f" ({r.top1_change_pp:+.1f} pp)"
        return f"{100 * r.top1:.1f}{change}"
    if r.agreement is not None:
        return f"{100 * r.agreement:.1f}% agree"
    return "not measured"


def _cells(r: ShipRow) -> list[str]:
    return [f"**{r.runtime}**" if r.recommended else r.runtime, r.format, r.precision, _ms(r),
            "" if r.speed is None else f"{r.speed:.2f}x",
            "not measured" if r.size_mb is None else
            f"{r.size_mb:.3g}{' (manifest)' if r.size_from == 'manifest' else ''}",
            _accuracy(r), r.parity or "not measured"]


HEADERS = ("runtime", "format", "precision", "median ms [IQR]", "speed vs fastest fp32",
           "size MB", "top-1 % (change vs PyTorch fp32)", "parity")


def _model_md(ship: ModelShip) -> str:
    sources = "; ".join(f"{s.kind} `{s.table}` ({s.date or 'undated'})" for s in ship.sources)
    labelled = any(r.labelled for r in ship.rows)
    random = any(r.labelled is False for r in ship.rows)
    text = f"\n## {ship.model}\n\n"
    text += f"Weights: {ship.weights or 'not stated'}. Sources: {sources}.\n\n"
    if random and not labelled:
        text += ("Random weights: the accuracy column is top-1 agreement with PyTorch fp32 "
                 "(top-1 itself means nothing here).\n\n")
    text += "".join(f"{n}\n\n" for n in ship.notes)
    text += ship.recommendation + "\n\n" + md_table(HEADERS, [_cells(r) for r in ship.rows])
    failed = [f"- {r.runtime}: timing failed: {r.latency_error}" for r in ship.rows
              if r.latency_error]
    missing = _missing_lines(ship.rows)
    details = [f"- {r.runtime}: {r.parity_detail}" for r in ship.rows if r.parity_detail]
    if failed or missing:
        text += "\nNot measured:\n\n" + "\n".join([*failed, *missing]) + "\n"
    if details:
        text += "\nParity pairs:\n\n" + "\n".join(details) + "\n"
    return text


def _missing_lines(rows: list[ShipRow]) -> list[str]:
    """One line per missing input, with every row it is missing from."""
    grouped: dict[Missing, list[str]] = {}
    for r in rows:
        for m in r.missing:
            grouped.setdefault(m, []).append(r.runtime)
    return [f"- {', '.join(runtimes)}: {m.text(runtimes)}" for m, runtimes in grouped.items()]


def markdown_text(ships: list[ModelShip], folder: Path, *, threads: int) -> str:
    from zoo.env import GENERATED

    used = sorted({s for ship in ships for s in ship.sources}, key=lambda s: (s.kind, s.table))
    date = max((s.date for s in used), default="") or "undated"
    text = (f"# What to ship: CPU latency ({threads} thread{'s' if threads > 1 else ''}), "
            "size, accuracy and parity per model\n\n"
            f"{GENERATED.format(date=date)}\n\n"
            "Quoted from the tables below (its date is the newest of theirs), never measured "
            "itself; `bench`, `bench report` and `bench accuracy` rebuild the ship tables of "
            "the folder whose tables they rewrite (`bench ship --check` finds a stale one)."
            "\n\n")
    text += md_table(("source", "table", "date"), [(s.kind, f"`{s.table}`", s.date or "undated")
                                                   for s in used])
    text += (f"\nSources from `{folder}`. Latency: the newest {threads}-thread CPU run that timed "
             "the model (one run per model, so speeds compare like with like), batch 1, "
             "median and [IQR] in ms, `~` when IQR/median > 10%; *speed vs fastest fp32* is "
             "the fastest fp32 runtime's median over this row's. Size: the artifact file (a "
             "SavedModel folder in full; PyTorch: its state dict), from the latency run's "
             "static record, else the artifact manifest. Top-1 on the accuracy table's photos "
             "and its change in percentage points against PyTorch fp32 on the same photos. "
             "Parity: per-layer parity of every pair from PyTorch to the format "
             "(`parity-catalog`; int8 ONNX: its own int8 report), `reference` for PyTorch "
             "itself. Accuracy and parity quote the runtime that runs a format there "
             "(PyTorch eager, Keras traced), not channels_last, torch.compile or Keras "
             "eager.\n\n" + RULE + "\n")
    return text + "".join(_model_md(s) for s in ships)


def write(ships: list[ModelShip], files: ShipFiles, folder: Path, *, threads: int
          ) -> ShipFiles:
    """Both files, each written whole (temporary file, then renamed)."""
    files.csv.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((files.csv, csv_text(ships)),
                       (files.markdown, markdown_text(ships, folder, threads=threads))):
        atomic.write_text(path, text)
    return files


def models_in(path: Path) -> list[str]:
    """The models an on-disk ship CSV holds, in its order."""
    with path.open(newline="") as fh:
        return list(dict.fromkeys(r["model"] for r in csv.DictReader(fh)))


def _quoted(path: Path) -> set[tuple[str, str, str]]:
    """(kind, table, date) of every source an on-disk ship CSV quotes."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {(k, r[f"{k}_table"], r[f"{k}_date"]) for r in rows
            for k in ("latency", "accuracy", "parity") if r.get(f"{k}_table")}


def stale_lines(ships: list[ModelShip], files: ShipFiles, folder: Path, *, threads: int
                ) -> list[str]:
    """Why the ship files on disk are not what their sources give now ([] when they are)."""
    if not files.csv.is_file() or not files.markdown.is_file():
        return [f"{files.csv.name}: not written yet"]
    fresh_csv = csv_text(ships)
    fresh_md = markdown_text(ships, folder, threads=threads)
    if files.csv.read_text() == fresh_csv and files.markdown.read_text() == fresh_md:
        return []
    now = {(s.kind, s.table, s.date) for ship in ships for s in ship.sources
           if s.kind in ("latency", "accuracy", "parity")}
    was = _quoted(files.csv)
    moved = [f"{files.csv.name} quotes {kind} `{table}` of {date or 'no date'}; it is now of "
             + ", ".join(d or "no date" for k, t, d in now if (k, t) == (kind, table))
             for kind, table, date in sorted(was - now)
             if any((k, t) == (kind, table) for k, t, _ in now)]
    return moved or [f"{files.csv.name} differs from what its sources give now"]

