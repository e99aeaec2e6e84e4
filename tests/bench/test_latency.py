"""``python -m bench`` (latency): timing statistics, workers, error rows, report, devices."""
from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import replace

import numpy as np
import pytest

from bench.latency.orchestrate import WorkerError, run_worker
from bench.latency.records import Job
from bench.latency.report import COLUMNS, EXTRA_COLUMNS
from bench.latency.timing import Measurement, TimingPolicy, measure
from tests.bench.latency_helpers import FAST_ARGS, read_csv, run_bench_cli, write_synthetic_raw
from zoo.meta import published_meta
from zoo.registry import get_entry

MODEL = "squeezenet1_1"


def test_measurement_statistics_match_numpy():
    samples = [i / 1e3 for i in range(1, 101)]  # 1..100 ms
    random.Random(0).shuffle(samples)
    m = Measurement(tuple(samples))
    arr = np.array(samples) * 1e3
    s = m.summary_ms()
    assert s["median_ms"] == pytest.approx(50.5)
    assert s["iqr_ms"] == pytest.approx(np.percentile(arr, 75) - np.percentile(arr, 25))
    assert s["iqr_ms"] == pytest.approx(49.5)
    assert s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["n_samples"] == 100 and m.raw_times == tuple(samples)  # raw order kept
    assert m.unstable and s["iqr_rel"] == pytest.approx(49.5 / 50.5)


def test_unstable_flag_threshold():
    steady = Measurement((0.010,) * 8 + (0.0104, 0.0096))
    assert steady.iqr == 0.0 and not steady.unstable
    spread = Measurement((0.009, 0.009, 0.011, 0.011))  # IQR 2 ms on a 10 ms median
    assert spread.iqr_rel == pytest.approx(0.2) and spread.unstable
    assert Measurement.from_json(json.loads(json.dumps(spread.to_json()))) == spread


def test_measure_follows_the_policy_on_a_known_sleep():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    policy = TimingPolicy(min_time=0.05, min_runs=5, warmup_runs=2, warmup_time=0.0)
    m = measure(fn, policy)
    assert m.warmup_runs == 2 and len(calls) == m.n + 2
    assert m.n >= 5 and sum(m.raw_times) >= 0.05 - 0.005
    assert 0.002 <= m.median < 0.05 and m.clock == "perf_counter"
    capped = measure(lambda: time.sleep(0.01),
                     TimingPolicy(min_time=10, min_runs=1000, warmup_runs=0, warmup_time=0,
                                  max_time=0.03, floor_runs=3))
    assert 3 <= capped.n < 10  # max_time stops a slow row after floor_runs calls


def test_harness_overhead_is_negligible_on_a_fixed_workload():
    from bench.latency.overhead import harness_overhead

    a = np.random.default_rng(0).standard_normal((256, 256), dtype=np.float32)
    result = harness_overhead(lambda: a @ a, call_s=1e-3, rounds=3)
    assert result["empty_call_ns"] < 20_000
    assert result["empty_call_rel"] < 0.02
    assert result["bare_mean_ms"] > 0 and len(result["overhead_rel_per_round"]) == 3


def test_worker_that_dies_is_an_error_not_a_crash():
    with pytest.raises(WorkerError, match="timed out"):
        run_worker(Job(kind="peak", threads=1), timeout=0.01)


def test_report_tables_from_raw_records(tmp_path):
    from bench.latency.report import generate

    raw = write_synthetic_raw(tmp_path / "raw" / "latency-cpu-2t-x.jsonl",
                              medians_ms={"fast": 20.0, "slow": 80.0})
    paths = generate(raw, tmp_path)
    assert {p.name for p in paths.values()} == {"latency-cpu-2t-x.csv", "latency-cpu-2t-x.md",
                                                "latency-cpu-2t-x.png"}
    with paths["csv"].open() as fh:
        assert next(csv.reader(fh)) == [*COLUMNS, *EXTRA_COLUMNS]
    rows = {r["runtime"]: r for r in read_csv(tmp_path)}
    fast = rows["fast"]  # samples 18, 20, 20, 21, 30 ms
    assert float(fast["median_ms"]) == pytest.approx(20.0)
    assert float(fast["iqr_ms"]) == pytest.approx(1.0)
    assert float(fast["p90_ms"]) == pytest.approx(26.4)
    assert float(fast["mean_ms"]) == pytest.approx(21.8) and fast["n_samples"] == "5"
    # 2 GFLOPs x batch 4 in 20 ms = 400 GFLOP/s; the faster synthetic peak is 100.
    assert float(fast["gflops_per_s"]) == pytest.approx(400.0)
    assert float(fast["peak_fraction"]) == pytest.approx(4.0)
    assert float(rows["slow"]["peak_fraction"]) == pytest.approx(1.0)
    assert fast["artifact_mb"] == "1.0" and fast["unstable"] == "False"
    assert rows["broken"]["error"] == "RuntimeError: boom" and rows["broken"]["median_ms"] == ""
    md = paths["md"].read_text()
    assert "| tiny | random weights (seed 0) | 4 | fast | 20 | 400 | 400.0% |" in md
    assert "best of before the models: 100.0; after the models: 80.0" in md


