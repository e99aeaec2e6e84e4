"""One exit-code table for every command, and clean shutdown on SIGINT and SIGTERM.

It lives in ``zoo`` because every package's command line uses it and ``zoo`` is
the one package the others may all import (``bench -> converters -> zoo``).

| code | meaning |
|---|---|
| 0 | ok: everything ran and every check passed |
| 1 | checks failed: an artifact disagrees, parity fails, a comparison is out of bounds |
| 2 | bad input or usage: unknown model, missing weights or data, corrupt file, unsupported op, unwritable output, no GPU for ``--device cuda`` |
| 3 | partial: the run finished but some rows errored (their reasons are in the tables) |
| 130 | interrupted by SIGINT (Ctrl-C) |
| 143 | terminated by SIGTERM (``timeout``, CI cancellation, a cluster scheduler) |

SIGTERM is turned into ``Terminated``, a ``KeyboardInterrupt``, so the cleanup
that already runs on Ctrl-C (staging folders removed, worker process groups
killed) runs on SIGTERM too.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from enum import IntEnum
from pathlib import Path
from typing import Callable, Iterator


class ExitCode(IntEnum):
    OK = 0
    CHECKS_FAILED = 1
    BAD_INPUT = 2
    PARTIAL = 3
    INTERRUPTED = 128 + signal.SIGINT  # 130
    TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(f"received {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` (like SIGINT raises KeyboardInterrupt)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signal handling to the caller
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body with the shutdown policy: an interrupt is one line, no traceback.

    ``body`` returns an exit code from the table above; SIGINT gives 130, SIGTERM 143, and
    a file-system error that names its path (an output folder that cannot be created, a
    full disk) is one line and 2 rather than a traceback.
    """
    try:
        with terminate_as_interrupt():
            return int(body())
    except BrokenPipeError:  # `modelzoo list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return ExitCode.OK
    except OSError as exc:  # the file system refused (a path, permissions, a full disk)
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or first_line(exc)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        how = "terminated (SIGTERM)" if term else "interrupted (SIGINT)"
        print(f"{prog}: {how}; unfinished output removed, worker processes stopped",
              file=sys.stderr)
        return ExitCode.TERMINATED if term else ExitCode.INTERRUPTED


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message, at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


class OutputDirError(ValueError):
    """An output folder that cannot be created or written (a bad-input error, exit 2)."""


def require_writable_dir(path: Path, what: str = "output folder") -> Path:
    """Check that ``path`` is, or can be created as, a writable folder; one line if not.

    Checked before any work starts, so a read-only or misspelt output path fails in
    a second rather than after a long conversion, and never as a traceback. Nothing
    is created here: a run that then fails on other bad input leaves no empty folder.
    """
    path = Path(path)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        reason = "it is a file" if existing == path else f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"no write permission in {existing}"
    else:
        return path
    raise OutputDirError(f"{what} {path}: cannot write there ({reason})")


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End a child started with ``start_new_session=True`` and everything it started:
    SIGTERM first, so it removes its staging folder, then SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.communicate(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.communicate()


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux only)
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_child(cmd: list[str], *, timeout: float | None = None,
              on_start: Callable[[subprocess.Popen], None] | None = None,
              die_with_parent: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` with captured text output, in its own process group, stopped
    gracefully (``stop_process_group``) when this process is interrupted or times out.

    ``on_start`` gets the child as soon as it runs (an executor stops it from another
    thread). ``die_with_parent``: the child is killed when this process dies, even by
    SIGKILL (a cluster worker that is lost must not leave its conversion running beside
    the retry); Linux only, ignored elsewhere.
    """
    if die_with_parent and sys.platform.startswith("linux"):
        kwargs["preexec_fn"] = _die_with_parent
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    if on_start is not None:
        on_start(proc)
    try:
        stdout, stderr = _communicate(proc, timeout)
    except BaseException:
        stop_process_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _communicate(proc: subprocess.Popen, timeout: float | None) -> tuple[str, str]:
    """``proc.communicate(timeout)`` woken once a second: an interrupt raised into this
    thread without a signal (Ray's cancel of a running task) is acted on within a second,
    not when the child ends. Retrying after TimeoutExpired loses no output."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        try:
            return proc.communicate(timeout=step)
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout) from None
