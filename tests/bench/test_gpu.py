"""The GPU runtimes, batch sweep, per-precision peak and agreement: what a CPU can check
(registry, skip reasons, OOM handling with a fake runner, fp16 ONNX, agreement wiring),
and, marked ``gpu``, what only a CUDA GPU can (they skip here with the reason)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench.latency.records import Job, LatencyRecord
from bench.latency.runtimes import RUNTIMES, available_runtimes, get_runtime, runtimes_for
from bench.latency.timing import TimingPolicy
from tests.bench.latency_helpers import run_bench_cli

CUDA = __import__("torch").cuda.is_available()
gpu_only = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() "
                                               "is False)")
no_gpu_here = pytest.mark.skipif(CUDA, reason="this machine has a GPU: the no-GPU skip "
                                              "reasons do not apply")
TORCH_GPU = {"pytorch_tf32": "tf32", "pytorch_fp16": "fp16", "pytorch_bf16": "bf16",
             "pytorch_fp16_cl": "fp16", "pytorch_graph": "fp32", "pytorch_fp16_graph": "fp16"}
ORT_GPU = {"onnxruntime_fp16": "fp16", "onnxruntime_trt": "fp32", "onnxruntime_trt_fp16": "fp16"}
FAST = TimingPolicy(min_time=0.01, min_runs=3, warmup_runs=1, warmup_time=0.0)


def test_registry_lists_the_gpu_runtimes_with_their_precision():
    for name, precision in {**TORCH_GPU, **ORT_GPU}.items():
        rt = get_runtime(name)
        assert rt.devices == ("cuda",) and rt.precision == precision, name
        assert rt.cuda_clock == ("cuda_event" if name.startswith("pytorch") else "perf_counter")
    assert "cuda" in get_runtime("tf_savedmodel").devices
    default = runtimes_for("cuda")
    assert set(TORCH_GPU) | set(ORT_GPU) | {"pytorch", "torch_compile", "onnxruntime"} <= set(
        default)
    assert "torch_compile_max" in RUNTIMES and "torch_compile_max" not in default
    assert not set(TORCH_GPU) & set(runtimes_for("cpu"))  # CPU runs are unchanged


@no_gpu_here
def test_cuda_runtimes_are_skipped_here_with_the_reason():
    runnable, skipped = available_runtimes(runtimes_for("cuda"), "cuda")
    assert runnable == [] and set(skipped) == set(runtimes_for("cuda"))
    assert all(why.startswith("no CUDA GPU") for why in skipped.values()), skipped
    assert get_runtime("keras").unavailable("cuda") == "runs on cpu only"
    assert get_runtime("pytorch_fp16").unavailable("cpu") == "runs on cuda only"
    assert get_runtime("pytorch").unavailable("cpu") == ""


@no_gpu_here
def test_list_runtimes_says_what_is_skipped_on_cuda_and_why():
    proc = run_bench_cli("--list-runtimes", "--device", "cuda", timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.strip()}
    assert set(lines) == set(RUNTIMES)
    for name in (*TORCH_GPU, "pytorch", "onnxruntime_fp16"):
        assert lines[name].endswith("]") and "[skipped on cuda: no CUDA GPU" in lines[name]
    assert "(by name only)" in lines["torch_compile_max"]


def test_a_runtime_that_cannot_run_is_left_out_with_its_reason(tmp_path):
    from bench.latency.cli import build_parser, header, parse_options

    args = build_parser().parse_args(["--models", "squeezenet1_1", "--runtimes",
                                      "pytorch,pytorch_fp16", "--threads", "1",
                                      "--results", str(tmp_path)])
    opts = parse_options(args)
    assert opts.runtimes == ("pytorch",)
    assert dict(opts.skipped) == {"pytorch_fp16": "runs on cuda only"}
    assert header(opts, ["bench"])["bench"]["skipped_runtimes"] == dict(opts.skipped)


def test_the_sweep_stops_at_the_first_batch_that_runs_out_of_memory():
    from bench.latency.worker import is_out_of_memory, measure_sweep

    rows = [LatencyRecord("m", "r", "fp32", "cuda", b, 1, "w") for b in (128, 1, 32, 8)]
    tried = []

    def fake(row: LatencyRecord) -> None:
        tried.append(row.batch_size)
        if row.batch_size >= 32:
            row.error = "OutOfMemoryError: CUDA out of memory. Tried to allocate 9.19 GiB"

    measure_sweep(rows, fake)
    assert tried == [1, 8, 32]  # smallest first; 128 never tried
    by_batch = {r.batch_size: r.error for r in rows}
    assert by_batch[1] == by_batch[8] == ""
    assert by_batch[32].startswith("OutOfMemoryError")
    assert by_batch[128] == "skipped: batch 32 already ran out of memory"
    assert is_out_of_memory("RuntimeError: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : "
                            "Failed to allocate memory for requested buffer of size 1234")
    assert is_out_of_memory("ResourceExhaustedError: OOM when allocating tensor")
    assert not is_out_of_memory("RuntimeError: shape mismatch")


def test_worker_records_oom_and_skips_larger_batches(monkeypatch):
    """The worker's own loop, with a fake runtime whose runner raises PyTorch's OOM error at
    batch 32: batches 1 and 8 carry real timings, 32 the error, 128 why it was not tried."""
    import torch

    from bench.latency import runtimes, worker
    from converters.runners.base import BaseRunner

    class FakeRunner(BaseRunner):
        def activate_impl(self) -> None:
            pass

        def run_prepared(self, feed):
            x = feed["input"]
            if x.shape[0] >= 32:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.named([np.tanh(x.reshape(x.shape[0], -1)[:, :10])])

    fake = runtimes.Runtime("fake_oom", "fp32", None, ("cpu",),
                            lambda job, spec: FakeRunner(spec), ("numpy",), "fake")
    monkeypatch.setitem(runtimes.RUNTIMES, "fake_oom", fake)
    job = Job(kind="latency", model="squeezenet1_1", runtime="fake_oom",
              batch_sizes=(1, 8, 32, 128), timing=FAST)
    threads = torch.get_num_threads()
    try:
        rows = {r.batch_size: r for r in worker.run_latency(job)}
    finally:
        torch.set_num_threads(threads)  # the worker pins them; this is the test process
    assert rows[1].error == rows[8].error == ""
    assert rows[1].measurement["n_samples"] >= 3 and rows[8].measurement["median_ms"] > 0
    assert rows[32].error.startswith("OutOfMemoryError: CUDA out of memory")
    assert rows[32].measurement is None
    assert rows[128].error == "skipped: batch 32 already ran out of memory"


def test_peak_fraction_uses_the_peak_of_the_rows_precision(tmp_path):
    from bench.latency.records import PeakRecord
    from bench.latency.report import generate, table_rows, load_raw
    from bench.latency.timing import Measurement
    from zoo.env import environment

    m = Measurement((0.010,) * 5).to_json()  # 10 ms at batch 1 of a 2-GFLOP model: 200 GFLOP/s
    env = {"type": "env", **environment(threads=1, weights="random", with_gpu=False),
           "bench": {"device": "cuda", "batch_sizes": [1], "runtimes": ["a", "b", "c"],
                     "skipped_runtimes": {"onnxruntime_fp16": "no CUDA EP here"}}}
    lines = [env, PeakRecord("cuda", 1, gflops_per_s=1000.0, by_precision={
                 "fp32": 1000.0, "tf32": 2000.0, "fp16": 4000.0}).to_json(),
             {"type": "static", "model": "tiny", "weights": "w", "gflops": 2.0}]
    for runtime, precision in (("a", "fp32"), ("b", "fp16"), ("c", "bf16")):
        lines.append(LatencyRecord("tiny", runtime, precision, "cuda", 1, 1, "w",
                                   measurement=m, peak_gpu_mb=12.5).to_json())
    raw = tmp_path / "raw" / "latency-cuda-1t-x.jsonl"
    raw.parent.mkdir()
    raw.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows = {r["runtime"]: r for r in table_rows(load_raw(raw))}
    assert rows["a"]["peak_fraction"] == pytest.approx(0.2)
    assert rows["b"]["peak_fraction"] == pytest.approx(0.05)  # against the fp16 peak
    assert rows["c"]["peak_fraction"] == pytest.approx(0.2)  # no bf16 peak: the fp32 one
    md = generate(raw, tmp_path)["md"].read_text()
    assert "per precision (GFLOP/s" in md and "fp16 4,000" in md
    assert "`onnxruntime_fp16`: no CUDA EP here" in md and "| GPU MB |" in md

    from bench.gpu.summary import latency_summary

    lines = latency_summary(tmp_path / "latency-cuda-1t-x.csv")
    assert lines[0] == "latency-cuda-1t-x.csv: 3 rows measured, 0 with an error, 0 not tried " \
                       "(after out of memory)"
    assert "  not run: onnxruntime_fp16: no CUDA EP here" in lines
    assert any(ln.startswith("  GEMM peak") and "fp16 4.0" in ln for ln in lines)
    assert lines[-1].split()[:2] == ["tiny", "a"]  # fastest at batch 1: the first of equals


def _tiny_onnx():
    """A conv-relu-pool-gemm ONNX model with seeded weights (3x16x16 in, 10 logits out)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    fc = rng.standard_normal((10, 8)).astype(np.float32) * 0.3
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 10])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fp16_onnx_keeps_fp32_io_and_stays_close():
    from converters.onnx_fp16 import converter_problem, to_fp16

    if why := converter_problem():
        pytest.skip(why)
    import onnxruntime as ort
    from onnx import TensorProto

    model = _tiny_onnx()
    half = to_fp16(model)
    elem = TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [elem]
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [elem]
    assert {t.data_type for t in half.graph.initializer} == {TensorProto.FLOAT16}
    assert {t.data_type for t in model.graph.initializer} == {TensorProto.FLOAT}  # untouched
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    def run(m):
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x})[0]

    ref, got = run(model), run(half)
    assert got.dtype == np.float32
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert 0 < err < 1e-2, err  # fp16 rounding: not zero (it did change), far under 1%


