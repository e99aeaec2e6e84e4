"""``python -m bench transfer``: linear-probe or fine-tune catalog models on transfer datasets.

Every model runs with its ImageNet weights and with the seeded random-weights
control (``--weights``). Each model is one task in its own process (``bench.transfer.
tasks``), on this machine (``--jobs N`` at once) or a Ray cluster (``--executor ray
--address``); a re-run skips the models whose every combination was measured with the
same code, weights, dataset contents and options (``<out>/.done``). Records append to
``results/transfer.jsonl`` in model order, each naming the node that measured it; the
CSV, Markdown and PNG views are regenerated after each run (or with ``--report-only``).

Image files that do not decode are skipped and named (``--strict`` stops instead).
Exit status (``zoo.exits``): 0 all ran; 2 bad input (dataset, image, labels, model
or weights) and nothing ran; 3 some combinations ran and some failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.cli import add_models_argument, add_results_argument, expand_models, results_dir
from zoo.executors.cli import add_executor_arguments
from zoo.exits import ExitCode

if TYPE_CHECKING:
    from bench.transfer.datasets import TransferData
    from bench.transfer.records import TransferRecord
    from bench.transfer.runner import RunOptions

def add_arguments(p: argparse.ArgumentParser) -> None:
    from bench.transfer.datasets import list_datasets

    add_models_argument(p, default="mobilenet_v2")
    p.add_argument("--datasets", nargs="+", default=["cifar10"],
                   help=f"{', '.join(list_datasets())}, or folders with train/ and test/")
    p.add_argument("--protocol", choices=("linear", "finetune"), default="linear")
    p.add_argument("--weights", nargs="+", default=["imagenet", "random"],
                   help="weights specs; the random control is on by default")
    p.add_argument("--n-train", type=int, help="seeded subset of train (default: all)")
    p.add_argument("--n-test", type=int, help="seeded subset of test (default: all)")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--resolution", type=int, help="input size (default: the model's crop size)")
    p.add_argument("--resize-mode", choices=("resize", "crop"),
                   help="resize whole image, or resize+centre-crop (default: per dataset)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", type=Path, help="feature cache (default .cache/features)")
    add_results_argument(p, "--out")
    p.add_argument("--strict", action="store_true",
                   help="fail on the first unreadable image file instead of skipping it")
    _finetune_args(p)
    p.add_argument("--report-only", action="store_true", help="regenerate tables and plot only")
    p.add_argument("--no-report", action="store_true", help="append records, skip tables")
    p.add_argument("--list-datasets", action="store_true")
    add_executor_arguments(p)  # one task per model


def _finetune_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning (--protocol finetune)")
    g.add_argument("--freeze", default="first:12", help="all | none | first:K (stages)")
    g.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    g.add_argument("--epochs", type=int, default=1)
    g.add_argument("--lr", type=float, help="head learning rate (sgd 0.01, adamw 1e-3)")
    g.add_argument("--backbone-lr", type=float, help="backbone rate (sgd 1e-3, adamw 1e-4)")
    g.add_argument("--train-batch-size", type=int, default=32)


def run_options(args: argparse.Namespace, run_id: str):
    from bench.transfer.cache import default_cache_dir
    from bench.transfer.finetune import FinetuneConfig
    from bench.transfer.runner import RunOptions

    cfg = FinetuneConfig(freeze=args.freeze, optimizer=args.optimizer, epochs=args.epochs,
                         lr=args.lr, backbone_lr=args.backbone_lr,
                         batch_size=args.train_batch_size, seed=args.subset_seed)
    return RunOptions(cache_dir=args.cache_dir or default_cache_dir(), n_train=args.n_train,
                      n_test=args.n_test, subset_seed=args.subset_seed,
                      resolution=args.resolution, resize_mode=args.resize_mode,
                      batch_size=args.batch_size, workers=args.workers, device=args.device,
                      threads=args.threads, finetune=cfg, run_id=run_id)


def _list_datasets() -> int:
    from bench.transfer.datasets import REGISTRY

    for s in REGISTRY.values():
        tv = f"torchvision.datasets.{s.torchvision.cls}" if s.torchvision else "no downloader"
        print(f"{s.name:14s} {s.title:24s} {s.num_classes:4d} classes; {tv}; {s.homepage}")
    return 0


def _report(out: Path) -> None:
    from bench.transfer.report import generate

    files = generate(out)
    print(f"wrote {files.csv}, {files.markdown}, {files.png} ({files.records} records"
          f"{'' if files.latency_found else '; no CPU latency results yet'})")


def _bad_input_errors() -> tuple[type[Exception], ...]:
    """Errors that mean bad data, not a bug: reported in one line, the run goes on."""
    from bench.transfer.datasets import DatasetUnavailableError
    from bench.transfer.linear import ProbeDataError
    from bench.transfer.readers import UnreadableImageError

    return DatasetUnavailableError, ProbeDataError, UnreadableImageError


def _fail(exc: BaseException, failures: list[str]) -> None:
    from bench.transfer.readers import one_line

    failures.append(one_line(exc))
    print(f"error: {failures[-1]}", file=sys.stderr)


def open_checked(name: str, args: argparse.Namespace, opts: "RunOptions",
                 failures: list[str]) -> "TransferData | None":
    """The dataset, checked for the protocol before any model runs; None after one error line."""
    from bench.transfer.datasets import open_dataset
    from bench.transfer.runner import check_data, skipped_text

    try:
        data = open_dataset(name, strict=args.strict)
        check_data(data, opts, protocol=args.protocol)
    except _bad_input_errors() as exc:
        _fail(exc, failures)
        return None
    if data.skipped:
        print(f"warning: {data.name}: {skipped_text(data)}", file=sys.stderr, flush=True)
    return data


def _build(model: str, weights: str, failures: list[str]):
    from zoo.build import build_model
    from zoo.registry import UnknownModelError
    from zoo.weights import WeightsMismatchError, WeightsUnavailableError

    try:
        return build_model(model, weights=weights)
    except (UnknownModelError, WeightsUnavailableError, WeightsMismatchError,
            FileNotFoundError, ValueError) as exc:
        failures.append(str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return None


def run_model(model: str, args: argparse.Namespace, opts: "RunOptions",
              datasets: list["TransferData"], failures: list[str]) -> list["TransferRecord"]:
    """One model's records, every weights x dataset (a task's process runs this); a
    combination that fails adds its line to ``failures``."""
    from bench.transfer.runner import run_finetune, run_linear
    from zoo.registry import get_entry

    run = run_linear if args.protocol == "linear" else run_finetune
    records = []
    for weights in args.weights:
        built = None
        for data in datasets:
            if built is None or args.protocol == "finetune":  # fine-tuning edits the model
                built = _build(model, weights, failures)
            if built is None:
                break
            try:
                records.append(run(built[0], get_entry(model), built[1], data, opts))
            except _bad_input_errors() as exc:  # e.g. an image that fails to decode
                _fail(exc, failures)
    return records


def _run_all(args: argparse.Namespace, opts: "RunOptions", out: Path,
             env: tuple[str, dict] | None = None) -> tuple[int, list[str]]:
    """(records written, one line per failed dataset or combination): each model a task
    (its own process) on the executor ``args`` ask for."""
    from bench.transfer.runner import summary
    from bench.transfer.tasks import run_transfer, transfer_tasks
    from zoo.executors.cli import executor_from

    failures: list[str] = []
    opened = [(n, d) for n in args.datasets
              if (d := open_checked(n, args, opts, failures)) is not None]
    if not opened:
        return 0, failures
    tasks = transfer_tasks(args, opts, opened)
    with executor_from(args) as executor:  # Ray missing, or no cluster: one line, exit 2
        records, failed = run_transfer(tasks, out / "transfer.jsonl", executor, env=env)
    for record in records:
        print(summary(record), flush=True)
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return len(records), failures + failed


def _bad_options(args: argparse.Namespace) -> str:
    """Why these options cannot run, in one line, or ""."""
    from bench.transfer.cache import default_cache_dir
    from zoo.env import available_cpus
    from zoo.exits import OutputDirError, require_writable_dir

    cpus = available_cpus()
    if not 1 <= args.threads <= cpus:
        return f"--threads {args.threads}: this machine gives this process {cpus} CPU(s); use 1 to {cpus}"
    for flag in ("n_train", "n_test", "resolution", "batch_size", "epochs", "train_batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            return f"--{flag.replace('_', '-')} must be positive, got {value}"
    if args.workers < 0:
        return f"--workers must be 0 or more, got {args.workers}"
    try:
        require_writable_dir(args.out, "--out")
        require_writable_dir(args.cache_dir or default_cache_dir(), "--cache-dir")
    except OutputDirError as exc:
        return str(exc)
    return ""


def main(argv: list[str] | None = None) -> int:
    """``python -m bench transfer ...`` as a function (tests call it in-process)."""
    from bench.cli import BENCH_COMMANDS, DESCRIPTION
    from zoo.cli import run_cli

    return run_cli("python -m bench", DESCRIPTION, BENCH_COMMANDS,
                   ["transfer", *(sys.argv[1:] if argv is None else argv)])


def run(args: argparse.Namespace) -> int:
    args.out = results_dir(args)
    args.models = expand_models(args.models, ["mobilenet_v2"])
    if args.list_datasets:
        return _list_datasets()
    if args.report_only:
        _report(args.out)
        return 0
    if problem := _bad_options(args):
        print(f"error: {problem}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    from bench.transfer.records import new_run_id
    from zoo.env import environment

    run_id = new_run_id()
    opts = run_options(args, run_id)
    env = (run_id, environment(threads=args.threads, weights=",".join(args.weights)))
    written, failures = _run_all(args, opts, args.out, env)
    if not args.no_report and written:
        _report(args.out)
    if not failures:
        return ExitCode.OK
    if not written:
        return ExitCode.BAD_INPUT
    print(f"partial run: {written} record(s) written, {len(failures)} error(s) above",
          file=sys.stderr)
    return ExitCode.PARTIAL
