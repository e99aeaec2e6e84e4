"""Command-line plumbing shared by every entry point: ``modelzoo``, ``python -m converters``,
``python -m bench`` and ``python -m zoo`` are the same commands, composed differently.

A command is a typed entry (``Command``): its name, one line of help, a function that adds
its arguments and one that runs it. ``run_cli`` builds one argparse tree of subcommands
from a list of them, parses, and runs the chosen one under the exit-code and shutdown
policy of ``zoo.exits``. Argument building imports nothing heavy, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from zoo.exits import run_command

VERBOSE_ENV = "MODELZOO_VERBOSE"
USER_RESULTS = Path("runs")  # a user's own runs; the tracked results/ only with --publish


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""  # longer text for ``<command> --help`` (default: ``help``)


def build_parser(prog: str, description: str, commands: Sequence[Command]
                 ) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbose(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in commands:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_verbose(p)
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="keep TensorFlow/absl/LiteRT start-up logs (silenced by default)")


def run_cli(prog: str, description: str, commands: Sequence[Command],
            argv: Sequence[str] | None, *, default: str | None = None) -> int:
    """Parse ``argv`` against ``commands`` and run the chosen one.

    ``default``: the command that runs when the first argument names none (``python -m
    bench --models ...`` is ``python -m bench latency --models ...``).
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    names = {c.name for c in commands}
    if default and not (argv and (argv[0] in names or argv[0] in ("-h", "--help"))):
        argv = [default, *argv]
    args = build_parser(prog, description, commands).parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"  # read by converters.tf_compat; workers inherit it
    # every command's exceptions become codes in one place: zoo.exits.exit_for
    return run_command(f"{prog} {args.command}", lambda: args._command.run(args))


def add_models_argument(parser: argparse.ArgumentParser, *, default: str = "the default set"
                        ) -> None:
    """``--models`` in one form everywhere: names or fnmatch patterns, space- or comma-separated."""
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help=f"model names or patterns ('resnet*', 'timm/vit_*'), space- or "
                             f"comma-separated (default: {default})")


def expand_models(values: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """Model names for ``--models`` values: names (any ``get_entry`` takes) and patterns,
    which select from every torchvision classifier (``timm/PATTERN``: timm's); ``default``
    when none are given. UnknownModelError / ValueError name the bad one."""
    from zoo.registry import UnknownModelError, get_entry, list_models

    patterns = [v.strip() for item in values or [] for v in item.split(",") if v.strip()]
    models: list[str] = []
    for pattern in patterns or list(default):
        if any(c in pattern for c in "*?["):
            found = list_models(pattern, everything=True)
            if not found:
                raise UnknownModelError(f"no model matches {pattern!r} "
                                        "(`python -m zoo list --all` shows every one)")
        else:
            found = [get_entry(pattern).name]
        models += [m for m in found if m not in models]
    return models


def add_results_argument(parser: argparse.ArgumentParser, flag: str = "--results") -> None:
    """Where tables go: ``runs/`` by default, the project's tracked ``results/`` with
    ``--publish``, or any folder given."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(flag, dest="results", type=Path, metavar="DIR",
                       help=f"results folder (default: {USER_RESULTS}/; see --publish)")
    group.add_argument("--publish", action="store_true",
                       help="write into the project's tracked results/ folder, the published "
                            "tables (for maintainers)")


def results_dir(args: argparse.Namespace) -> Path:
    from zoo.data import REPO_ROOT

    if getattr(args, "publish", False):
        return REPO_ROOT / "results"
    return args.results or USER_RESULTS
