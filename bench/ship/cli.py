"""``python -m bench ship``: which runtime to ship each model in, and what it costs.

One table per model, one row per runtime (format x precision): median latency and IQR at
``--threads`` (default 1) from the newest CPU latency run that timed the model, speed
against the fastest fp32 runtime, size on disk, top-1 and its change against PyTorch fp32
(top-1 agreement for random weights) from the accuracy table, and the per-layer parity
verdict from ``parity-catalog`` (int8 ONNX: its own int8 report under ``--artifacts``). A
one-line recommendation per model follows a stated rule. Inputs no table holds are
"not measured", with the command that would measure them.

Sources are read from ``--sources`` (default: the folder it writes to); it writes
``ship-cpu-<N>t.{csv,md}``. Commands that regenerate a source table (``bench``,
``bench report``, ``bench accuracy``) rebuild the ship tables in the same folder;
``--check`` says whether those on disk are what their sources give now (the parity
catalog is written by ``converters``, which cannot call back into ``bench``).
Exit status: 0 written (``--check``: current); 1 ``--check``: stale; 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.cli import add_models_argument, add_results_argument, expand_models, results_dir
from zoo.exits import ExitCode, require_writable_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_models_argument(p, default="every model in the latency and accuracy sources")
    p.add_argument("--sources", type=Path, metavar="DIR",
                   help="results folder to read (default: the folder written to)")
    p.add_argument("--threads", type=int, default=1,
                   help="the latency runs to quote: those timed with this many threads "
                        "(default 1)")
    p.add_argument("--latency", metavar="STEM",
                   help="quote this latency run only (e.g. latency-cpu-1t-amd-epyc-int8); "
                        "default: per model, the newest run that timed it")
    p.add_argument("--accuracy", metavar="STEM",
                   help="quote this accuracy table only (default: per model, the newest)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="artifact root: manifests (sizes the latency run lacks) and int8 "
                        "parity reports")
    add_results_argument(p)
    from converters.manifest import VERIFY

    p.add_argument("--verify", choices=VERIFY, default="full",
                   help="how the quoted models' artifacts are checked against their manifests "
                        "(full, the default: every sha256; fast: size and mtime first); a "
                        "file that changed since it was measured is refused, exit 2")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the ship tables on disk are stale")


def _refuse_changed_artifacts(artifacts: Path, models: list[str], *, full: bool) -> None:
    """``DamagedArtifactsError`` (exit 2) when an artifact of a quoted model no longer
    matches its manifest: the latency, accuracy and parity rows were measured on other
    bytes. Models with no artifact folder here are quoted from the tables alone."""
    from bench.ship.sources import model_folder
    from converters.manifest import act_on_damage, folder_damage

    for model in models:
        act_on_damage(folder_damage(model_folder(artifacts, model), full=full), "refuse",
                      log=print, remedy="convert the model again, then rerun `bench` and "
                      "`bench accuracy`: their rows are of the files that were measured")


def _models(args: argparse.Namespace, sources) -> list[str]:
    """``--models``; else, to ``--check`` a table, the models it holds; else every model
    the sources have."""
    if args.models:
        return expand_models(args.models, [])
    from bench.ship.report import models_in, ship_files

    written = ship_files(results_dir(args), threads=args.threads).csv
    return (models_in(written) if args.check and written.is_file() else []) or sources.models()


def run(args: argparse.Namespace) -> int:
    from bench.ship.report import build, ship_files, stale_lines, write
    from bench.ship.sources import load_sources

    out = results_dir(args)
    folder = args.sources or out
    if args.threads < 1:
        raise ValueError(f"--threads must be positive, got {args.threads}")
    if not folder.is_dir():
        raise ValueError(f"--sources {folder}: no such folder")
    sources = load_sources(folder, artifacts=args.artifacts, threads=args.threads,
                           latency=args.latency, accuracy=args.accuracy)
    models = _models(args, sources)
    if not models:
        raise ValueError(f"{folder}: no {args.threads}-thread CPU latency run and no "
                         "accuracy records under raw/ (`python -m bench --threads 1`, "
                         "`python -m bench accuracy`)")
    _refuse_changed_artifacts(args.artifacts, models, full=args.verify == "full")
    if not args.check:
        require_writable_dir(out, "--results")
    ships = build(sources, models, threads=args.threads)
    files = ship_files(out, threads=args.threads)
    if args.check:
        stale = stale_lines(ships, files, folder, threads=args.threads)
        for line in stale:
            print(f"stale: {line}", file=sys.stderr)
        return ExitCode.CHECKS_FAILED if stale else ExitCode.OK
    write(ships, files, folder, threads=args.threads)
    for ship in ships:
        print(f"{ship.model}: {ship.recommendation.replace('**', '')}")
    print(f"wrote {files.csv}, {files.markdown}", file=sys.stderr)
    return ExitCode.OK


def rebuild(folder: Path, *, artifacts: Path = Path("artifacts")) -> list[Path]:
    """Rebuild the ship tables in ``folder`` from its sources: the 1-thread table, and one
    per thread count already written there. [] when the folder has no sources for it."""
    from bench.ship.report import build, ship_files, write
    from bench.ship.sources import load_sources

    written: list[Path] = []
    for n in sorted({1} | _written_threads(folder)):
        sources = load_sources(folder, artifacts=artifacts, threads=n)
        models = sources.models()
        if models:
            files = write(build(sources, models, threads=n), ship_files(folder, threads=n),
                          folder, threads=n)
            written += [files.csv, files.markdown]
    return written


def _written_threads(folder: Path) -> set[int]:
    """The thread counts of the ``ship-cpu-<N>t.csv`` files in ``folder``."""
    out = set()
    for path in folder.glob("ship-cpu-*t.csv"):
        tail = path.stem.rsplit("-", 1)[-1][:-1]
        if tail.isdigit():
            out.add(int(tail))
    return out
