"""Peak memory of the worker process: host RSS, and GPU memory on CUDA."""
from __future__ import annotations

import os
import resource
import subprocess
import sys

MB = 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / MB


def current_rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError, IndexError):
        return float("nan")


def process_gpu_mb(pid: int | None = None) -> float | None:
    """GPU memory nvidia-smi attributes to ``pid`` (context, caches and arenas included).

    Runtime-neutral: ONNX Runtime's arena and PyTorch's caching allocator both
    keep their high-water mark, so sampling after the timed loop gives the peak.
    """
    pid = os.getpid() if pid is None else pid
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                              "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            return float(parts[1])  # MiB
    return None


def torch_gpu_peak_mb() -> float | None:
    """PyTorch's own high-water mark of allocated device memory, if torch used CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / MB


def reset_torch_gpu_peak() -> None:
    """Start PyTorch's high-water mark afresh (each batch size of a sweep reports its own)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def gpu_memory() -> tuple[float | None, dict[str, object]]:
    """(peak GPU MB of the row, how it was measured). PyTorch's allocator peak where torch
    ran the row (tensors only: no context, no cuDNN workspace outside its allocator); else
    what nvidia-smi attributes to this process (everything: context, arenas, caches; often
    unreadable inside containers); else None, said so."""
    torch_mb, smi_mb = torch_gpu_peak_mb(), process_gpu_mb()
    details: dict[str, object] = {"torch_gpu_peak_mb": torch_mb, "nvidia_smi_gpu_mb": smi_mb}
    if torch_mb:
        return torch_mb, {**details, "gpu_mb_source": "torch.cuda.max_memory_allocated"}
    if smi_mb:
        return smi_mb, {**details, "gpu_mb_source": "nvidia-smi (process total)"}
    return None, {**details, "gpu_mb_source": "not measured"}
