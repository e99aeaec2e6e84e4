"""The tables a ship table quotes, read back typed, each with the date its header states.

Latency and accuracy are read from their raw records (``raw/<stem>.jsonl``: the rows of
``<stem>.csv`` are ``table_rows`` of them, and the environment header carries the date);
the parity catalog has no raw file, so its CSV is read and its date taken from the header
of its Markdown. Sizes come from the latency run's static record, else the model's
artifact manifest; int8 per-layer parity from ``<artifacts>/<model>/parity/``.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.accuracy.records import AccuracyRecord, read_jsonl
from bench.latency.records import StaticRecord

PARITY_TABLE = "parity-catalog"
# int8 format -> (the fp32 format its per-layer report compares it with, the report's file,
# which converters.parity.int8.int8_parity_of writes); tflite_int8_io has tflite_int8's layers
INT8_PARITY = {"onnx_int8": ("onnx", "onnx_vs_onnx_int8.json"),
               "tflite_int8": ("tflite_fp32", "tflite_fp32_vs_tflite_int8.json"),
               "tflite_int8_io": ("tflite_fp32", "tflite_fp32_vs_tflite_int8.json")}


@dataclass(frozen=True)
class Source:
    """One table quoted: ``kind`` (latency, accuracy, parity, int8 parity, manifest), its
    file name, and the date its header states ("" when it states none)."""

    kind: str
    table: str
    date: str


@dataclass(frozen=True)
class LatencyRun:
    source: Source
    threads: int
    rows: list[dict[str, Any]]  # batch-1 rows of its CSV (``bench.latency.report.table_rows``)
    static: dict[str, StaticRecord]

    def rows_of(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["model"] == model]


@dataclass(frozen=True)
class AccuracyTable:
    source: Source
    records: list[AccuracyRecord]

    def records_of(self, model: str) -> list[AccuracyRecord]:
        return [r for r in self.records if r.model == model]


@dataclass(frozen=True)
class ParityRow:
    model: str
    weights: str
    pair: str  # "pytorch vs onnx"
    result: str  # pass | FAIL | error
    error: str = ""


@dataclass(frozen=True)
class ParityTable:
    source: Source
    rows: list[ParityRow] = field(default_factory=list)

    def rows_of(self, model: str) -> list[ParityRow]:
        return [r for r in self.rows if r.model == model]


def _env_line(raw: Path) -> dict[str, Any]:
    """The environment header of a latency raw file: its first line."""
    with raw.open() as fh:
        first = json.loads(fh.readline() or "{}")
    return first if first.get("type") == "env" else {}


def latency_runs(folder: Path, *, threads: int, device: str = "cpu") -> list[LatencyRun]:
    """Every latency run under ``folder/raw`` measured on ``device`` with ``threads``
    threads, newest first."""
    from bench.latency.records import load_raw
    from bench.latency.report import table_rows

    runs = []
    for raw in sorted((folder / "raw").glob(f"latency-{device}-*.jsonl")):
        env = _env_line(raw)
        if env.get("threads") != threads or env.get("bench", {}).get("device") != device:
            continue
        run = load_raw(raw)
        rows = [r for r in table_rows(run) if r["batch_size"] == 1 and r["threads"] == threads]
        runs.append(LatencyRun(Source("latency", f"{raw.stem}.csv", str(env.get("date", ""))),
                               threads, rows, run.static))
    return sorted(runs, key=lambda r: (r.source.date, r.source.table), reverse=True)


def accuracy_tables(folder: Path) -> list[AccuracyTable]:
    """Every accuracy table under ``folder/raw`` (one per photo set), newest first."""
    tables = []
    for raw in sorted((folder / "raw").glob("accuracy-*.jsonl")):
        env, records = read_jsonl(raw)
        if records:
            tables.append(AccuracyTable(Source("accuracy", f"{raw.stem}.csv",
                                               str(env.get("date", ""))), records))
    return sorted(tables, key=lambda t: (t.source.date, t.source.table), reverse=True)


def parity_table(folder: Path) -> ParityTable | None:
    """``parity-catalog.csv`` with the date of ``parity-catalog.md``; None without the CSV."""
    from zoo.env import generated_on

    path = folder / f"{PARITY_TABLE}.csv"
    if not path.is_file():
        return None
    md = path.with_suffix(".md")
    date = (generated_on(md.read_text()) if md.is_file() else None) or ""
    with path.open(newline="") as fh:
        rows = [ParityRow(r["model"], r.get("weights", ""), r.get("pair", ""), r["result"],
                          r.get("error", "")) for r in csv.DictReader(fh)]
    return ParityTable(Source("parity", path.name, date), rows)


def model_folder(artifacts: Path, model: str) -> Path:
    """Where ``converters convert`` puts ``model`` (the entry's folder, else its name)."""
    from zoo.registry import get_entry

    try:
        return artifacts / get_entry(model).folder
    except (KeyError, ValueError, ImportError):  # UnknownModelError is a KeyError
        return artifacts / model


def _mtime_date(path: Path) -> str:
    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return stamp.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Int8Parity:
    source: Source
    reference: str  # the fp32 format compared with ("onnx", "tflite_fp32")
    passed: bool
    first_below: str  # the first layer below the int8 bars, "" when none


def int8_parity(artifacts: Path, model: str, fmt: str) -> Int8Parity | None:
    """The per-layer parity of the model's int8 artifact ``fmt``, where it was run."""
    if fmt not in INT8_PARITY:
        return None
    reference, file = INT8_PARITY[fmt]
    path = model_folder(artifacts, model) / "parity" / file
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    first = str((data.get("first_below") or {}).get("node", "")).split(";", 1)[0]
    name = f"{model_folder(artifacts, model).name}/parity/{file}"
    return Int8Parity(Source("int8 parity", name, _mtime_date(path)), reference,
                      bool(data["passed"]), first)


@dataclass(frozen=True)
class ManifestSizes:
    source: Source
    bytes_by_format: dict[str, int]


def manifest_sizes(artifacts: Path, model: str) -> ManifestSizes | None:
    """Artifact sizes from the model's manifest; None without a readable one."""
    from converters.manifest import MANIFEST, load_manifest

    folder = model_folder(artifacts, model)
    try:
        manifest = load_manifest(folder)
    except (FileNotFoundError, ValueError):
        return None
    return ManifestSizes(Source("manifest", f"{folder.name}/{MANIFEST}", manifest.created),
                         {a.format: a.size_bytes for a in manifest.artifacts})


@dataclass(frozen=True)
class Sources:
    """Everything under one results folder (and artifact root) a ship table may quote."""

    folder: Path
    artifacts: Path
    threads: int
    latency: list[LatencyRun]
    accuracy: list[AccuracyTable]
    parity: ParityTable | None

    def models(self) -> list[str]:
        """Models with a latency row at these threads or an accuracy record, first seen first."""
        names = [r["model"] for run in self.latency for r in run.rows]
        names += [r.model for t in self.accuracy for r in t.records]
        return list(dict.fromkeys(names))

    def latency_for(self, model: str) -> LatencyRun | None:
        """The newest run that timed ``model``: its rows are never mixed with another run's,
        so speeds within one model's table compare like with like."""
        return next((run for run in self.latency if run.rows_of(model)), None)

    def accuracy_for(self, model: str) -> AccuracyTable | None:
        return next((t for t in self.accuracy if t.records_of(model)), None)


def load_sources(folder: Path, *, artifacts: Path, threads: int,
                 latency: str | None = None, accuracy: str | None = None) -> Sources:
    """``latency`` / ``accuracy``: one table's stem to use (the others are left out);
    ValueError when no such table exists."""
    runs = latency_runs(folder, threads=threads)
    tables = accuracy_tables(folder)
    if latency:
        runs = [r for r in runs if r.source.table == f"{Path(latency).stem}.csv"]
        if not runs:
            raise ValueError(f"--latency {latency}: no {threads}-thread CPU latency run "
                             f"{Path(latency).stem} under {folder / 'raw'}")
    if accuracy:
        tables = [t for t in tables if t.source.table == f"{Path(accuracy).stem}.csv"]
        if not tables:
            raise ValueError(f"--accuracy {accuracy}: no accuracy records "
                             f"{Path(accuracy).stem} under {folder / 'raw'}")
    return Sources(folder, artifacts, threads, runs, tables, parity_table(folder))