def test_onnx_agreement_rows_on_the_cpu_providers(tmp_path):
    """The ONNX Runtime agreement path with the CPU EP standing in for CUDA: the fp32 model
    equals its reference, the fp16 copy differs by fp16 rounding and passes fp16's bar."""
    from bench.gpu.agreement import _run_onnx
    from converters.onnx_fp16 import converter_problem

    if why := converter_problem():
        pytest.skip(why)
    import onnx

    path = tmp_path / "tiny.onnx"
    onnx.save(_tiny_onnx(), str(path))
    x = np.random.default_rng(2).standard_normal((6, 3, 16, 16)).astype(np.float32)
    fp32, fp16 = _run_onnx("tiny", x, "cpu", path, "seeded")
    assert fp32.reference == "onnxruntime cpu fp32" and fp32.agreement.max_abs_err == 0.0
    a = fp16.agreement
    assert (a.artifact, a.precision, a.n_images, a.error) == ("onnxruntime_fp16", "fp16", 6, "")
    assert 0 < a.max_abs_err < a.tolerance and a.passed


def test_agreement_compares_each_way_with_pytorch_on_the_cpu():
    """On the CPU as a stand-in device: fp32 equals the reference exactly, bf16 autocast
    differs by real bf16 rounding yet keeps every top-1 and passes its bar."""
    from bench.gpu.agreement import TORCH_WAYS, photos_batch, torch_rows

    x, _ = photos_batch("squeezenet1_1", 4)
    fp32, bf16 = torch_rows("squeezenet1_1", x, "cpu", weights="random",
                            ways=(TORCH_WAYS[0], TORCH_WAYS[3]))
    assert fp32.agreement.max_abs_err == 0.0 and fp32.agreement.passed
    a = bf16.agreement
    assert (a.artifact, a.precision, a.n_images) == ("pytorch_bf16", "bf16", 4)
    assert 0 < a.max_abs_err < a.tolerance and a.top1_agreement == 1.0 and a.passed
    assert fp32.reference == "pytorch cpu fp32" and fp32.weights.startswith("random")


