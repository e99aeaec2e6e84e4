"""``python -m zoo list [PATTERN]``: the catalog as a table."""
from __future__ import annotations

import argparse
import sys


def _list(pattern: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from zoo.exits import ExitCode
    from zoo.meta import published_meta
    from zoo.registry import get_entry, list_models

    table = Table(title="modelzoo catalog (published numbers: torchvision weights meta)")
    for col in ("model", "family", "weights", "input", "acc@1", "acc@5", "params (M)", "GFLOPS",
                "file (MB)", "feature layer", "dim"):
        table.add_column(col, justify="right" if col in {"acc@1", "acc@5", "params (M)", "GFLOPS",
                                                         "file (MB)", "dim"} else "left")
    names = list_models(pattern)
    if not names:
        print(f"error: no catalog model matches {pattern!r} (`python -m zoo list` shows all)",
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    for name in names:
        e = get_entry(name)
        m = published_meta(e)
        p = m.preprocessing
        table.add_row(name, e.family, m.weights.split(".")[-1], f"{p.crop_size} ({p.resize_size})",
                      f"{m.acc1:.2f}", f"{m.acc5:.2f}", f"{m.num_params / 1e6:.2f}",
                      f"{m.gflops:.2f}", f"{m.file_size_mb:.1f}", e.feature_layer,
                      str(e.feature_dim))
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="print the catalog")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'resnet*'")
    args = parser.parse_args(argv)
    from zoo.exits import run_command

    return run_command("python -m zoo", lambda: _list(args.pattern))


if __name__ == "__main__":
    sys.exit(main())
