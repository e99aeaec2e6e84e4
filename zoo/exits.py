"""One exit-code table for every command, and clean shutdown on SIGINT and SIGTERM.

It lives in ``zoo`` because every package's command line uses it and ``zoo`` is
the one package the others may all import (``bench -> converters -> zoo``).

| code | meaning |
|---|---|
| 0 | ok: everything ran and every check passed |
| 1 | checks failed: an artifact disagrees, parity fails, a comparison is out of bounds |
| 2 | bad input or usage: unknown model, missing weights or data, corrupt file, unsupported op, unwritable output, no GPU for ``--device cuda``; a full disk, no memory |
| 3 | partial: the run finished but some rows errored (their reasons are in the tables) |
| 130 | interrupted by SIGINT (Ctrl-C) |
| 143 | terminated by SIGTERM (``timeout``, CI cancellation, a cluster scheduler) |

``exit_for`` is the one place an exception becomes a code and an ``error:`` line;
``run_command`` applies it to every command. SIGTERM is turned into ``Terminated``, a
``KeyboardInterrupt``, so the cleanup that already runs on Ctrl-C (staging folders
removed, worker process groups killed) runs on SIGTERM too.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import tempfile
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


class UserError(Exception):
    """Base of the errors a user causes (a name, a file, an option): one line, exit 2.

    Packages derive their own (``UnknownModelError``, ``ConversionError``, ...), beside
    the builtin base their callers already catch."""


class UserCodeExit(UserError):
    """A user's model module or factory called ``sys.exit`` (a script's main guard missing)."""


class ResourceExhausted(Exception):
    """The machine ran out of disk or memory. No fallback may absorb it (a converter that
    failed for want of disk is not a converter failure): the run stops, exit 2."""


class DiskFull(ResourceExhausted):
    pass


class OutOfMemory(ResourceExhausted):
    pass


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How libraries that wrap the OS error in their own type word it (TensorFlow's C++ file
# system, onnx2tf's re-raised exceptions, ONNX Runtime's allocator, C++'s new).
DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded")
SHORT_WRITE = re.compile(r"\b\d+ requested and \d+ written\b")  # NumPy's tofile on a full disk
MEMORY_WORDS = ("std::bad_alloc", "Failed to allocate memory", "OOM when allocating",
                "Cannot allocate memory")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or while handling."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a file system out of space or quota."""
    return any(isinstance(e, DiskFull)
               or (isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS)
               or any(w in str(e) for w in DISK_FULL_WORDS) or SHORT_WRITE.search(str(e))
               for e in _chain(exc))


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is an allocation that failed."""
    return any(isinstance(e, (MemoryError, OutOfMemory))
               or (isinstance(e, OSError) and e.errno == errno.ENOMEM)
               or any(w in str(e) for w in MEMORY_WORDS) for e in _chain(exc))


def exhausted(exc: BaseException, *, memory: bool = True) -> ResourceExhausted | None:
    """``exc`` as the ``DiskFull`` (or, with ``memory``, ``OutOfMemory``) it is, worded for
    the user; None when it is neither."""
    if isinstance(exc, ResourceExhausted):
        return exc
    if disk_full(exc):
        where = next((e.filename for e in _chain(exc)
                      if isinstance(e, OSError) and e.filename), None)
        return DiskFull(f"no space left on device{f' writing {where}' if where else ''}: "
                        "free some space or write elsewhere (--out, --results)")
    if memory and out_of_memory(exc):
        what = type(exc).__name__ + (f": {first_line(exc, 200)}" if str(exc).strip() else "")
        return OutOfMemory(f"out of memory ({what}): the model is too big for this machine's "
                           "free memory")
    return None


def raise_if_exhausted(exc: BaseException, *, memory: bool = True) -> None:
    """Raise ``exhausted(exc)`` when ``exc`` is a full disk (or, with ``memory``, running
    out of memory); otherwise return, and the caller treats it as the failure it records.

    Call it first in every ``except Exception`` that falls back, records a row or weakens
    a check: a full disk must stop the run, never read as "this converter failed"."""
    if (found := exhausted(exc, memory=memory)) is exc:
        raise exc
    if found is not None:
        raise found from exc


def disk_nearly_full(path: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing parent) has less
    than ``margin`` bytes free: right after a step failed, the failure was the disk's,
    whatever a library that swallowed the OS error made of it."""
    existing = next((p for p in (Path(path), *Path(path).absolute().parents) if p.exists()),
                    None)
    if existing is None:
        return False
    try:
        st = os.statvfs(existing)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


