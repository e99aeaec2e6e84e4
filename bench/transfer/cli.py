"""``python -m bench transfer``: linear-probe or fine-tune catalog models on transfer datasets.

Every model runs with its ImageNet weights and with the seeded random-weights
control (``--weights``). Records append to ``results/transfer.jsonl``; the CSV,
Markdown and PNG views are regenerated after each run (or with ``--report-only``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.data import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "results"


def build_parser() -> argparse.ArgumentParser:
    from bench.transfer.datasets import list_datasets

    p = argparse.ArgumentParser(prog="python -m bench transfer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mobilenet_v2"], help="catalog names")
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
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    _finetune_args(p)
    p.add_argument("--report-only", action="store_true", help="regenerate tables and plot only")
    p.add_argument("--no-report", action="store_true", help="append records, skip tables")
    p.add_argument("--list-datasets", action="store_true")
    return p


def _finetune_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning (--protocol finetune)")
    g.add_argument("--freeze", default="first:12", help="all | none | first:K (stages)")
    g.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    g.add_argument("--epochs", type=int, default=1)
    g.add_argument("--lr", type=float, help="head learning rate (sgd 0.01, adamw 1e-3)")
    g.add_argument("--backbone-lr", type=float, help="backbone rate (sgd 1e-3, adamw 1e-4)")
    g.add_argument("--train-batch-size", type=int, default=32)


def _options(args: argparse.Namespace, run_id: str):
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


def _open(name: str, failures: list[str]):
    from bench.transfer.datasets import DatasetUnavailableError, open_dataset

    try:
        return open_dataset(name)
    except DatasetUnavailableError as exc:
        failures.append(str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return None


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


def _run_all(args: argparse.Namespace, opts, out: Path) -> list[str]:
    from bench.transfer.records import append_record
    from bench.transfer.runner import run_finetune, run_linear, summary
    from zoo.registry import get_entry

    failures: list[str] = []
    datasets = [d for d in (_open(n, failures) for n in args.datasets) if d is not None]
    for model in args.models:
        for weights in args.weights:
            built = None
            for data in datasets:
                if built is None or args.protocol == "finetune":  # fine-tuning edits the model
                    built = _build(model, weights, failures)
                if built is None:
                    break
                run = run_linear if args.protocol == "linear" else run_finetune
                record = run(built[0], get_entry(model), built[1], data, opts)
                append_record(out / "transfer.jsonl", record)
                print(summary(record), flush=True)
    return failures


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.list_datasets:
        return _list_datasets()
    if args.report_only:
        _report(args.out)
        return 0
    import torch

    from bench.env import environment
    from bench.transfer.records import append_env, new_run_id

    torch.set_num_threads(args.threads)
    run_id = new_run_id()
    opts = _options(args, run_id)
    append_env(args.out / "transfer.jsonl", run_id,
               environment(threads=args.threads, weights=",".join(args.weights)))
    failures = _run_all(args, opts, args.out)
    if not args.no_report:
        _report(args.out)
    if failures:
        print(f"{len(failures)} error(s), see above: those combinations did not run",
              file=sys.stderr)
    return 1 if failures else 0