# ---- on a CUDA GPU only ------------------------------------------------------------


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("runtime", sorted(TORCH_GPU))
def test_gpu_torch_runtime_measures_with_events(runtime):
    from bench.latency.orchestrate import run_worker

    job = Job(kind="latency", model="squeezenet1_1", runtime=runtime, device="cuda",
              batch_sizes=(1, 8), weights="random", weights_label="random", timing=FAST)
    rows = [LatencyRecord.from_json(r) for r in run_worker(job, timeout=300)]
    for row in rows:
        assert row.error == "", row.error
        assert row.measurement["clock"] == "cuda_event" and row.measurement["median_ms"] > 0
        assert row.peak_gpu_mb and row.details["gpu_mb_source"].startswith("torch")
    assert rows[1].peak_gpu_mb > rows[0].peak_gpu_mb  # batch 8 holds more than batch 1


@pytest.mark.gpu
@gpu_only
def test_cuda_graph_replays_the_eager_function():
    """Fresh random inputs: the graph's logits equal eager's, for the captured tensor and for
    another tensor copied into it."""
    import torch

    from bench.latency.torch_variants import cuda_graph_module, set_math_mode
    from zoo.build import build_model

    set_math_mode(tf32=False)
    model = build_model("squeezenet1_1", weights="random")[0].cuda().eval()
    graphed = cuda_graph_module(model)
    gen = torch.Generator(device="cuda").manual_seed(1)
    with torch.inference_mode():
        for _ in range(2):
            x = torch.randn(4, 3, 224, 224, device="cuda", generator=gen)
            eager, replay = model(x), graphed(x).clone()
            assert torch.allclose(replay, eager, rtol=1e-5, atol=1e-5)
        y = torch.randn(4, 3, 224, 224, device="cuda", generator=gen)
        assert torch.allclose(graphed(y), model(y), rtol=1e-5, atol=1e-5)
    assert len(graphed.graphs) == 1  # one shape: one capture


