"""The command-line flags that choose an executor (the same on every command), and the
executor they ask for."""
from __future__ import annotations

import argparse
import contextlib
from typing import Iterator

from zoo.executors.base import CLUSTER_EXTRA, EXECUTORS, Executor, ExecutorUnavailable


def add_executor_arguments(p: argparse.ArgumentParser, *, jobs_help: str = "") -> None:
    """``--executor local|ray``, ``--jobs N``, ``--address`` (the same on every command)."""
    g = p.add_argument_group("executor (where the per-model processes run)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: a process pool on this machine (default); ray: a Ray "
                        f"cluster ({CLUSTER_EXTRA})")
    g.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help=jobs_help or "tasks at once: local processes, or the CPUs of the "
                                     "local Ray cluster started when --address is not given "
                                     "(default 1)")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to join: auto (the one `ray start` made here) or "
                        "ray://host:port (default: start a local one)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {text!r}")
    return value


def make_executor(args: argparse.Namespace) -> Executor:
    """The executor the flags ask for; ExecutorUnavailable (one line, exit 2) when it
    cannot start here."""
    jobs = args.jobs
    if args.executor == "ray":
        from zoo.executors.ray_executor import RayExecutor

        return RayExecutor(address=args.address, jobs=jobs)
    if args.address:
        raise ExecutorUnavailable("--address needs --executor ray")
    from zoo.executors.local import LocalExecutor

    return LocalExecutor(jobs=jobs or 1)


@contextlib.contextmanager
def executor_from(args: argparse.Namespace) -> Iterator[Executor]:
    """``make_executor(args)``, closed (a Ray cluster shut down) when the block ends."""
    executor = make_executor(args)
    try:
        yield executor
    finally:
        executor.close()
