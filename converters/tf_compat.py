"""Guard against a TensorFlow >= 2.20 import-order crash.

TensorFlow's wheels load their core library with RTLD_GLOBAL, putting its
statically linked LLVM in the global symbol table; a later ``import triton``
(which ``import torchvision`` pulls in through torch) then binds to that LLVM
and segfaults (tensorflow/tensorflow#124205). Loading triton first avoids it,
so every module that imports TensorFlow or Keras calls ``preload_triton`` first.
"""
from __future__ import annotations

import importlib.util
import sys


def preload_triton() -> None:
    if "tensorflow" in sys.modules or "triton" in sys.modules:
        return  # too late to help, or nothing to do
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
