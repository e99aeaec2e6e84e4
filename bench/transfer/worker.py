"""One model of ``bench transfer``, in its own process (a ``zoo.executors`` task):
``python -m bench.transfer.worker --models MODEL --datasets ... --run-id ID [options]``,
the command's own options for one model.

Extracts features (through the on-disk feature cache, ``bench.transfer.cache``) or
fine-tunes, for every weights x dataset, and writes the records as the one result line on
stdout (``zoo.executors.worker``): ``{"type": "record", ...}`` per measurement and
``{"type": "error", "error": ...}`` per combination that failed.
Exit status: 0 every combination measured; 2 some failed (the model is not done: a re-run
tries it again).
"""
from __future__ import annotations

import argparse
import traceback
from dataclasses import asdict
from typing import Any

from zoo.exits import ExitCode, first_line, raise_if_exhausted


def parser() -> argparse.ArgumentParser:
    from bench.transfer.cli import add_arguments

    p = argparse.ArgumentParser(prog="python -m bench.transfer.worker")
    add_arguments(p)
    p.add_argument("--run-id", required=True, help="the driver's run, stamped on every record")
    return p


def _run(args: argparse.Namespace, out: Any) -> int:
    import torch

    from bench.transfer.cli import open_checked, run_model, run_options
    from zoo.executors.worker import write_result

    torch.set_num_threads(args.threads)
    opts = run_options(args, args.run_id)
    failures: list[str] = []
    datasets = [d for d in (open_checked(n, args, opts, failures) for n in args.datasets)
                if d is not None]
    (model,) = args.models
    try:
        records = run_model(model, args, opts, datasets, failures)
    except Exception as exc:  # noqa: BLE001  a model that cannot run: not done, one line
        raise_if_exhausted(exc, memory=False)
        traceback.print_exc()
        records = []
        failures.append(f"{model}: {type(exc).__name__}: {first_line(exc)}")
    write_result(out, [{"type": "record", **asdict(r)} for r in records]
                 + [{"type": "error", "error": line} for line in failures])
    return ExitCode.BAD_INPUT if failures else ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    from zoo.executors.worker import stdout_to_stderr
    from zoo.exits import run_command

    args = parser().parse_args(argv)
    out = stdout_to_stderr()
    return run_command("bench.transfer.worker", lambda: _run(args, out))


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
