"""Tables that quote other tables, rebuilt whenever one they quote is rewritten.

``transfer`` quotes the latency tables (a CPU latency per model), ``ship`` quotes latency,
accuracy and the parity catalog. Every command that rewrites a source table in a results
folder (``bench``, ``bench report``, ``bench accuracy``) calls ``refresh_derived`` on it
(``bench report`` through ``run_latency_report``: the ship tables read the latency report
module, so it may not call back), so no quoted figure is left stale. The parity
catalog is written by ``converters``, which may not import ``bench``: ``bench ship
--check`` finds a ship table it left behind.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zoo.exits import first_line, raise_if_exhausted


@dataclass(frozen=True)
class DerivedTable:
    name: str
    quotes: frozenset[str]  # the kinds of table it quotes: latency, accuracy, parity
    # (results folder, artifact root) -> the files rewritten ([] when it has no input)
    rebuild: Callable[[Path, Path], list[Path]]


def _transfer(folder: Path, artifacts: Path) -> list[Path]:
    from bench.transfer.report import generate

    if not (folder / "transfer.jsonl").is_file():
        return []
    files = generate(folder)
    return [files.csv, files.markdown, files.png]


def _ship(folder: Path, artifacts: Path) -> list[Path]:
    from bench.ship.cli import rebuild

    return rebuild(folder, artifacts=artifacts)


DERIVED: tuple[DerivedTable, ...] = (
    DerivedTable("transfer", frozenset({"latency"}), _transfer),
    DerivedTable("ship", frozenset({"latency", "accuracy", "parity"}), _ship),
)


def run_latency_report(args: argparse.Namespace) -> int:
    """``bench report``: each raw run's latency tables, then the tables that quote them."""
    from bench.latency import report
    from zoo.cli import results_dir
    from zoo.exits import ExitCode

    status = report.run(args)
    if status != ExitCode.OK:
        return status
    return ExitCode.PARTIAL if refresh_derived(results_dir(args), "latency") else ExitCode.OK


def refresh_derived(folder: Path, changed: str, *, artifacts: Path = Path("artifacts")
                    ) -> list[str]:
    """Rebuild every table in ``folder`` that quotes a ``changed`` table; print what was
    rewritten. ``artifacts``: the root of the manifests and int8 parity reports the ship
    tables read. Returns one error line per table that could not be rebuilt (the source
    tables are written by then and stay valid)."""
    errors = []
    for table in DERIVED:
        if changed not in table.quotes:
            continue
        try:
            for path in table.rebuild(folder, artifacts):
                print(f"{table.name}: rewrote {path}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001  a quoting table must not lose a measured run
            raise_if_exhausted(exc, memory=False)
            errors.append(f"{table.name} table not rebuilt: {first_line(exc, 500)}")
            print(f"error: {errors[-1]}", file=sys.stderr)
    return errors
