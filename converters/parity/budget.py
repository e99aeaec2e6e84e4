"""Whether per-layer parity can fit this machine's memory, decided before any work.

Parity holds the PyTorch model in float32 and float64 and loads each format in turn;
the runtimes (TensorFlow above all) keep much of what they loaded until the process
ends. A model whose weights alone need more than the memory available fails here, in
one line, instead of being killed by the kernel minutes into parity.
"""
from __future__ import annotations

from zoo.exits import UserError

# Copies of the weights parity keeps resident at its peak: measured, random 604M-parameter
# HugeHeadNet (tests/fixtures/user_model.py, 2.42 GB of weights) outgrew 24 GB while
# capturing its fourth format, about ten copies; a lower bound for any model (activations
# come on top, and dominate for most convolutional ones).
WEIGHT_COPIES = 10


class ParityMemoryError(UserError, ValueError):
    """Per-layer parity cannot fit the memory available (exit 2)."""


def available_bytes() -> int | None:
    """``MemAvailable`` of /proc/meminfo, None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    return kib * 1024


def require_memory(model: str, weight_bytes: int, *, available: int | None = None) -> None:
    """``ParityMemoryError`` naming the need and what is available when ``WEIGHT_COPIES``
    copies of ``weight_bytes`` exceed the memory available now."""
    have = available_bytes() if available is None else available
    need = weight_bytes * WEIGHT_COPIES
    if have is None or need <= have:
        return
    raise ParityMemoryError(
        f"{model}: per-layer parity needs at least {need / 1e9:.1f} GB ({WEIGHT_COPIES} copies "
        f"of its {weight_bytes / 1e9:.2f} GB of weights) and {have / 1e9:.1f} GB is available: "
        "convert with --no-parity, or check parity on a machine with more memory")