def test_rows_pool_the_samples_of_their_processes():
    from bench.latency.records import LatencyRecord
    from bench.latency.report import RawRun, table_rows
    from bench.latency.timing import Measurement

    def record(times_ms, repeat, error=""):
        m = Measurement(tuple(t / 1e3 for t in times_ms)).to_json() if times_ms else None
        return LatencyRecord("tiny", "x", "fp32", "cpu", 1, 2, "random", measurement=m,
                             load_s=float(repeat + 1), repeat=repeat, error=error)

    run = RawRun(env={}, latency=[record([10, 11, 12], 0), record([13, 14, 15, 16], 1),
                                  record([], 2, error="RuntimeError: boom")])
    (row,) = table_rows(run)
    assert row["median_ms"] == pytest.approx(13.0) and row["n_samples"] == 7  # 10..16 pooled
    assert row["n_processes"] == 2 and row["process_spread"] == pytest.approx((14.5 - 11) / 11, rel=1e-3)
    assert row["load_s"] == 2.0  # the median process
    assert row["error"] == "1 of 3 processes failed: RuntimeError: boom"


def test_compare_flags_runs_that_disagree(tmp_path):
    from bench.latency.compare import main as compare

    a = write_synthetic_raw(tmp_path / "a.jsonl", medians_ms={"x": 10.0, "y": 50.0})
    b = write_synthetic_raw(tmp_path / "b.jsonl", medians_ms={"x": 10.5, "y": 52.0})
    c = write_synthetic_raw(tmp_path / "c.jsonl", medians_ms={"x": 12.0, "y": 50.0})
    assert compare([str(a), str(b)]) == 0  # 5% and 4%
    assert compare([str(a), str(c), "--markdown", str(tmp_path / "ac.md")]) == 1  # 20%
    md = (tmp_path / "ac.md").read_text()
    assert "worst difference 20.0% over 2 rows (tolerance 10%): FAIL" in md
    assert "| tiny | x | 4 | 2 | 10 | 12 | 20.0% | > tolerance |" in md
    assert compare([str(a), str(tmp_path / "missing.jsonl")]) == 2


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One real run: the bench converts squeezenet1_1 itself, then 3 runtimes at batch 1 and 2."""
    root = tmp_path_factory.mktemp("bench")
    proc = run_bench_cli("--models", MODEL, "--runtimes", "pytorch", "onnxruntime",
                         "tflite_fp32", "--batch-sizes", "1,2", "--weights", "random",
                         *FAST_ARGS, "--repeats", "2", "--artifacts", str(root / "artifacts"),
                         "--results", str(root / "results"), "--name", "test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root, proc


def test_run_writes_raw_csv_markdown_and_plot(bench_run):
    root, proc = bench_run
    stem = "latency-cpu-1t-"
    raw = list((root / "results" / "raw").glob(f"{stem}*-test.jsonl"))
    assert len(raw) == 1
    lines = [json.loads(x) for x in raw[0].read_text().splitlines()]
    assert lines[0]["type"] == "env" and lines[0]["threads"] == 1 and lines[0]["cpu"]
    assert {x["type"] for x in lines} == {"env", "convert", "peak", "static", "latency"}
    peaks = [x for x in lines if x["type"] == "peak"]
    assert [p["when"] for p in peaks] == ["before", "after"] and lines[-1]["type"] == "peak"
    for p in peaks:  # every library's GEMM measured, the peak is the fastest of them
        assert {k.split(" n=")[0] for k in p["by_size"]} == {
            "torch.mm", "numpy.matmul", "onnxruntime.MatMul"}
        assert p["gflops_per_s"] == max(v["gflops_per_s"] for v in p["by_size"].values()) > 1
    convert = next(x for x in lines if x["type"] == "convert")
    assert convert["converted"] and "random weights" in convert["weights_label"]
    latency = [x for x in lines if x["type"] == "latency"]
    assert all(len(x["measurement"]["raw_times"]) == x["measurement"]["n_samples"] >= 3
               for x in latency)
    # two interleaved passes: every (runtime, batch) once per pass, the second after the first
    assert [x["repeat"] for x in latency] == [0] * 6 + [1] * 6
    csv_path = raw[0].parent.parent / f"{raw[0].stem}.csv"
    with csv_path.open() as fh:
        assert next(csv.reader(fh)) == [*COLUMNS, *EXTRA_COLUMNS]
    md = csv_path.with_suffix(".md").read_text()
    assert "## Fastest runtime per model" in md and "random weights" in md
    assert csv_path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "median ms" in proc.stdout  # the rich summary table


def test_rows_carry_real_numbers(bench_run):
    root, _ = bench_run
    rows = read_csv(root / "results")
    assert {(r["runtime"], r["batch_size"]) for r in rows} == {
        (rt, b) for rt in ("pytorch", "onnxruntime", "tflite_fp32") for b in ("1", "2")}
    meta = published_meta(get_entry(MODEL))
    for r in rows:
        assert r["error"] == "" and r["weights"].startswith("random weights")
        assert r["n_processes"] == "2" and float(r["process_spread"]) >= 0
        assert int(r["params"]) == meta.num_params
        assert float(r["gflops"]) == pytest.approx(meta.gflops * 2, rel=0.02)
        median, batch = float(r["median_ms"]), int(r["batch_size"])
        assert float(r["iqr_ms"]) >= 0 and float(r["p99_ms"]) >= float(r["p90_ms"]) >= median > 0
        rate = float(r["gflops"]) * batch / (median / 1e3)
        assert float(r["gflops_per_s"]) == pytest.approx(rate, rel=1e-3)
        assert float(r["peak_fraction"]) > 0 and float(r["load_s"]) > 0
        assert 20 < float(r["peak_rss_mb"]) < 8000 and r["threads"] == "1"
    torch_rows = [r for r in rows if r["runtime"] == "pytorch"]
    assert all(0 < float(r["peak_fraction"]) <= 1 for r in torch_rows)  # same library as the GEMM
    assert {r["artifact_mb"] != "" for r in rows if r["runtime"] != "pytorch"} == {True}


def test_failing_runtime_is_a_row_and_the_run_goes_on(bench_run):
    root, _ = bench_run
    broken = root / "artifacts" / MODEL / f"{MODEL}_float32.tflite"
    broken.write_bytes(b"not a flatbuffer")
    proc = run_bench_cli("--models", MODEL, "--runtimes", "tflite_fp32", "onnxruntime",
                         *FAST_ARGS, "--artifacts", str(root / "artifacts"),
                         "--results", str(root / "broken"))
    assert proc.returncode == 3, proc.stderr[-2000:]  # partial: some rows errored
    rows = {r["runtime"]: r for r in read_csv(root / "broken")}
    assert rows["tflite_fp32"]["error"] and rows["tflite_fp32"]["median_ms"] == ""
    assert rows["onnxruntime"]["error"] == "" and float(rows["onnxruntime"]["median_ms"]) > 0


def test_cli_rejects_bad_input_in_one_line(capsys, tmp_path):
    from bench.latency.cli import available_cpus, main

    (tmp_path / "file").write_text("x")
    cases = {("--models", "no_such_net"): "unknown model",
             ("--runtimes", "no_such_runtime"): "no_such_runtime",
             ("--batch-sizes", "1,x"): "--batch-sizes",
             ("--threads", "999"): f"use 1 to {available_cpus()}",
             ("--threads", "0"): "--threads 0",
             ("--min-time", "-1"): "--min-time must be positive",
             ("--min-time", "nan"): "--min-time must be positive",
             ("--repeats", "0"): "--repeats must be positive",
             ("--warmup-time", "-0.5"): "--warmup-time must be 0 or more",
             ("--min-time", "5", "--max-time", "1"): "below --min-time",
             ("--results", str(tmp_path / "file" / "sub")): "is a file, not a folder",
             ("--artifacts", str(tmp_path / "file")): "it is a file"}
    for args, words in cases.items():
        assert main(["--models", "squeezenet1_1", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], (args, err)
    assert not (tmp_path / "results").exists()


def test_exit_status_of_rows():
    from bench.latency.console import rows_status

    assert rows_status(6, 0) == 0
    assert rows_status(6, 2) == 3  # partial: the table has error rows
    assert rows_status(3, 3) == 3  # "3 of 3 rows have an error" is not a success
    assert rows_status(0, 0) == 3


@pytest.mark.skipif(_cuda := __import__("torch").cuda.is_available(),
                    reason="this machine has a GPU: the no-GPU error path does not apply")
def test_cuda_without_gpu_is_one_clear_error():
    proc = run_bench_cli("--device", "cuda", "--models", MODEL)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda") and not proc.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_path_measures_with_events_and_gpu_memory(tmp_path):
    proc = run_bench_cli("--device", "cuda", "--models", MODEL, "--runtimes", "pytorch",
                         "onnxruntime", "--weights", "random", *FAST_ARGS,
                         "--artifacts", str(tmp_path / "artifacts"),
                         "--results", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    raw = next((tmp_path / "results" / "raw").glob("latency-cuda-*.jsonl"))
    records = [json.loads(x) for x in raw.read_text().splitlines()]
    torch_row = next(r for r in records if r.get("runtime") == "pytorch")
    assert torch_row["error"] == "" and torch_row["measurement"]["clock"] == "cuda_event"
    assert torch_row["peak_gpu_mb"] or torch_row["details"]["torch_gpu_peak_mb"]
    peak = next(r for r in records if r["type"] == "peak")
    assert peak["gflops_per_s"] > 1000  # any CUDA GPU does over 1 TFLOP/s in fp32
    ort_row = next(r for r in records if r.get("runtime") == "onnxruntime")
    assert ort_row["error"] == "" or "CUDAExecutionProvider" in ort_row["error"]


def test_a_failing_conversion_step_drops_only_its_formats(monkeypatch, tmp_path):
    from bench.latency import artifacts
    from converters.tf_export import ConversionError

    attempts = []

    def fake_convert(model, weights, root, formats):
        attempts.append(formats)
        if set(formats) & set(artifacts.TF_FORMATS):
            raise ConversionError("onnx2tf failed on m.onnx: onnx_op_name: wa/x/Div")
        if "keras" in formats:
            raise ValueError("unsupported op Foo at node /x/Foo")

    monkeypatch.setattr(artifacts, "_convert", fake_convert)
    made, note = artifacts.convert_what_converts("m", "random", tmp_path, artifacts.ARTIFACT_FORMATS)
    assert made == ("onnx",) and len(attempts) == 3
    assert note == ("no tf_savedmodel/tflite_fp32/tflite_fp16: ConversionError: onnx2tf failed on "
                    "m.onnx: onnx_op_name: wa/x/Div; no keras: ValueError: unsupported op Foo at "
                    "node /x/Foo")
    monkeypatch.setattr(artifacts, "_convert", lambda *a: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):  # the ONNX export itself failed: nothing left to drop
        artifacts.convert_what_converts("m", "random", tmp_path, ("onnx",))


def test_reuse_accepts_only_the_gaps_the_catalog_expects(tmp_path):
    from bench.latency.artifacts import ARTIFACT_FORMATS, reuse_existing
    from converters.manifest import ArtifactRecord, Manifest

    for model in ("convnext_tiny", "resnet18"):
        (tmp_path / model).mkdir()
        Manifest(model=model, weights={"kind": "random", "spec": "random:0", "label": "random"},
                 input_spec={}, artifacts=[ArtifactRecord(f, f"{f}.bin", "NCHW", "fp32", None, 1,
                                                          "0" * 64) for f in ("onnx", "keras")]
                 ).write(tmp_path / model)
    job = Job(kind="convert", model="convnext_tiny", formats=ARTIFACT_FORMATS)
    reused = reuse_existing(job, tmp_path / "convnext_tiny")
    assert reused and reused.formats == ("onnx", "keras")
    assert reused.note.startswith("no tf_savedmodel/tflite_fp16/tflite_fp32: onnx2tf 1.28")
    assert reuse_existing(replace(job, model="resnet18"), tmp_path / "resnet18") is None
