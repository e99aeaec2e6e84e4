"""Files written whole or not at all: written under a hidden temporary name beside the
target, then renamed over it (``os.replace`` is atomic within a file system).

A finished name therefore never holds a partial file: a full disk, an exception or a
signal mid-write leaves the previous file (or none) and removes the temporary one.
Every table, record and manifest this tool writes goes through here.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any, Iterator


def temporary_name(path: Path) -> Path:
    """``.<stem>.tmp-<pid><suffix>`` beside ``path``: hidden, this process's own, and with
    the suffix kept (matplotlib picks the image format from it)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write; renamed to ``path`` when the block ends without error,
    removed when it does not."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` whose file appears under ``path`` only once closed without
    error (the close's own flush included: ENOSPC often surfaces there)."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_text(path: Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_json(path: Path, data: Any, **dumps: Any) -> Path:
    """``data`` as JSON (``json.dumps`` keywords: ``indent``, ``default``, ...), newline-ended."""
    return write_text(path, json.dumps(data, **dumps) + "\n")


def save_figure(fig: Any, path: Path, **savefig: Any) -> Path:
    """A matplotlib figure saved atomically (``savefig`` keywords: ``dpi``, ...)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig)
    return Path(path)
