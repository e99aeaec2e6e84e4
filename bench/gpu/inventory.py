"""What a GPU run can use on this machine, in one line: ``python -m bench.gpu.inventory``.

Python, PyTorch with its CUDA, cuDNN and GPU, ONNX Runtime's providers and whether an fp16
ONNX converter is there, TensorFlow's GPUs, TensorRT, Triton (torch.compile), and the
offline ImageNet weights. Nothing is installed or downloaded; a library that is missing is
named as missing. ``--json`` prints the same as one JSON object.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from typing import Any, Callable


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def _torch() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version(),
                           "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                      "capability": f"sm_{props.major}{props.minor}",
                      "count": torch.cuda.device_count(),
                      "bf16": torch.cuda.is_bf16_supported()}
    return out


def _onnxruntime() -> dict[str, Any]:
    import onnxruntime as ort

    from converters.onnx_fp16 import converter_problem

    return {"onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "fp16_converter": converter_problem() or "yes"}


_TF_PROBE = ("import json, tensorflow as tf; print(json.dumps({'tensorflow': tf.__version__, "
             "'tf_gpus': [d.name for d in tf.config.list_physical_devices('GPU')]}))")


def _tensorflow() -> dict[str, Any]:
    """In its own process: TensorFlow imported beside PyTorch can crash the interpreter."""
    import os
    import subprocess

    from bench.latency.availability import missing_module

    if why := missing_module("tensorflow"):
        return {"tensorflow": why}
    proc = subprocess.run([sys.executable, "-c", _TF_PROBE], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return {"tensorflow": f"unavailable (exit {proc.returncode}: {tail})"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


PROBES: dict[str, Callable[[], dict[str, Any]]] = {
    "torch": _torch, "onnxruntime": _onnxruntime, "tensorflow": _tensorflow}


def inventory() -> dict[str, Any]:
    """Every probe's findings; a probe that cannot import its library says why."""
    from zoo.env import gpu_info
    from zoo.registry import get_entry, list_models
    from zoo.weights import imagenet_available_offline

    out: dict[str, Any] = {"python": f"{platform.python_version()} ({sys.executable})"}
    for name, probe in PROBES.items():
        try:
            out.update(probe())
        except Exception as exc:  # noqa: BLE001  ImportError, a broken CUDA library, ...
            out[name] = f"unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    out["torchvision"] = _version("torchvision") or "not installed"
    out["tensorrt"] = _version("tensorrt") or "not installed"
    out["triton"] = _version("triton") or "not installed"
    info = gpu_info() if isinstance(out.get("gpu"), dict) else None
    out["driver"] = info["driver"] if info else ""
    out["imagenet_weights_offline"] = [m for m in list_models()
                                       if imagenet_available_offline(get_entry(m))]
    return out


def one_line(inv: dict[str, Any]) -> str:
    gpu = inv.get("gpu")
    gpu_text = (f"{gpu['name']} x{gpu['count']} ({gpu['memory_gib']} GiB, {gpu['capability']}, "
                f"bf16 {'yes' if gpu['bf16'] else 'no'}, driver {inv.get('driver') or '?'})"
                if isinstance(gpu, dict) else "none")
    ort = (f"onnxruntime {inv['onnxruntime']} [{', '.join(inv.get('providers', []))}] "
           f"fp16 converter: {inv.get('fp16_converter')}")
    tf = (f"tensorflow {inv['tensorflow']} GPUs {inv.get('tf_gpus')}"
          if "tf_gpus" in inv else f"tensorflow {inv.get('tensorflow')}")
    return (f"python {inv['python']} | torch {inv.get('torch')} CUDA {inv.get('cuda')} "
            f"cuDNN {inv.get('cudnn')} torchvision {inv['torchvision']} triton {inv['triton']} | "
            f"GPU {gpu_text} | {ort} | {tf} | tensorrt {inv['tensorrt']} | ImageNet weights "
            f"offline: {', '.join(inv['imagenet_weights_offline']) or 'none (random weights)'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.inventory", description=__doc__)
    p.add_argument("--json", action="store_true", help="one JSON object instead of a line")
    args = p.parse_args(argv)
    inv = inventory()
    print(json.dumps(inv, default=str) if args.json else one_line(inv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
