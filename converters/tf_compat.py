"""Guard against a TensorFlow >= 2.20 import-order crash.

TensorFlow's wheels load their core library with RTLD_GLOBAL, putting its
statically linked LLVM in the global symbol table; a later ``import triton``
(which ``import torchvision`` pulls in through torch) then binds to that LLVM
and segfaults (tensorflow/tensorflow#124205). Loading triton first avoids it,
so every module that imports TensorFlow or Keras calls ``preload_triton`` first.

It then imports TensorFlow with the native stderr silenced: TensorFlow, absl and
LiteRT print start-up lines (oneDNN, "no cuda drivers", CPU features, cuInit,
XNNPACK) that say nothing about the user's conversion. ``MODELZOO_VERBOSE=1``
(``--verbose`` on the command lines) keeps them.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from typing import Iterator

from zoo.cli import VERBOSE_ENV

def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "0") not in ("0", "", "false", "no")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null for the block (unless verbose).

    Only for short native calls known to chatter: Python exceptions raised inside still
    propagate and are printed after the block, with stderr restored.
    """
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def preload_triton() -> None:
    """Load triton before TensorFlow, then TensorFlow itself, quietly."""
    if "tensorflow" in sys.modules:
        return  # too late to help, or done already
    if importlib.util.find_spec("tensorflow") is None:
        return  # no TensorFlow here (a GPU machine with PyTorch alone): nothing to order
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    if not verbose():  # TensorFlow's own C++ warnings during conversion, after import too
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs cuInit failures: now
