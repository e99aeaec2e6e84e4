"""The converters' commands: ``convert``, ``parity``, ``parity-catalog``, ``demo``.

``convert MODEL``: PyTorch -> ONNX -> SavedModel/TFLite/Keras, agreement, per-layer parity.
``parity MODEL``: per-layer parity only (converting first when needed).
``parity-catalog``: parity for the whole catalog, tables under the results folder.
``demo``: mobilenet_v2 with real ImageNet weights; every format must see the cat.

Each is a ``zoo.cli.Command``; ``python -m converters`` and ``modelzoo`` run them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converters.terminal import stdout_console, terminal_status
from zoo.cli import Command, add_models_argument, add_results_argument, results_dir
from zoo.exits import ExitCode

EXIT_ERROR = ExitCode.BAD_INPUT
EXIT_DISAGREE = ExitCode.CHECKS_FAILED
DESCRIPTION = "PyTorch -> ONNX -> TF SavedModel / TFLite / Keras 3, with agreement and per-layer parity."


def _print_agreement(manifest) -> None:
    from rich.table import Table

    table = Table(title=f"{manifest.model}: agreement with PyTorch on "
                        f"{manifest.agreement[0].n_images if manifest.agreement else 0} photos "
                        f"({manifest.weights.label})")
    for col in ("artifact", "prec", "max |err|", "mean |err|", "tolerance", "top-1",
                "result"):
        table.add_column(col, justify="left" if col in ("artifact", "prec") else "right",
                         overflow="fold")
    for a in manifest.agreement:
        if a.error:
            table.add_row(a.artifact, a.precision, "-", "-", "-", "-",
                          f"[red]ERROR[/red] {a.error[:90]}")
            continue
        ok = "[green]pass[/green]" if a.passed else "[red]FAIL[/red]"
        table.add_row(a.artifact, a.precision, f"{a.max_abs_err:.2e}", f"{a.mean_abs_err:.2e}",
                      f"{a.tolerance:.1e}", f"{a.top1_agreement:.0%}", ok)
    stdout_console().print(table)


def _convert(args: argparse.Namespace) -> int:
    from converters.pipeline import ConvertOptions, convert_model

    opts = ConvertOptions(weights=args.weights, out_root=Path(args.out))
    manifest = convert_model(args.model, opts, status=terminal_status())
    _print_agreement(manifest)
    print(f"artifacts: {Path(args.out) / args.model}/ (manifest.json lists them)")
    status = 0
    if not all(a.passed for a in manifest.agreement):
        print(f"error: {args.model}: some artifacts disagree with PyTorch beyond tolerance",
              file=sys.stderr)
        status = EXIT_DISAGREE
    if args.parity:
        status = max(status, _parity_of(Path(args.out) / args.model))
    return status


def _parity_of(folder: Path) -> int:
    from converters.parity.report import print_summary, write_reports
    from converters.parity.run import run_parity

    reports = run_parity(folder, status=terminal_status())
    print_summary(reports)
    write_reports(reports, folder / "parity")
    print(f"parity reports: {folder / 'parity'}/ (JSON per pair, parity.csv, parity.png)")
    failed = [f"{r.reference} vs {r.test}" for r in reports if not r.passed]
    if failed:
        print(f"error: {folder.name}: per-layer parity fails for {', '.join(failed)}",
              file=sys.stderr)
        return EXIT_DISAGREE
    return 0


def _parity(args: argparse.Namespace) -> int:
    from converters.manifest import act_on_damage
    from converters.pipeline import ConvertOptions, check_existing, convert_model
    from zoo.build import build_model

    folder = Path(args.out) / args.model
    _, source = build_model(args.model, weights=args.weights)  # resolves, fails early
    existing = check_existing(folder, source.spec)
    # A damaged artifact is never compared: its NaNs would read as a converter bug.
    act_on_damage(existing.damage, args.on_damaged, log=lambda s: print(s, file=sys.stderr),
                  remedy=f"rerun with --on-damaged reconvert, or `python -m converters convert "
                         f"{args.model} --weights {args.weights} --out {args.out}`")
    if not existing.reusable:
        convert_model(args.model, ConvertOptions(weights=args.weights, out_root=Path(args.out)),
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
    from converters.parity.catalog_table import collect_rows, write_tables
    from zoo.cli import expand_models
    from zoo.env import environment
    from zoo.registry import list_models

    models = expand_models(args.models, list_models())  # unknown names fail before any work
    out = Path(args.out)
    if not args.collect_only:
        run_catalog(models, out_root=out, weights=args.weights)
    rows = collect_rows(models, out)
    paths = write_tables(rows, results_dir(args),
                         environment(weights=f"{args.weights} (per row)", with_gpu=False))
    print("wrote " + ", ".join(str(p) for p in paths))
    return catalog_status([r["result"] for r in rows])


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
                        f"(default: {default})")


def _out_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="artifacts", help="artifact root (default: artifacts/)")


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    _weights_argument(p)
    _out_argument(p)
    p.add_argument("--no-parity", dest="parity", action="store_false",
                   help="skip the per-layer parity check after converting")


def _parity_arguments(p: argparse.ArgumentParser) -> None:
    from converters.manifest import ON_DAMAGED

    p.add_argument("model")
    _weights_argument(p)
    _out_argument(p)
    p.add_argument("--on-damaged", choices=ON_DAMAGED, default="reconvert",
                   help="artifacts that differ from their manifest (sha256, size, missing): "
                        "convert again (default), or exit 2 naming them")


def _catalog_arguments(p: argparse.ArgumentParser) -> None:
    add_models_argument(p, default="the whole catalog")
    _weights_argument(p, "auto")
    _out_argument(p)
    add_results_argument(p)
    p.add_argument("--collect-only", action="store_true",
                   help="only rebuild the tables from existing parity JSON")


def _guarded(run):
    """A command body with output folders checked first and user errors as one line."""
    def body(args: argparse.Namespace) -> int:
        from converters.errors import reporting_user_errors
        from zoo.exits import require_writable_dir

        def checked() -> int:
            require_writable_dir(Path(args.out), "--out")
            if hasattr(args, "publish"):
                require_writable_dir(results_dir(args), "--results")
            return run(args)
        return reporting_user_errors(checked)
    return body


COMMANDS: tuple[Command, ...] = (
    Command("convert", "PyTorch -> ONNX -> SavedModel/TFLite/Keras, agreement, parity",
            _convert_arguments, _guarded(_convert)),
    Command("parity", "per-layer parity of every format (converts first if the artifacts are "
                      "missing or have other weights)", _parity_arguments, _guarded(_parity)),
    Command("parity-catalog", "per-layer parity for many catalog models -> parity-catalog "
                              "tables", _catalog_arguments, _guarded(_parity_catalog)),
    Command("demo", "mobilenet_v2 (real ImageNet weights, offline): every format must classify "
                    "the cat photo as a cat", _out_argument, _guarded(_demo)),
)
