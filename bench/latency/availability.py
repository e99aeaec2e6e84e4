"""Can a runtime run here? One-line reasons, asked in the parent before any worker starts.

A probe takes the device and returns "" when the runtime can run, else why not
("no CUDA GPU ...", "onnxruntime 1.30.0 has no CUDAExecutionProvider ..."). Probes are
cheap: they look for modules and ask for provider lists, and never load a model. What only
a load can tell (a provider that fails to start, TensorFlow without a GPU) stays a row error
in the worker.
"""
from __future__ import annotations

import importlib.util
from typing import Callable

Probe = Callable[[str], str]


def always(device: str) -> str:
    return ""


def missing_module(name: str) -> str:
    """"" when ``name`` is importable, else "<name> is not installed"."""
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken install
        found = False
    return "" if found else f"{name.split('.')[0]} is not installed"


def no_gpu() -> str:
    """"" when PyTorch sees a CUDA GPU, else why not (every CUDA runtime asks this first)."""
    if why := missing_module("torch"):
        return f"no CUDA GPU check possible ({why})"
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA GPU (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return ""


def torch_probe(*, bf16: bool = False) -> Probe:
    """PyTorch needs no probe on CPU; on CUDA a visible GPU (and bf16 support when asked)."""
    def probe(device: str) -> str:
        if device != "cuda":
            return ""
        import torch

        if why := no_gpu():
            return why
        if bf16 and not torch.cuda.is_bf16_supported():
            return f"{torch.cuda.get_device_name(0)} has no bf16 support"
        return ""

    return probe


def ort_probe(provider: str, *, needs: tuple[Probe, ...] = ()) -> Probe:
    """ONNX Runtime with ``provider`` among its available providers (CPU: any install)."""
    def probe(device: str) -> str:
        if why := missing_module("onnxruntime"):
            return why
        if device == "cuda":
            import onnxruntime as ort

            have = ort.get_available_providers()
            if provider not in have:
                return (f"onnxruntime {ort.__version__} has no {provider} (has "
                        f"{', '.join(have)}): install onnxruntime-gpu")
        for need in needs:
            if why := need(device):
                return why
        return ""

    return probe


def module_probe(*names: str) -> Probe:
    """Every module in ``names`` importable (TensorFlow, Keras, LiteRT)."""
    def probe(device: str) -> str:
        return next((why for name in names if (why := missing_module(name))), "")

    return probe


def fp16_onnx_probe(device: str) -> str:
    from converters.onnx_fp16 import converter_problem

    return converter_problem()