def _is_protobuf(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("google.protobuf")


def exit_for(exc: BaseException) -> tuple[ExitCode, str] | None:
    """The exit code and ``error:`` line for an exception that ends a command; None for
    one that is a bug (it keeps its traceback). The explicit list:

    - a full disk or quota (ENOSPC/EDQUOT, also with no file name, also wrapped by a
      library) and running out of memory (MemoryError, C++ allocation failures): 2;
    - protobuf's EncodeError/DecodeError (a model over protobuf's 2 GB, a corrupt file): 2;
    - ``UserCodeExit``: the user's model file or factory called ``sys.exit`` (a
      ``SystemExit`` from there, which ``zoo.sources.user`` turns into this): 2;
    - ``UserError``, ``ValueError``, ``KeyError`` of the catalog, ``FileNotFoundError``, and
      any ``OSError`` that names its file: 2.
    """
    if isinstance(exc, KeyboardInterrupt):
        term = isinstance(exc, Terminated)
        return ExitCode.TERMINATED if term else ExitCode.INTERRUPTED, ""
    if (found := exhausted(exc)) is not None:
        return ExitCode.BAD_INPUT, first_line(found, 1000)
    if _is_protobuf(exc):
        return ExitCode.BAD_INPUT, (f"protobuf {type(exc).__name__}: {first_line(exc, 300)} "
                                    "(a model file over protobuf's 2 GB, or a corrupt one)")
    if isinstance(exc, OSError) and exc.filename is not None:
        return ExitCode.BAD_INPUT, f"{exc.filename}: {exc.strerror or first_line(exc)}"
    if isinstance(exc, (UserError, ValueError, FileNotFoundError)):
        return ExitCode.BAD_INPUT, first_line(exc, 1000)
    return None


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
    """Run a command's body with the exit-code and shutdown policy: ``body`` returns a code
    from the table above; an exception ``exit_for`` knows is one line and its code (SIGINT
    130, SIGTERM 143, bad input, a full disk or no memory 2), never a traceback."""
    try:
        with terminate_as_interrupt():
            return int(body())
    except BrokenPipeError:  # `modelzoo list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return ExitCode.OK
    except BaseException as exc:  # noqa: BLE001  exit_for decides; a bug is re-raised
        if isinstance(exc, SystemExit):  # argparse's --help, or sys.exit in this tool
            raise
        mapped = exit_for(exc)
        if mapped is None:
            raise
        code, line = mapped
        if isinstance(exc, KeyboardInterrupt):
            how = "terminated (SIGTERM)" if code == ExitCode.TERMINATED else "interrupted (SIGINT)"
            line = f"{prog}: {how}; unfinished output removed, worker processes stopped"
        else:
            line = f"error: {line}"
        print(line, file=sys.stderr)
        return code


def exit_process(code: int) -> None:
    """End the process with ``code``. After an interrupt the cleanup has already run: exit
    at once, skipping the interpreter's shutdown (collecting a large TensorFlow graph took
    minutes, past a scheduler's grace period before SIGKILL)."""
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message, at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


class OutputDirError(UserError, ValueError):
    """An output folder that cannot be created or written (a bad-input error, exit 2)."""


def require_writable_dir(path: Path, what: str = "output folder") -> Path:
    """Check that ``path`` is, or can be created as, a writable folder; one line if not.

    Checked before any work starts, so a read-only, misspelt or pseudo-file-system
    (``/proc``) output path fails in a second rather than after a long conversion. The
    nearest existing folder is tried by creating and removing a file in it (permission
    bits do not tell: root passes ``os.access`` everywhere); nothing is left behind.
    """
    path = Path(path)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        reason = "it is a file" if existing == path else f"{existing} is a file, not a folder"
    elif (refused := _cannot_create_in(existing)) is None:
        return path
    else:
        reason = refused
    raise OutputDirError(f"{what} {path}: cannot write there ({reason})")


def _cannot_create_in(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder``; None when one can (and was removed)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".modelzoo-write-probe-", dir=folder)
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            return f"no space left on the device of {folder}"
        return f"cannot create a file in {folder}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None


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
