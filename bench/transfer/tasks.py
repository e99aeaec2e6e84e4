"""``bench transfer`` as ``zoo.executors`` tasks: one per model (``bench.transfer.worker`` in
a fresh process: every weights x dataset, features through the shared on-disk cache), run
one at a time, on a local process pool (``--jobs``) or a Ray cluster.

The driver gathers the records the tasks return and appends them to ``transfer.jsonl`` in
model order, each with the node it was measured on, so ``--jobs 2`` writes the rows
``--jobs 1`` does. A model whose every combination was measured before with the same
fingerprint (code, weights, the datasets' contents, options) is not run again: its records
come from the done-store under the results folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from bench.transfer.records import TransferRecord, append_missing
from zoo.executors import PYTHON, Task, TaskResult, code_digest, fingerprint
from zoo.executors.done import DONE_DIR  # under the results folder
from zoo.executors.worker import collect_result

if TYPE_CHECKING:
    from bench.transfer.datasets import TransferData
    from bench.transfer.runner import RunOptions
    from zoo.executors.base import Executor

CODE = ("zoo", "bench.transfer")  # what extracts, fits and fine-tunes
# The command's options a task's process takes as they are (``bench.transfer.cli``).
FORWARDED = ("protocol", "n_train", "n_test", "subset_seed", "resolution", "resize_mode",
             "batch_size", "workers", "threads", "device", "cache_dir", "freeze",
             "optimizer", "epochs", "lr", "backbone_lr", "train_batch_size")


def _options(args: argparse.Namespace) -> tuple[str, ...]:
    flags: list[str] = []
    for name in FORWARDED:
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return (*flags, *(("--strict",) if args.strict else ()))


def transfer_tasks(args: argparse.Namespace, opts: "RunOptions",
                   datasets: Sequence[tuple[str, "TransferData"]]) -> list[Task]:
    """One task per model over the ``datasets`` that opened (name as given, and data);
    the fingerprint covers zoo's and the transfer code, the weights, every split's
    content fingerprint and the options (not the run id)."""
    from zoo.executors.task import absolute_spec, weights_identity

    weights = [absolute_spec(w) for w in args.weights]
    common = ("--datasets", *(name for name, _ in datasets), "--weights", *weights,
              *_options(args))
    contents = [(d.name, d.source, d.train.fingerprint, d.test.fingerprint)
                for _, d in datasets]
    code, identities = code_digest(CODE), [weights_identity(w) for w in weights]
    tasks = []
    for model in args.models:
        argv = (PYTHON, "-m", "bench.transfer.worker", "--models", model, *common)
        tasks.append(Task(key=f"transfer/{model}", argv=(*argv, "--run-id", opts.run_id),
                          fingerprint=fingerprint(argv[1:], code, identities, contents),
                          collect=collect_result, data={"model": model},
                          cwd=str(Path.cwd())))
    return tasks


def gather(tasks: Sequence[Task], results: Sequence[TaskResult]
           ) -> tuple[list[TransferRecord], list[str]]:
    """(every task's records, in task order, with the node it ran on; one line per failed
    combination, or per task that returned nothing)."""
    records: list[TransferRecord] = []
    failures: list[str] = []
    for task, result in zip(tasks, results):
        returned = [r for r in result.records if r.get("type") == "record"]
        records += [TransferRecord.from_json({**r, "node": result.node.name}) for r in returned]
        failures += [r["error"] for r in result.records if r.get("type") == "error"]
        if not result.records:
            failures.append(f"{task.data['model']}: {result.error or 'task ' + result.status}")
    return records, failures


def run_transfer(tasks: Sequence[Task], raw: Path, executor: "Executor | None" = None, *,
                 show: bool = True, env: tuple[str, dict[str, Any]] | None = None
                 ) -> tuple[list[TransferRecord], list[str]]:
    """Run the tasks (default: one local process at a time) and append their records to
    ``raw`` in task order, also those gathered before an interrupt, after this run's
    ``env`` line (run id, environment) when there is any; (records, failures)."""
    from zoo.executors.driver import run_tasks

    got: dict[str, TaskResult] = {}
    try:
        run_tasks(executor, tasks, done_root=raw.parent / DONE_DIR, title="transfer",
                  show=show, on_result=lambda r: got.__setitem__(r.key, r))
    finally:
        finished = [t for t in tasks if t.key in got]
        records, failures = gather(finished, [got[t.key] for t in finished])
        append_missing(raw, records, env)
    return records, failures
