"""``python -m zoo list [PATTERN] [--all]``: the catalog as a table (``--all``: every
torchvision classifier; ``timm/PATTERN``: timm's models)."""
from __future__ import annotations

import argparse
import math
import shutil
import sys
from typing import TYPE_CHECKING

from zoo.cli import Command, run_cli

if TYPE_CHECKING:
    from zoo.entry import ModelEntry

# Not a terminal (a pipe, a log, CI): a width that reads well in a log and a diff.
NON_TTY_WIDTH = 100
MIN_FEATURE_WIDTH = 7  # the header's "feature" line
# (header, right-aligned); "\n" splits a header over two lines to keep the column narrow.
COLUMNS = (("model", False), ("family", False), ("weights", False), ("offline", False),
           ("input", True), ("acc@1", True), ("acc@5", True), ("params\n(M)", True),
           ("GFLOPs\n(2/MAC)", True), ("file\n(MB)", True), ("feature\nlayer", False),
           ("dim", True))
FEATURE = COLUMNS.index(("feature\nlayer", False))
FAMILY = COLUMNS.index(("family", False))
# Dropped in this order when the table is too wide: family repeats the model name; top-5
# accuracy and file size are the least asked-for figures.
OPTIONAL = (FAMILY, COLUMNS.index(("acc@5", True)), COLUMNS.index(("file\n(MB)", True)))
CAPTION = ("GFLOPs (2/MAC): torchvision's published ops x 2, a multiply-add counted as 2 FLOPs "
           "as in the latency tables. offline: real ImageNet weights on this machine (torch hub "
           "cache or an offline weight package). input: crop/resize. feature layer \"(in)\": "
           "the input of that layer (a derived entry's head). -: not published by the source.")


def abbreviate_left(text: str, width: int) -> str:
    """``…classifier.1``: a module path keeps its end, the part that tells paths apart."""
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1:] if width > 1 else "…"


def catalog_row(entry: "ModelEntry") -> list[str]:
    """One row, in ``COLUMNS`` order, from the entry's published meta."""
    from zoo.meta import published_meta
    from zoo.weights import imagenet_available_offline

    m = published_meta(entry)
    p = m.preprocessing
    tag = m.weights.split(".")[-1].removeprefix("IMAGENET1K_")  # every tag is ImageNet-1K
    layer = entry.feature_layer + (" (in)" if entry.feature_at == "input" else "")
    return [entry.name, entry.family, tag, "yes" if imagenet_available_offline(entry) else "no",
            f"{p.crop_size}/{p.resize_size}", _num(m.acc1), _num(m.acc5),
            _num(m.num_params / 1e6 if m.num_params else math.nan), _num(2 * m.gflops),
            _num(m.file_size_mb, 1), layer, str(entry.feature_dim)]


def _num(value: float, digits: int = 2) -> str:
    """A published number, or "-" where the source publishes none (NaN)."""
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def fit_columns(rows: list[list[str]], width: int) -> tuple[list[int], list[list[str]]]:
    """Column indices to show and rows whose feature layers fit ``width``.

    Columns are separated by one space. When the table is too wide the ``OPTIONAL``
    columns go, then feature-layer paths are shortened from the left.
    """
    def natural(i: int) -> int:
        cells = [r[i] for r in rows] + COLUMNS[i][0].split("\n")
        return max(len(c) for c in cells)

    def others(keep: list[int]) -> int:
        return sum(natural(i) for i in keep if i != FEATURE) + len(keep) - 1

    keep = list(range(len(COLUMNS)))
    for col in OPTIONAL:
        # Family goes rather than shorten any path; the others only when even the
        # shortest path would not fit.
        feature = natural(FEATURE) if col == FAMILY else MIN_FEATURE_WIDTH
        if others(keep) + feature > width:
            keep.remove(col)
    room = max(width - others(keep), MIN_FEATURE_WIDTH)
    fitted = [[abbreviate_left(c, room) if i == FEATURE else c for i, c in enumerate(r)]
              for r in rows]
    return keep, [[r[i] for i in keep] for r in fitted]


def output_width() -> int:
    # shutil honours $COLUMNS first, then asks the terminal.
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else NON_TTY_WIDTH


def _list(pattern: str, everything: bool = False) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from zoo.exits import ExitCode
    from zoo.registry import get_entry, list_models

    names = list_models(pattern, everything=everything)
    if not names:
        print(f"error: no catalog model matches {pattern!r} (`python -m zoo list --all` shows "
              "all)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    width = output_width()
    keep, rows = fit_columns([catalog_row(get_entry(n)) for n in names], width)
    scope = "every torchvision classifier" if everything else "catalog"
    table = Table(title=f"modelzoo {scope} (published numbers: the source's weights meta)",
                  caption=CAPTION, box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False,
                  show_edge=False, caption_justify="left")
    for i in keep:
        header, right = COLUMNS[i]
        table.add_column(header, justify="right" if right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    Console(width=width).print(table)
    return 0


def _list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*",
                   help="fnmatch filter, e.g. 'resnet*'; 'timm/PATTERN' lists timm's models")
    p.add_argument("--all", dest="everything", action="store_true",
                   help="every torchvision ImageNet classifier, not only the curated default set")


COMMANDS: tuple[Command, ...] = (
    Command("list", "print the catalog (published metadata, feature layer, offline weights)",
            _list_arguments, lambda args: _list(args.pattern, args.everything)),
)


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m zoo", __doc__ or "", COMMANDS, argv)


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