@pytest.mark.gpu
@gpu_only
def test_gpu_gemm_peak_per_precision():
    import torch

    from bench.latency.peak import gemm_peak

    threads = torch.get_num_threads()
    try:
        peak = gemm_peak(Job(kind="peak", device="cuda", timing=FAST))
    finally:
        torch.set_num_threads(threads)  # gemm_peak pins the worker's; this is pytest's
    rates = peak.by_precision
    assert set(rates) == {"fp32", "tf32", "fp16", "bf16"} and peak.error == ""
    assert rates["fp32"] == peak.gflops_per_s > 1000
    # tensor cores: every GPU with TF32 (Ampere on) does several times its fp32 rate in fp16
    assert rates["fp16"] > 3 * rates["fp32"] and rates["bf16"] > 3 * rates["fp32"]
    assert rates["tf32"] > 1.5 * rates["fp32"]


@pytest.mark.gpu
@gpu_only
def test_gpu_agreement_with_the_cpu():
    """mobilenet_v2 (ImageNet weights where present, else random) on 8 real photos: fp32 on
    the GPU is the CPU's function to fp32 rounding; TF32 and fp16 within fp16's bar; bf16
    within its own bound, top-1 kept on at least 6 of 8."""
    from bench.gpu.agreement import photos_batch, torch_rows

    x, _ = photos_batch("mobilenet_v2", 8)
    rows = {r.agreement.artifact: r.agreement for r in torch_rows("mobilenet_v2", x, "cuda",
                                                                  weights="auto")}
    assert set(rows) == {"pytorch", "pytorch_tf32", "pytorch_fp16", "pytorch_bf16"}
    assert all(a.error == "" for a in rows.values()), rows
    for name in ("pytorch", "pytorch_tf32", "pytorch_fp16"):
        assert rows[name].passed, rows[name]
    assert rows["pytorch"].top1_agreement == 1.0
    assert rows["pytorch"].max_abs_err < rows["pytorch_fp16"].max_abs_err
    bf16 = rows["pytorch_bf16"]
    assert 0 < bf16.max_abs_err <= bf16.tolerance and bf16.top1_agreement >= 0.75, bf16


@pytest.mark.slow
def test_gpu_script_dry_run_on_the_cpu(tmp_path):
    """bench/gpu/run.sh end to end with DEVICE=cpu and one tiny model: every stage runs, a
    stage over its limit is cut and its records kept, at most 8 files come back."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "WORK": str(tmp_path / "w"),
           "GPU_OUT": str(out), "MODELS": "squeezenet1_1", "RUNTIMES": "pytorch pytorch_fp16",
           "BATCHES": "1", "COMPILE_MODELS": "squeezenet1_1", "BUDGET_COMPILE_S": "12",
           "GPU_BUDGET_S": "400"}
    proc = subprocess.run(["bash", str(REPO / "bench/gpu/run.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= 8 and {"gpu-results.tar.gz", "run.log", "inventory.txt"} <= set(names)
    log = proc.stdout
    assert "skipped: pytorch_fp16 on cpu: runs on cuda only" in log
    assert "latency-cpu-" in log and "1 rows measured, 0 with an error" in log  # batch 1
    assert "=== torch.compile: exit 124" in log  # cut at 12 s: compile takes longer
    assert any(n.endswith(".interrupted.md") for n in names)
