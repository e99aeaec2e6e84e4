"""The machine's own fp32 peak: large GEMMs timed by the same protocol as the models.

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


def _torch_gemm(job: Job, n: int) -> Callable[[], Any]:
    import torch

    device = job.device
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen)
    b = torch.randn(n, n, device=device, generator=gen)
    out = torch.empty(n, n, device=device)
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


def gemm_peak(job: Job) -> PeakRecord:
    """fp32 GEMM rates (2*n^3 FLOPs per call) per library and size; the best is the peak."""
    import torch

    torch.set_num_threads(job.threads)
    if job.device == "cuda":
        strict_fp32()
    clock = "cuda_event" if job.device == "cuda" else "perf_counter"
    by_size: dict[str, dict[str, Any]] = {}
    for lib, make in GEMMS[job.device].items():
        for n in GEMM_SIZES[job.device]:
            m = measure(make(job, n), job.timing, clock=clock)
            flops = 2 * n**3
            by_size[f"{lib} n={n}"] = {
                "gflops_per_s": flops / min(m.raw_times) / 1e9,
                "median_gflops_per_s": flops / m.median / 1e9, "measurement": m.to_json()}
    best = max(v["gflops_per_s"] for v in by_size.values())
    return PeakRecord(device=job.device, threads=job.threads, gflops_per_s=best, by_size=by_size)
