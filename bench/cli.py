"""``modelzoo``: every command of the three packages in one command line.

``python -m converters``, ``python -m bench`` and ``python -m zoo`` are thin aliases
over the same ``zoo.cli.Command`` entries; ``make`` targets call those.
"""
from __future__ import annotations

from bench import derived
from bench.latency import cli as latency_cli
from bench.latency import compare, report
from bench.transfer import cli as transfer_cli
from zoo.cli import Command, run_cli

DESCRIPTION = ("modelzoo: convert ImageNet backbones to ONNX, TF SavedModel, TFLite and Keras 3, "
               "check every artifact against PyTorch, and benchmark latency and transfer accuracy.")


def _keras_seed() -> Command:
    from bench import keras_seed

    return Command("keras-seed", "Keras freeze/head/fit workflow on a converted model vs PyTorch",
                   keras_seed.add_arguments, keras_seed.run)


def _accuracy() -> Command:
    from bench.accuracy import cli as accuracy_cli

    return Command("accuracy", "top-1/top-5 and agreement with PyTorch of every artifact on "
                               "labelled photos", accuracy_cli.add_arguments, accuracy_cli.run,
                   accuracy_cli.__doc__ or "")


def _ship() -> Command:
    from bench.ship import cli as ship_cli

    return Command("ship", "which runtime to ship each model in: latency, size, accuracy and "
                           "parity in one table per model", ship_cli.add_arguments, ship_cli.run,
                   ship_cli.__doc__ or "")


def _parity_time() -> Command:
    from bench import parity_time

    return Command("parity-time", "how long per-layer parity takes, in fresh processes",
                   parity_time.add_arguments, parity_time.run)


BENCH_COMMANDS: tuple[Command, ...] = (
    Command("latency", "latency, size and FLOPs per model and runtime (the default of "
                       "`python -m bench`)", latency_cli.add_arguments, latency_cli.run,
            latency_cli.__doc__ or ""),
    Command("report", "regenerate latency tables and plot from raw records, and the tables "
                      "that quote them (transfer, ship)",
            report.add_arguments, derived.run_latency_report),
    Command("compare", "do two latency runs agree? (medians within a tolerance)",
            compare.add_arguments, compare.run, compare.__doc__ or ""),
    Command("transfer", "linear-probe or fine-tune backbones on transfer datasets",
            transfer_cli.add_arguments, transfer_cli.run, transfer_cli.__doc__ or ""),
    _accuracy(),
    _ship(),
    _keras_seed(),
    _parity_time(),
)


def all_commands() -> tuple[Command, ...]:
    """Every command; ``bench`` is the latency command under its everyday name."""
    from converters.cli import COMMANDS as CONVERTER_COMMANDS
    from zoo.__main__ import COMMANDS as ZOO_COMMANDS

    bench = [c if c.name != "latency" else Command("bench", c.help, c.add_arguments, c.run,
                                                    c.description) for c in BENCH_COMMANDS]
    return (*CONVERTER_COMMANDS, *bench, *ZOO_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run_cli("modelzoo", DESCRIPTION, all_commands(), argv)


def entry() -> None:
    """The ``modelzoo`` console script: ``main``, then ``zoo.exits.exit_process``."""
    from zoo.exits import exit_process

    exit_process(main())


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
