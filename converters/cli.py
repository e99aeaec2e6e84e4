"""The converters' commands: ``convert``, ``parity``, ``parity-catalog``, ``sweep``, ``demo``.

``convert MODEL``: PyTorch -> ONNX -> SavedModel/TFLite/Keras, agreement, per-layer parity.
``parity MODEL``: per-layer parity only (converting first when needed).
``parity-catalog``: parity for the whole catalog, tables under the results folder.
``sweep``: coverage of a whole source, by this tool and by onnx2tf alone (``converters.sweep``).
``demo``: mobilenet_v2 with real ImageNet weights; every format must see the cat.

Each is a ``zoo.cli.Command``; ``python -m converters`` and ``modelzoo`` run them.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from converters.terminal import stdout_console, terminal_status
from zoo.cli import Command, add_models_argument, add_results_argument, results_dir
from zoo.executors.cli import add_executor_arguments
from zoo.exits import ExitCode

EXIT_ERROR = ExitCode.BAD_INPUT
EXIT_DISAGREE = ExitCode.CHECKS_FAILED
DESCRIPTION = "PyTorch -> ONNX -> TF SavedModel / TFLite / Keras 3, with agreement and per-layer parity."


def _print_agreement(manifest) -> None:
    from rich.table import Table

    from converters.agreement import top1_text

    table = Table(title=f"{manifest.model}: agreement with PyTorch on "
                        f"{manifest.agreement[0].n_images if manifest.agreement else 0} photos "
                        f"({manifest.weights.label})")
    table.caption = ("max |err|: from PyTorch fp32; from fp64: from PyTorch's exact logits, "
                     "what the tolerance bounds (converters.tolerance); top-1 is checked on "
                     "the photos whose exact top-1 leads by more than twice the tolerance")
    for col in ("artifact", "prec", "max |err|", "from fp64", "tolerance", "top-1",
                "result"):
        table.add_column(col, justify="left" if col in ("artifact", "prec") else "right",
                         overflow="fold")
    for a in manifest.agreement:
        if a.error:
            table.add_row(a.artifact, a.precision, "-", "-", "-", "-",
                          f"[red]ERROR[/red] {a.error[:90]}")
            continue
        ok = "[green]pass[/green]" if a.passed else "[red]FAIL[/red]"
        table.add_row(a.artifact, a.precision, f"{a.max_abs_err:.2e}",
                      "-" if math.isnan(a.max_abs_err_exact) else f"{a.max_abs_err_exact:.2e}",
                      f"{a.tolerance:.1e}",
                      top1_text(a), ok)
    stdout_console().print(table)


def _convert(args: argparse.Namespace) -> int:
    from converters.model_args import model_of
    from converters.pipeline import ConvertOptions, convert_model
    from converters.precisions import formats_for, parse_precisions, quantize_options

    opts = ConvertOptions(weights=args.weights, out_root=Path(args.out),
                          tf_converter=args.tf_converter,
                          formats=formats_for(parse_precisions(args.precisions)),
                          int8=quantize_options(args), parity=args.parity)
    manifest = convert_model(model_of(args), opts, status=terminal_status())
    folder = Path(args.out) / manifest.entry.folder
    _print_agreement(manifest)
    for note in manifest.notes:
        print(f"note: {note}")
    print(f"artifacts: {folder}/ (manifest.json lists them)")
    status = 0
    made = {a.format for a in manifest.artifacts}
    if missing := [f for f in opts.formats if f not in made]:
        print(f"error: {manifest.model}: not made: {', '.join(missing)} (the notes say why)",
              file=sys.stderr)
        status = ExitCode.PARTIAL
    if not all(a.passed for a in manifest.agreement):
        print(f"error: {manifest.model}: some artifacts disagree with PyTorch beyond tolerance",
              file=sys.stderr)
        status = EXIT_DISAGREE
    if args.parity:
        status = max(status, _parity_of(folder))
    return status


def _parity_of(folder: Path) -> int:
    from converters.parity.report import print_summary, write_reports
    from converters.parity.run import run_parity

    reports = run_parity(folder, status=terminal_status())
    print_summary(reports)
    write_reports(reports, folder / "parity")
    print(f"parity reports: {folder / 'parity'}/ (JSON per pair, parity.csv, parity.png)")
    failed = [f"{r.reference} vs {r.test}" for r in reports if not r.passed]
    from converters.parity.int8 import int8_parity_of

    for int8 in int8_parity_of(folder):  # int8 vs fp32 of the same format
        print(int8.summary())
        if not int8.passed:
            failed.append(f"{int8.reference} vs {int8.test}")
    if failed:
        print(f"error: {folder.name}: per-layer parity fails for {', '.join(failed)}",
              file=sys.stderr)
        return EXIT_DISAGREE
    return 0


def _parity(args: argparse.Namespace) -> int:
    from converters.manifest import act_on_damage
    from converters.model_args import model_of
    from converters.pipeline import ConvertOptions, check_existing, convert_model
    from zoo.build import build_model
    from zoo.registry import get_entry

    model = model_of(args)
    entry = get_entry(model) if isinstance(model, str) else model
    folder = Path(args.out) / entry.folder
    _, source = build_model(entry, weights=args.weights)  # resolves, fails early
    existing = check_existing(folder, source.spec, full=args.verify == "full")
    # A damaged artifact is never compared: its NaNs would read as a converter bug.
    act_on_damage(existing.damage, args.on_damaged, log=lambda s: print(s, file=sys.stderr),
                  remedy=f"rerun with --on-damaged reconvert, or `python -m converters convert "
                         f"{args.model or args.module} --weights {args.weights} "
                         f"--out {args.out}`")
    if not existing.reusable:
        convert_model(entry, ConvertOptions(weights=args.weights, out_root=Path(args.out),
                                                 tf_converter=args.tf_converter),
                      status=terminal_status())
    return _parity_of(folder)


def _demo(args: argparse.Namespace) -> int:
    from converters.demo import run_demo

    manifest, preds = run_demo(Path(args.out))
    _print_agreement(manifest)
    print("scikit-image cat photo (ImageNet cat classes are 281-285):")
    for p in preds:
        verdict = "cat" if p.is_cat else "NOT A CAT"
        print(f"  {p.artifact:14s} class {p.class_index:4d} {p.label:22s} p={p.probability:.3f}  {verdict}")
    if not all(p.is_cat for p in preds):
        print("error: some formats do not see a cat", file=sys.stderr)
        return EXIT_DISAGREE
    return 0


def _parity_catalog(args: argparse.Namespace) -> int:
    from converters.parity.catalog import run_catalog
    from converters.parity.catalog_table import collect_rows, rows_from_results, write_tables
    from zoo.cli import expand_models
    from zoo.env import environment
    from zoo.executors.cli import executor_from
    from zoo.registry import list_models

    models = expand_models(args.models, list_models())  # unknown names fail before any work
    out, threads = Path(args.out), None
    if args.collect_only:
        rows = collect_rows(models, out)
    else:
        with executor_from(args) as executor:  # Ray missing, or no cluster: one line, exit 2
            results = run_catalog(models, out_root=out, weights=args.weights,
                                  executor=executor)
            threads = executor.threads
        rows = rows_from_results(models, results)
    paths = write_tables(rows, results_dir(args),
                         environment(threads=threads, weights=f"{args.weights} (per row)",
                                     with_gpu=False))
    print("wrote " + ", ".join(str(p) for p in paths))
    return catalog_status([r["result"] for r in rows])


def _sweep(args: argparse.Namespace) -> int:
    from converters.sweep.run import collected_records, run_sweep, sweep_status
    from converters.sweep.select import parse_params, select_models
    from converters.sweep.table import coverage, raw_path, raw_records, write_tables
    from zoo.env import environment
    from zoo.executors.cli import executor_from

    max_params = parse_params(args.max_params) if args.max_params else None
    out = Path(args.out)
    models = select_models(args.source, args.models, max_params=max_params, cache_dir=out)
    if not models:
        print(f"error: no {args.source} model within --max-params {args.max_params}",
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    missing: list[str] = []
    threads = None
    if args.collect_only:  # under --out, else the results folder's own raw records
        published = raw_records(raw_path(results_dir(args), args.source))
        records, missing = collected_records(models, out, published)
    else:
        with executor_from(args) as executor:
            records = run_sweep(models, out_root=out, weights=args.weights, executor=executor,
                                keep_artifacts=args.keep_artifacts)
            threads = executor.threads
    env = environment(threads=threads, with_gpu=False,
                      weights=f"{args.weights}: pretrained where offline, else random (per row)")
    paths = write_tables(records, results_dir(args), env, args.source, missing)
    tool, alone, n = coverage(records)
    print(f"coverage: this tool {tool}/{n}, onnx2tf alone {alone}/{n}")
    if missing:
        print(f"not swept yet: {len(missing)} of {len(models)} models")
    print("wrote " + ", ".join(str(p) for p in paths))
    return ExitCode.PARTIAL if missing else sweep_status(records)


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    from converters.sweep.select import SOURCES

    p.add_argument("--source", choices=SOURCES, default="torchvision",
                   help="torchvision: every classifier; timm: the smallest ImageNet-1k model "
                        "of each timm family (converters/sweep/select.py)")
    add_models_argument(p, default="the source's default set")
    p.add_argument("--max-params", metavar="N",
                   help="only models with at most N published parameters (100M, 5.5M, 2e7)")
    _weights_argument(p, "auto")
    p.add_argument("--out", default="artifacts/sweep",
                   help="artifacts, records and the done-store (default: artifacts/sweep/)")
    p.add_argument("--keep-artifacts", action="store_true",
                   help="keep each model's converted files (default: removed once checked)")
    p.add_argument("--collect-only", action="store_true",
                   help="convert nothing: the tables from the records earlier runs left under "
                        "--out, else in the results folder's raw/coverage-<source>.jsonl, "
                        "whatever code made them (each row's `swept` date; models with none "
                        "are listed)")
    add_results_argument(p)
    add_executor_arguments(p)


def catalog_status(results: list[str]) -> ExitCode:
    """1 when any pair fails its checks (it wins: a wrong number matters most), 3 when some
    model could not be checked at all, else 0."""
    if any(r == "FAIL" for r in results):
        return ExitCode.CHECKS_FAILED
    if not results or any(r != "pass" for r in results):
        return ExitCode.PARTIAL
    return ExitCode.OK


def _weights_argument(p: argparse.ArgumentParser, default: str = "imagenet") -> None:
    p.add_argument("--weights", default=default,
                   help="imagenet[:TAG] | random[:SEED] | auto | path/to/state_dict.pth "
                        f"(default: {default}; for your own model, imagenet means the weights "
                        "its factory gives)")


def _out_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="artifacts", help="artifact root (default: artifacts/)")


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    from converters.model_args import add_model_arguments

    add_model_arguments(p)
    _weights_argument(p)
    _out_argument(p)
    p.add_argument("--no-parity", dest="parity", action="store_false",
                   help="skip the per-layer parity check after converting")
    _tf_converter_argument(p)
    from converters.precisions import add_precision_arguments

    add_precision_arguments(p)


def _tf_converter_argument(p: argparse.ArgumentParser) -> None:
    from converters.formats import TF_CONVERTERS

    p.add_argument("--tf-converter", choices=TF_CONVERTERS, default="auto",
                   help="who makes the SavedModel and TFLite files: auto (default: onnx2tf, "
                        "and the Keras model's own export where onnx2tf fails or its files "
                        "do not run or agree), onnx2tf, or keras")


def _parity_arguments(p: argparse.ArgumentParser) -> None:
    from converters.manifest import add_verify_arguments
    from converters.model_args import add_model_arguments

    add_model_arguments(p)
    _weights_argument(p)
    _out_argument(p)
    add_verify_arguments(p, verify="full")
    _tf_converter_argument(p)


def _catalog_arguments(p: argparse.ArgumentParser) -> None:
    add_models_argument(p, default="the whole catalog")
    _weights_argument(p, "auto")
    _out_argument(p)
    add_results_argument(p)
    p.add_argument("--collect-only", action="store_true",
                   help="only rebuild the tables from existing parity JSON")
    add_executor_arguments(p)


def _guarded(run):
    """A command body with its output folders checked before any work."""
    def body(args: argparse.Namespace) -> int:
        from zoo.exits import require_writable_dir

        require_writable_dir(Path(args.out), "--out")
        if hasattr(args, "publish"):
            require_writable_dir(results_dir(args), "--results")
        return run(args)
    return body


COMMANDS: tuple[Command, ...] = (
    Command("convert", "PyTorch -> ONNX -> SavedModel/TFLite/Keras, agreement, parity",
            _convert_arguments, _guarded(_convert)),
    Command("parity", "per-layer parity of every format (converts first if the artifacts are "
                      "missing or have other weights)", _parity_arguments, _guarded(_parity)),
    Command("parity-catalog", "per-layer parity for many catalog models -> parity-catalog "
                              "tables", _catalog_arguments, _guarded(_parity_catalog)),
    Command("sweep", "coverage: every model of a source in every format, by this tool and "
                     "by onnx2tf alone -> coverage-<source> tables", _sweep_arguments,
            _guarded(_sweep)),
    Command("demo", "mobilenet_v2 (real ImageNet weights, offline): every format must classify "
                    "the cat photo as a cat", _out_argument, _guarded(_demo)),
)
