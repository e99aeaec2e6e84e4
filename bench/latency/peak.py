"""The machine's own fp32 peak (on GPU also TF32, fp16 and bf16): large GEMMs timed by the
same protocol as the models.

The peak is the fastest single call over sizes and libraries (``torch.mm``, and
on CPU also ``numpy.matmul`` and ONNX Runtime's ``MatMul``, whose MLAS kernels
can beat the BLAS torch uses): noise on a shared machine only ever slows a GEMM
down, so the fastest call is the closest estimate of what the hardware can do,
and model rates (from medians) are read against it.
"""
from __future__ import annotations

from typing import Any, Callable

from bench.latency.records import Job, PeakRecord
from bench.latency.timing import measure

GEMM_SIZES: dict[str, tuple[int, ...]] = {"cpu": (512, 1024, 2048), "cuda": (4096, 8192)}


def strict_fp32() -> None:
    """No TF32 on GPU: fp32 rows and the fp32 peak then mean the same arithmetic."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _torch_gemm(job: Job, n: int, dtype: str = "float32") -> Callable[[], Any]:
    import torch

    device, kind = job.device, getattr(torch, dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    # Random operands, never zeros: a GEMM on zeros runs faster than on data (METHOD.md).
    a = torch.randn(n, n, device=device, generator=gen).to(kind)
    b = torch.randn(n, n, device=device, generator=gen).to(kind)
    out = torch.empty(n, n, device=device, dtype=kind)
    return lambda: torch.mm(a, b, out=out)


def _operands(n: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))


def _numpy_gemm(job: Job, n: int) -> Callable[[], Any]:
    import numpy as np

    a, b = _operands(n)
    out = np.empty((n, n), dtype=np.float32)
    return lambda: np.matmul(a, b, out=out)


def _onnxruntime_gemm(job: Job, n: int) -> Callable[[], Any]:
    """A one-node ONNX ``MatMul`` graph, with the thread settings of the ONNX Runtime rows."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = job.threads, 1
    session = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    feed = dict(zip("ab", _operands(n)))
    return lambda: session.run(["c"], feed)


GEMMS: dict[str, dict[str, Callable[[Job, int], Callable[[], Any]]]] = {
    "cpu": {"torch.mm": _torch_gemm, "numpy.matmul": _numpy_gemm,
            "onnxruntime.MatMul": _onnxruntime_gemm},
    "cuda": {"torch.mm": _torch_gemm},
}


# The GPU's other precisions (cuBLAS through torch.mm): the reference of the tf32, fp16
# and bf16 rows. (torch dtype, TF32 allowed)
CUDA_PRECISIONS: dict[str, tuple[str, bool]] = {
    "tf32": ("float32", True), "fp16": ("float16", False), "bf16": ("bfloat16", False)}


def _rate(job: Job, fn: Callable[[], Any], n: int, clock: str) -> dict[str, Any]:
    m = measure(fn, job.timing, clock=clock)
    flops = 2 * n**3
    return {"gflops_per_s": flops / min(m.raw_times) / 1e9,
            "median_gflops_per_s": flops / m.median / 1e9, "measurement": m.to_json()}


def _cuda_precisions(job: Job) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """torch.mm rates in TF32, fp16 and bf16 (the fp32 one is measured with the others)."""
    import torch

    by_size: dict[str, dict[str, Any]] = {}
    best: dict[str, float] = {}
    for precision, (dtype, tf32) in CUDA_PRECISIONS.items():
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            for n in GEMM_SIZES[job.device]:
                key = f"torch.mm {precision} n={n}"
                by_size[key] = _rate(job, _torch_gemm(job, n, dtype), n, "cuda_event")
                best[precision] = max(best.get(precision, 0.0), by_size[key]["gflops_per_s"])
        finally:
            strict_fp32()
    return by_size, best


def gemm_peak(job: Job) -> PeakRecord:
    """fp32 GEMM rates (2*n^3 FLOPs per call) per library and size; the best is the peak.
    On CUDA also TF32, fp16 and bf16 (``by_precision``: each precision's own peak)."""
    import torch

    torch.set_num_threads(job.threads)
    if job.device == "cuda":
        strict_fp32()
    clock = "cuda_event" if job.device == "cuda" else "perf_counter"
    by_size: dict[str, dict[str, Any]] = {}
    for lib, make in GEMMS[job.device].items():
        for n in GEMM_SIZES[job.device]:
            by_size[f"{lib} n={n}"] = _rate(job, make(job, n), n, clock)
    best = max(v["gflops_per_s"] for v in by_size.values())
    by_precision = {"fp32": best}
    if job.device == "cuda":
        others, rates = _cuda_precisions(job)
        by_size.update(others)
        by_precision.update(rates)
    return PeakRecord(device=job.device, threads=job.threads, gflops_per_s=best, by_size=by_size,
                      by_precision=by_precision)
