"""``bench accuracy`` as ``zoo.executors`` tasks: one per model (``bench.accuracy.worker`` in
a fresh process: convert if needed, score every format), run one at a time, on a local
process pool (``--jobs``) or a Ray cluster, and the records they return to the driver.

A model done before with the same fingerprint (code, weights, photos and options) is not
run again: its records come from the done-store under the results folder. Each record
carries the node it was measured on.
"""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from bench.accuracy.records import REFERENCE, AccuracyRecord
from zoo.executors import PYTHON, Task, TaskResult, code_digest, fingerprint
from zoo.executors.done import DONE_DIR  # under the results folder
from zoo.executors.worker import collect_result

if TYPE_CHECKING:
    from bench.accuracy.photos import LabelledPhotos
    from zoo.executors.base import Executor

CODE = ("zoo", "converters", "bench.accuracy", "bench.latency")  # converts and scores


def known_calibration(models: Iterable[str], root: Path, weights: str) -> frozenset[str]:
    """Digests of the photos that calibrated the int8 artifacts already under ``root`` for
    these models and weights (the default calibration set left aside: every task leaves
    it out itself). Every model is then scored on the same calibration-disjoint photos."""
    from bench.accuracy.evaluate import calibration_digests
    from bench.latency.artifacts import manifest_weights, weights_match

    manifests = []
    for model in models:
        try:
            found = manifest_weights(root / model)
        except ValueError:  # a corrupt manifest: the task converts the model again
            continue
        if found is not None and weights_match(weights, found.spec):
            manifests.append(found.manifest)
    return calibration_digests(manifests, default_set=False)


def photos_identity(photos: "LabelledPhotos") -> str:
    """The chosen photos by name, size and mtime (another file, or the same name changed,
    is another photo set)."""
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in photos.files]
    return fingerprint(photos.source, stats, photos.labels)


def accuracy_tasks(models: Sequence[str], args: argparse.Namespace, photos: "LabelledPhotos",
                   formats: tuple[str, ...] | None, exclude: frozenset[str]) -> list[Task]:
    """One task per model; its fingerprint covers zoo's, the converters' and bench's code,
    the weights (``auto`` resolved), the photos and the command line."""
    from converters.parity.catalog import weights_identity
    from zoo.executors.task import absolute_spec

    weights = absolute_spec(args.weights)
    options = ("--weights", weights, "--artifacts", str(Path(args.artifacts).absolute()),
               "--batch-size", str(args.batch_size),
               *(("--formats", ",".join(formats)) if formats else ()),
               *(("--photos", str(Path(args.photos).absolute())) if args.photos else ()),
               *(("--limit", str(args.limit)) if args.limit is not None else ()),
               *(("--threads", str(args.threads)) if args.threads else ()),
               *(("--verify", args.verify) if getattr(args, "verify", "fast") != "fast" else ()),
               *(("--exclude", *sorted(exclude)) if exclude else ()))
    code, seen = code_digest(CODE), photos_identity(photos)
    tasks = []
    for model in models:
        argv = (PYTHON, "-m", "bench.accuracy.worker", model, *options)
        tasks.append(Task(key=f"accuracy/{photos.name}/{model}", argv=argv,
                          fingerprint=fingerprint(argv[1:], code, seen,
                                                  weights_identity(model, weights)),
                          collect=collect_result, data={"model": model},
                          cwd=str(Path.cwd())))
    return tasks


def run_accuracy(tasks: Sequence[Task], results_dir: Path, executor: "Executor | None" = None,
                 *, show: bool = True) -> list[TaskResult]:
    """Every task's result, in task order, on ``executor`` (default: one local process at
    a time); tasks done before with the same fingerprint are not run again."""
    from zoo.executors.driver import run_tasks

    return run_tasks(executor, tasks, done_root=results_dir / DONE_DIR, title="accuracy",
                     show=show)


def records_of(tasks: Sequence[Task], results: Sequence[TaskResult], *, weights: str,
               photos: str) -> list[AccuracyRecord]:
    """Every model's records in model order, each with the node it ran on; a model whose
    task returned none (it could not be converted, its worker died) is one error row."""
    out: list[AccuracyRecord] = []
    for task, result in zip(tasks, results):
        node = result.node.name
        if result.records:
            out += [AccuracyRecord.from_json({**r, "node": node}) for r in result.records]
            continue
        date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        out.append(AccuracyRecord(task.data["model"], weights, False, REFERENCE, "fp32", photos,
                                  error=result.error or f"task {result.status}", date=date,
                                  node=node))
    return out
