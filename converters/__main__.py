"""Command line of the converters.

``convert MODEL``: PyTorch -> ONNX -> SavedModel/TFLite/Keras, agreement, per-layer parity.
``parity MODEL``: per-layer parity only (converting first when needed).
``parity-catalog``: parity for the whole catalog, tables under results/.
``demo``: mobilenet_v2 with real ImageNet weights; every format must see the cat.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from zoo.exits import ExitCode, run_command

EXIT_ERROR = ExitCode.BAD_INPUT
EXIT_DISAGREE = ExitCode.CHECKS_FAILED


def _print_agreement(manifest) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{manifest.model}: agreement with PyTorch on "
                        f"{manifest.agreement[0]['n_images'] if manifest.agreement else 0} photos "
                        f"({manifest.weights['label']})")
    for col in ("artifact", "precision", "max |err|", "mean |err|", "tolerance", "top-1 agree",
                "result"):
        table.add_column(col, justify="left" if col in ("artifact", "precision") else "right")
    for a in manifest.agreement:
        if a.get("error"):
            table.add_row(a["artifact"], a["precision"], "-", "-", "-", "-",
                          f"[red]ERROR[/red] {a['error'][:90]}")
            continue
        ok = "[green]pass[/green]" if a["passed"] else "[red]FAIL[/red]"
        table.add_row(a["artifact"], a["precision"], f"{a['max_abs_err']:.2e}",
                      f"{a['mean_abs_err']:.2e}", f"{a['tolerance']:.1e}",
                      f"{a['top1_agreement']:.0%}", ok)
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def _convert(args: argparse.Namespace) -> int:
    from converters.pipeline import ConvertOptions, convert_model

    opts = ConvertOptions(weights=args.weights, out_root=Path(args.out))
    manifest = convert_model(args.model, opts)
    _print_agreement(manifest)
    print(f"artifacts: {Path(args.out) / args.model}/ (manifest.json lists them)")
    status = 0
    if not all(a["passed"] for a in manifest.agreement):
        print(f"error: {args.model}: some artifacts disagree with PyTorch beyond tolerance",
              file=sys.stderr)
        status = EXIT_DISAGREE
    if args.parity:
        status = max(status, _parity_of(Path(args.out) / args.model))
    return status


def _parity_of(folder: Path) -> int:
    from converters.parity.report import print_summary, write_reports
    from converters.parity.run import run_parity

    reports = run_parity(folder)
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
        convert_model(args.model, ConvertOptions(weights=args.weights, out_root=Path(args.out)))
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
    from converters.env import environment
    from converters.parity.catalog import collect_rows, run_catalog, write_tables
    from zoo.registry import get_entry, list_models

    models = args.models.split(",") if args.models else list_models()
    for m in models:
        get_entry(m)  # unknown names fail before any work
    out = Path(args.out)
    if not args.collect_only:
        run_catalog(models, out_root=out, weights=args.weights)
    rows = collect_rows(models, out)
    paths = write_tables(rows, Path(args.results),
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


def main(argv: list[str] | None = None) -> int:
    from converters.manifest import ON_DAMAGED

    parser = argparse.ArgumentParser(prog="python -m converters", description=__doc__)
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow/absl/LiteRT start-up logs (silenced by default)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    conv = sub.add_parser("convert", help="PyTorch -> ONNX -> SavedModel/TFLite/Keras")
    conv.add_argument("model")
    conv.add_argument("--weights", default="imagenet",
                      help="imagenet[:TAG] (default) | random[:SEED] | path/to/state_dict.pth")
    conv.add_argument("--out", default="artifacts", help="artifact root (default: artifacts/)")
    conv.add_argument("--no-parity", dest="parity", action="store_false",
                      help="skip the per-layer parity check after converting")
    par = sub.add_parser("parity", help="per-layer parity of every format (converts first if "
                                        "the artifacts are missing or have other weights)")
    par.add_argument("model")
    par.add_argument("--weights", default="imagenet")
    par.add_argument("--out", default="artifacts")
    par.add_argument("--on-damaged", choices=ON_DAMAGED, default="reconvert",
                     help="artifacts that differ from their manifest (sha256, size, missing): "
                          "convert again (default), or exit 2 naming them")
    cat = sub.add_parser("parity-catalog", help="parity for every catalog model -> results/")
    cat.add_argument("--models", default="", help="comma-separated (default: the whole catalog)")
    cat.add_argument("--weights", default="auto",
                     help="auto (default): ImageNet where available offline, else random")
    cat.add_argument("--out", default="artifacts")
    cat.add_argument("--results", default="results")
    cat.add_argument("--collect-only", action="store_true",
                     help="only rebuild the tables from existing parity JSON")
    demo = sub.add_parser("demo", help="mobilenet_v2 (real ImageNet weights, offline): "
                                        "every format must classify the cat photo as a cat")
    demo.add_argument("--out", default="artifacts")
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ["MODELZOO_VERBOSE"] = "1"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from converters.errors import reporting_user_errors

    return run_command("python -m converters",
                       lambda: reporting_user_errors(lambda: _dispatch(args)))


def _dispatch(args: argparse.Namespace) -> int:
    from zoo.exits import require_writable_dir

    require_writable_dir(Path(args.out), "--out")
    if args.cmd == "parity-catalog":
        require_writable_dir(Path(args.results), "--results")
    return {"convert": _convert, "parity": _parity, "demo": _demo,
            "parity-catalog": _parity_catalog}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
