"""``python -m bench accuracy``: top-1, top-5 (95% Wilson intervals), top-1 agreement with
PyTorch fp32 and logit error of every artifact of each model, on labelled ImageNet photos.

Photos: ``--photos DIR`` (a flat folder of ``<wnid>_*.jpg`` files like the shared
imagenet-sample, or an ImageFolder of ``<wnid>/`` class folders such as a real ImageNet val
folder); default the 1000 imagenet-sample photos. Photos that calibrated an int8 artifact
(recorded by content digest in its manifest) and the default calibration set are left out,
so every row of a model is scored on the same calibration-disjoint photos.

Artifacts come from ``--artifacts/<model>/``; a model without them (or without a requested
format) is converted first. Each model is one task in its own process (``bench.accuracy.
tasks``), on this machine (``--jobs N`` at once) or a Ray cluster (``--executor ray
--address``); a re-run skips the models done with the same code, weights, photos and
options (``<results>/.done``), and every row names the node that measured it. Records go
to ``<results>/raw/accuracy-<photos>.jsonl`` (a rerun replaces the rows it measures);
``accuracy-<photos>.{csv,md,png}`` are regenerated from them. Exit status: 0 every row
measured; 2 bad input; 3 some rows errored (a model that cannot be converted is one).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.cli import add_models_argument, add_results_argument, expand_models, results_dir
from zoo.executors.cli import add_executor_arguments
from zoo.exits import ExitCode, require_writable_dir

if TYPE_CHECKING:
    from bench.accuracy.records import AccuracyRecord
    from converters.manifest import Manifest

DEFAULT_MODELS = ("mobilenet_v2",)  # the catalog model with real ImageNet weights offline


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_models_argument(p, default=", ".join(DEFAULT_MODELS))
    p.add_argument("--formats", nargs="+", metavar="FORMAT",
                   help="artifact formats to score, space- or comma-separated (default: every "
                        "artifact in the model's manifest; PyTorch fp32 is always the "
                        "reference row)")
    p.add_argument("--weights", default="auto",
                   help="auto (ImageNet where available offline, else random) | imagenet | "
                        "random[:SEED]")
    p.add_argument("--photos", type=Path,
                   help="labelled photos (default: the shared imagenet-sample folder)")
    p.add_argument("--limit", type=int, help="score only this many photos, evenly spaced")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--threads", type=int, help="intra-op threads per runtime (default: all)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="artifact root; missing models are converted into it")
    add_results_argument(p)
    from converters.manifest import add_verify_arguments

    add_verify_arguments(p)
    p.add_argument("--report-only", action="store_true",
                   help="only rebuild accuracy-<photos>.{csv,md,png} from the raw records")
    add_executor_arguments(p)  # one task per model


def _report_only(args: argparse.Namespace) -> int:
    from bench.accuracy.photos import imagenet_sample_dir, set_name
    from bench.accuracy.report import generate, paths

    name = set_name(args.photos or imagenet_sample_dir())
    files = generate(paths(results_dir(args), name))
    print(f"wrote {files.csv}, {files.markdown}, {files.png}", file=sys.stderr)
    from bench.derived import refresh_derived

    failed = refresh_derived(results_dir(args), "accuracy", artifacts=args.artifacts)
    return ExitCode.PARTIAL if failed else ExitCode.OK


def _csv(values: list[str] | None) -> tuple[str, ...] | None:
    out = tuple(v.strip() for item in values or [] for v in item.split(",") if v.strip())
    return out or None


def _check(args: argparse.Namespace) -> tuple[list[str], tuple[str, ...] | None]:
    from converters.formats import get_format

    models = expand_models(args.models, DEFAULT_MODELS)
    formats = _csv(args.formats)
    for f in formats or ():
        get_format(f)  # ValueError naming the known formats
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be positive, got {args.limit}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be positive, got {args.threads}")
    require_writable_dir(results_dir(args), "--results")
    require_writable_dir(args.artifacts, "--artifacts")
    from bench.accuracy.photos import labelled_photos

    labelled_photos(args.photos)  # PhotosError (a ValueError) before any conversion
    if args.on_damaged == "refuse":  # DamagedArtifactsError, exit 2, before any work
        from converters.manifest import act_on_damage, folder_damage

        for model in models:
            act_on_damage(folder_damage(args.artifacts / model, formats,
                                          full=args.verify == "full"),
                          "refuse", log=print, remedy="rerun with --on-damaged reconvert")
    return models, formats


def ensure_artifacts(model: str, weights: str, root: Path, formats: tuple[str, ...] | None,
                     *, verify: str = "fast") -> tuple[Path, "Manifest", str]:
    """``root/<model>``, its manifest, and what a convert could not make and why ("" when
    nothing was dropped): converted first when it lacks these weights or ``formats``
    (default: what its manifest lists, or what a plain convert makes), or differs from its
    manifest (one line per damaged file; every sha256 with ``verify="full"``)."""
    from bench.latency.artifacts import (convert_what_converts, manifest_weights,
                                         resolve_weights, weights_match)
    from converters.formats import default_formats
    from converters.manifest import folder_damage, load_manifest

    folder = root / model
    try:
        found = manifest_weights(folder)
    except ValueError:
        found = None
    wanted = formats or (found.formats if found else default_formats())
    damage = folder_damage(folder, wanted, full=verify == "full")
    for d in damage:
        print(f"{d}: reconverting", file=sys.stderr)
    if found and weights_match(weights, found.spec) and set(wanted) <= set(found.formats) \
            and not damage:
        return folder, found.manifest, ""
    spec, label = resolve_weights(model, weights)
    if found and weights_match(weights, found.spec):  # keep what the folder already has
        wanted = (*wanted, *(f for f in found.formats if f not in wanted))
    print(f"{model}: converting ({label}) into {folder}", file=sys.stderr)
    _, note = convert_what_converts(model, spec, root, tuple(wanted))
    if note:
        print(f"{model}: {note}", file=sys.stderr)
    return folder, load_manifest(folder), note


def run(args: argparse.Namespace) -> int:
    from bench.accuracy.photos import labelled_photos

    if args.report_only:
        return _report_only(args)
    models, formats = _check(args)  # bad input: one line and exit 2 (zoo.exits.exit_for)
    from bench.accuracy.evaluate import calibration_digests
    from bench.accuracy.tasks import known_calibration

    # Photos that calibrated an artifact already there (each task also leaves out the
    # default calibration set and its own model's): every model scores the same photos.
    known = known_calibration(models, args.artifacts.resolve(), args.weights)
    photos = labelled_photos(args.photos, limit=args.limit,
                             exclude=known | calibration_digests(()))
    if photos.unreadable:
        print(f"warning: {len(photos.unreadable)} unreadable photos skipped: "
              + "; ".join(photos.unreadable[:3]), file=sys.stderr)
    return _measure(args, *_score(args, models, photos, formats, known), photos)


def _score(args: argparse.Namespace, models: list[str], photos, formats, known
           ) -> tuple[list["AccuracyRecord"], int | None]:
    """Every model's records, each model a task on the executor ``args`` ask for, and the
    threads each task had (None: every core)."""
    from bench.accuracy.tasks import accuracy_tasks, records_of, run_accuracy
    from zoo.executors.cli import executor_from

    tasks = accuracy_tasks(models, args, photos, formats, known)
    with executor_from(args) as executor:  # Ray missing, or no cluster: one line, exit 2
        results = run_accuracy(tasks, results_dir(args), executor)
        threads = args.threads or executor.threads
    return records_of(tasks, results, weights=args.weights, photos=photos.name), threads


def photos_text(photos) -> str:
    left = (f", {photos.left_out} calibration photos left out" if photos.left_out else "")
    if photos.unreadable:
        left += (f", {len(photos.unreadable)} unreadable skipped (e.g. "
                 f"{photos.unreadable[0]})")
    return (f"{len(photos)} of the {photos.total} images in `{Path(photos.source).name}` "
            f"({photos.layout}{left})")


def _measure(args: argparse.Namespace, records: list["AccuracyRecord"], threads: int | None,
             photos) -> int:
    from bench.accuracy.records import merge, read_jsonl, write_jsonl
    from bench.accuracy.report import generate, paths
    from zoo.env import environment

    files = paths(results_dir(args), photos.name)
    env = environment(threads=threads or os.cpu_count(), weights=args.weights,
                      with_gpu=False)
    env["accuracy"] = {"photos": photos_text(photos), "command": sys.orig_argv[1:]}
    _, old = read_jsonl(files.raw)
    write_jsonl(files.raw, env, merge(old, records))
    generate(files, photos_text(photos))
    _print_summary(records)
    print(f"wrote {files.csv}, {files.markdown}, {files.png}", file=sys.stderr)
    from bench.derived import refresh_derived

    quoting_failed = refresh_derived(results_dir(args), "accuracy",  # the ship tables
                                     artifacts=args.artifacts)
    return ExitCode.PARTIAL if any(r.error for r in records) or quoting_failed else ExitCode.OK


def _print_summary(records) -> None:
    from bench.accuracy.report import md_row

    for r in records:
        cells = md_row(r)
        print(f"{r.model:18s} {r.format:14s} {r.precision:5s} top-1 {cells[4]:22s} "
              f"agree {cells[7]:22s} {cells[11]}".rstrip())
