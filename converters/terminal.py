"""Terminal output: which step is running, and tables that fit the terminal.

Which step is running: a spinner on a terminal, one line per step in a log.

Conversion and parity steps take up to tens of seconds each (onnx2tf, capturing every
TF tensor); a user should never watch a silent terminal wondering whether it hangs.
Nothing here runs while latency is timed: the bench has its own progress bar.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, ContextManager, Iterator

Status = Callable[[str], ContextManager[None]]


@contextlib.contextmanager
def no_status(_text: str) -> Iterator[None]:
    yield


def terminal_status() -> Status:
    """On a terminal, a transient spinner on stderr with the step and its elapsed time;
    elsewhere (a pipe, CI) a plain ``... step`` line on stderr when each step starts."""
    from rich.console import Console

    console = Console(stderr=True)
    return _spinner(console) if console.is_terminal else _plain


def _spinner(console) -> Status:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    @contextlib.contextmanager
    def status(text: str) -> Iterator[None]:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            bar.add_task(text, total=None)
            yield
    return status


@contextlib.contextmanager
def _plain(text: str) -> Iterator[None]:
    print(f"  ... {text}", file=sys.stderr, flush=True)
    yield


LOG_WIDTH = 120  # not a terminal (a pipe, a log, CI): wide enough to read, narrow enough to diff


def stdout_console():
    """A rich console for stdout: the terminal's width, or LOG_WIDTH when not a terminal."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else LOG_WIDTH)


def fit_left(text: str, width: int) -> str:
    """``text`` cut from the left to ``width`` characters: the end of a module path
    (``...features.11.expand1x1``) says which layer, its start only which block."""
    return text if len(text) <= width else "\u2026" + text[len(text) - width + 1:]
