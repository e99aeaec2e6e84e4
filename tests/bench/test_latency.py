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
from zoo.weights import WeightsSource

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


def test_job_carries_its_timing_policy_through_json():
    """The worker gets the job as JSON; a job written with flat timing fields still reads."""
    timing = TimingPolicy(min_time=0.5, min_runs=4, warmup_runs=1, warmup_time=0.0, max_time=9)
    job = Job(kind="latency", model="m", batch_sizes=(1, 8), timing=timing)
    assert Job.from_json(job.to_json()) == job
    flat = json.loads(job.to_json())
    flat.update(flat.pop("timing"))
    del flat["floor_runs"]  # never sent before the policy travelled whole
    assert Job.from_json(json.dumps(flat)) == job


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
    assert float(fast["images_per_s"]) == pytest.approx(200.0)  # 4 images in 20 ms
    assert float(fast["peak_fraction"]) == pytest.approx(4.0)
    assert float(rows["slow"]["peak_fraction"]) == pytest.approx(1.0)
    assert fast["artifact_mb"] == "1.0" and fast["unstable"] == "False"
    assert rows["broken"]["error"] == "RuntimeError: boom" and rows["broken"]["median_ms"] == ""
    md = paths["md"].read_text()
    assert "| tiny | random weights (seed 0) | 4 | fast | 20 | 200 | 400 | 400.0% |" in md
    assert "best of before the models: 100.0; after the models: 80.0" in md
    assert "GFLOPs (2/MAC) counted" in md and "-batch.png" not in md  # one batch size: no sweep


def _sweep_run(models: dict[str, tuple[float, float]], batches=(1,),
               runtimes=("pytorch", "onnxruntime", "tflite_fp32")):
    """A RawRun and its rows: ``models`` maps a name to (GFLOPs, batch-1 ms of the fastest
    runtime); the other runtimes are slower, and latency grows with the batch."""
    from bench.latency.records import LatencyRecord, RawRun, StaticRecord
    from bench.latency.report import table_rows

    run = RawRun(env={"threads": 2, "cpu": "Test CPU", "bench": {"device": "cpu"}})
    for model, (gflops, ms) in models.items():
        run.static[model] = StaticRecord(model, "random weights (seed 0)", gflops=gflops)
        for k, runtime in enumerate(runtimes):
            for b in batches:
                t = ms * (1 + k) * b ** 0.8 / 1e3
                m = Measurement((0.95 * t, t, 1.05 * t)).to_json()
                run.latency.append(LatencyRecord(model, runtime, "fp32", "cpu", b, 2,
                                                 "random weights (seed 0)", measurement=m))
    return run, table_rows(run)


def _overlapping(boxes) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes[i + 1:], i + 1)
            if a.overlaps(b)]


def _tick_label_boxes(axis, renderer):
    return [t.get_window_extent(renderer) for t in axis.get_ticklabels()
            if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("models", [
    # the catalog's crowded corner: mobilenet_v2, mnasnet1_0 and shufflenet_v2_x1_0
    {"mobilenet_v2": (0.60, 3.69), "mnasnet1_0": (0.63, 4.33), "squeezenet1_1": (0.70, 4.0),
     "shufflenet_v2_x1_0": (0.29, 3.58), "mobilenet_v3_large": (0.44, 3.63),
     "regnet_y_400mf": (0.80, 5.71), "efficientnet_b0": (0.77, 6.79),
     "mobilenet_v3_small": (0.11, 0.99), "vgg16": (30.9, 160.0)},
    {"mobilenet_v2": (0.60, 7.3)},  # small runs: one or two models, a narrow range
    {"mobilenet_v2": (0.60, 7.3), "squeezenet1_0": (1.64, 16.4)}])
def test_plot_labels_ticks_and_title_do_not_collide(models):
    from matplotlib.text import Annotation, Text

    from bench.latency.plot import flops_figure

    run, rows = _sweep_run(models)
    fig = flops_figure(run, rows)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = [a for a in fig.axes if a.get_visible()]
    labels = [t for t in ax.texts if isinstance(t, Annotation)]
    assert sorted(t.get_text() for t in labels) == sorted(models)
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text, not its leader
    assert not _overlapping(boxes)
    assert all(ax.bbox.y0 - 1 <= b.y0 and b.y1 <= ax.bbox.y1 + 1 for b in boxes)
    for axis in (ax.xaxis, ax.yaxis):
        ticks = _tick_label_boxes(axis, renderer)
        assert len(ticks) >= 2 and not _overlapping(ticks)
        # plain numbers ("0.5", "20"), not mathtext powers of ten
        assert all("$" not in t.get_text() for t in axis.get_ticklabels())
    title = fig._suptitle.get_window_extent(renderer)
    assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_long_weights_subtitle_wraps_inside_the_figure():
    from bench.latency.plot import fit_suptitle, weights_summary

    rows = [{"model": f"model{i}", "weights": label} for i, label in enumerate(
        ["imagenet (MobileNet_V2_Weights.IMAGENET1K_V1)"] +
        ["random weights (seed 0, BN stats on seeded noise)"] * 10 + ["random weights (seed 0)"])]
    text = weights_summary(rows)
    assert text == ("weights: imagenet (MobileNet_V2_Weights.IMAGENET1K_V1): model0; random "
                    "weights (seed 0, BN stats on seeded noise): 10 models; random weights "
                    "(seed 0): model11")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 3))
    title = fit_suptitle(fig, f"Latency vs FLOPs: cpu\n{text}")
    fig.canvas.draw()
    box = title.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and title.get_text().count("\n") >= 3
    plt.close(fig)


def test_batch_sweep_gets_latency_and_throughput_curves(tmp_path):
    import json

    from bench.latency.plot import batch_figure
    from bench.latency.report import generate

    models = {"mobilenet_v2": (0.6, 3.7), "resnet18": (3.6, 18.0), "alexnet": (1.4, 14.0)}
    run, rows = _sweep_run(models, batches=(1, 2, 4, 8))
    by_key = {(r["model"], r["runtime"], r["batch_size"]): r for r in rows}
    r = by_key[("resnet18", "pytorch", 8)]
    assert r["images_per_s"] == pytest.approx(8 / (r["median_ms"] / 1e3), rel=1e-3)
    fig = batch_figure(run, rows)
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == 2 * len(models)  # latency and images/s per model
    assert [a.get_title() for a in panels[:2]] == ["mobilenet_v2: median latency",
                                                   "mobilenet_v2: images/s"]
    for ax in panels:  # one curve per runtime, one point per batch size
        assert [len(line.get_xdata()) for line in ax.get_lines()] == [4, 4, 4]
    ips = panels[1].get_lines()[0].get_ydata()
    assert list(ips) == pytest.approx([by_key[("mobilenet_v2", "pytorch", b)]["images_per_s"]
                                       for b in (1, 2, 4, 8)], rel=1e-3)
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert batch_figure(*_sweep_run(models)) is None  # one batch size: no sweep figure
    raw = tmp_path / "raw" / "latency-cpu-2t-sweep.jsonl"
    raw.parent.mkdir()
    raw.write_text("".join(json.dumps(x.to_json()) + "\n"
                           for x in [*run.static.values(), *run.latency]))
    paths = generate(raw, tmp_path)
    assert paths["batch"].name == "latency-cpu-2t-sweep-batch.png"
    assert paths["batch"].read_bytes()[:4] == b"\x89PNG"
    assert "](latency-cpu-2t-sweep-batch.png)" in paths["md"].read_text()


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
                         "--results", str(root / "results"), "--name", "test",
                         "--remeasure-peak")
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
    assert "median" in proc.stdout and "GFLOP/s" in proc.stdout  # the rich summary table


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
    folder = root / "artifacts" / MODEL
    broken = folder / f"{MODEL}_float32.tflite"
    broken.write_bytes(b"not a flatbuffer")
    # Recorded as the converter's output, so it is a runtime failure and not damage.
    from converters.manifest import file_record, load_manifest

    manifest = load_manifest(folder)
    record = manifest.artifact("tflite_fp32")
    f = file_record(folder, broken)
    manifest.artifacts[manifest.artifacts.index(record)] = replace(
        record, size_bytes=f.size_bytes, sha256=f.sha256, mtime_ns=f.mtime_ns)
    manifest.write(folder)
    proc = run_bench_cli("--models", MODEL, "--runtimes", "tflite_fp32", "onnxruntime",
                         *FAST_ARGS, "--artifacts", str(root / "artifacts"),
                         "--results", str(root / "broken"))
    assert proc.returncode == 3, proc.stderr[-2000:]  # partial: some rows errored
    rows = {r["runtime"]: r for r in read_csv(root / "broken")}
    assert rows["tflite_fp32"]["error"] and rows["tflite_fp32"]["median_ms"] == ""
    assert rows["onnxruntime"]["error"] == "" and float(rows["onnxruntime"]["median_ms"]) > 0


def test_cli_rejects_bad_input_in_one_line(capsys, tmp_path):
    from zoo.env import available_cpus
    from bench.latency.cli import main

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
    # ONNX Runtime without its CUDA EP (the CPU-only wheel) is left out with the reason
    ort_rows = [r for r in records if r.get("runtime") == "onnxruntime"]
    skipped = records[0]["bench"]["skipped_runtimes"]
    assert (ort_rows and ort_rows[0]["error"] == "") or (
        not ort_rows and "CUDAExecutionProvider" in skipped["onnxruntime"]), (ort_rows, skipped)


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
    assert "onnx" in made and not set(made) & {*artifacts.TF_FORMATS, "keras"}
    assert made == tuple(f for f in artifacts.ARTIFACT_FORMATS  # every format of other steps
                         if f not in (*artifacts.TF_FORMATS, "keras")) and len(attempts) == 3
    assert note == ("no tf_savedmodel/tflite_fp32/tflite_fp16: ConversionError: onnx2tf failed on "
                    "m.onnx: onnx_op_name: wa/x/Div; no keras: ValueError: unsupported op Foo at "
                    "node /x/Foo")
    monkeypatch.setattr(artifacts, "_convert", lambda *a: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):  # the ONNX export itself failed: nothing left to drop
        artifacts.convert_what_converts("m", "random", tmp_path, ("onnx",))


def test_a_failing_int8_step_costs_its_formats_not_the_model(monkeypatch, tmp_path):
    """An exception escaping the pipeline's TFLite int8 (or ONNX int8) step drops that step's
    formats and the rest converts again; the ONNX export failing still loses the model."""
    from bench.latency import artifacts
    from converters.pipeline import _Timer

    int8 = ("onnx_int8", "tflite_int8", "tflite_int8_io")
    attempts = []

    def fake_convert(model, weights, root, formats):
        attempts.append(formats)
        timer = _Timer()
        with timer.step("onnx"):
            pass
        if "tflite_int8" in formats:
            with timer.step("tflite_int8"):
                raise RuntimeError("Quantization not yet supported for op: 'FOO'")
        if "onnx_int8" in formats:
            with timer.step("onnx_int8"):
                raise ValueError("no calibration ranges")

    monkeypatch.setattr(artifacts, "_convert", fake_convert)
    made, note = artifacts.convert_what_converts("m", "random", tmp_path,
                                                 artifacts.ARTIFACT_FORMATS)
    assert made == tuple(f for f in artifacts.ARTIFACT_FORMATS if f not in int8)
    assert "keras" in made and len(attempts) == 3
    assert note == ("no tflite_int8/tflite_int8_io: RuntimeError: Quantization not yet supported "
                    "for op: 'FOO'; no onnx_int8: ValueError: no calibration ranges")

    def export_fails(model, weights, root, formats):
        with _Timer().step("onnx"):
            raise OSError("disk full")

    monkeypatch.setattr(artifacts, "_convert", export_fails)
    with pytest.raises(OSError):  # no format of its own to drop: the model is lost
        artifacts.convert_what_converts("m", "random", tmp_path, artifacts.ARTIFACT_FORMATS)


def test_reuse_accepts_only_the_gaps_the_catalog_expects(tmp_path, monkeypatch):
    import zoo.registry
    from bench.latency.artifacts import reuse_existing
    from converters.formats import default_formats

    # every catalog model reaches TF now (the Keras export where onnx2tf fails): flag one
    real = zoo.registry.get_entry
    monkeypatch.setattr(zoo.registry, "get_entry", lambda name: replace(
        real(name), converts_to_tf=False, notes="onnx2tf 1.28 fails at the GELU's Div")
        if name == "convnext_tiny" else real(name))
    for model in ("convnext_tiny", "resnet18"):
        _write_artifacts(tmp_path / model, ("onnx", "keras"))
    job = Job(kind="convert", model="convnext_tiny", formats=default_formats())
    reused = reuse_existing(job, tmp_path / "convnext_tiny")
    assert reused and reused.formats == ("onnx", "keras")
    assert reused.note.startswith("no tf_savedmodel/tflite_fp16/tflite_fp32: onnx2tf 1.28")
    assert reuse_existing(replace(job, model="resnet18"), tmp_path / "resnet18") is None


def _write_artifacts(folder, formats, *, model=None):
    """Small real files and a manifest that records them (sha256, size, mtime)."""
    from converters.manifest import ArtifactRecord, Manifest, file_record

    folder.mkdir(parents=True)
    records = []
    for fmt in formats:
        (folder / f"{fmt}.bin").write_bytes(fmt.encode() * 100)
        f = file_record(folder, folder / f"{fmt}.bin")
        records.append(ArtifactRecord(fmt, f.path, "NCHW", "fp32", None, f.size_bytes, f.sha256,
                                      f.mtime_ns))
    Manifest(model=model or folder.name,
             weights=WeightsSource("random", "random weights (seed 0)", "", False, 0),
             input_spec={}, artifacts=records).write(folder)
    return folder


def _damage(path) -> None:
    with path.open("r+b") as fh:  # same size: only the sha256 can tell
        fh.seek(path.stat().st_size // 2)
        fh.write(b"\xff" * 8)


def test_reuse_verifies_what_it_reuses(tmp_path, capsys):
    from bench.latency.artifacts import reuse_existing

    folder = _write_artifacts(tmp_path / MODEL, ("onnx", "keras"))
    job = Job(kind="convert", model=MODEL, formats=("onnx", "keras"))
    assert reuse_existing(job, folder).formats == ("onnx", "keras")  # intact: reused
    _damage(folder / "keras.bin")
    # a damaged artifact the run does not time changes no row: still reused
    assert reuse_existing(replace(job, formats=("onnx",)), folder) is not None
    assert capsys.readouterr().err == ""
    assert reuse_existing(job, folder) is None  # default: reconvert, one line per file
    assert capsys.readouterr().err.splitlines() == [
        f"{folder / 'keras.bin'} is damaged (sha256 differs from manifest): reconverting"]
    from converters.manifest import DamagedArtifactsError

    with pytest.raises(DamagedArtifactsError) as refused:
        reuse_existing(replace(job, on_damaged="refuse"), folder)
    assert str(refused.value).startswith(f"{folder / 'keras.bin'} is damaged (sha256 differs "
                                         "from manifest)")
    assert "--on-damaged reconvert" in str(refused.value) and "\n" not in str(refused.value)
    (folder / "manifest.json").write_text("{ truncated")
    assert reuse_existing(job, folder) is None
    assert capsys.readouterr().err.splitlines() == [
        f"{folder / 'manifest.json'} is damaged (not a readable manifest): reconverting"]
    with pytest.raises(DamagedArtifactsError, match="manifest.json is damaged"):
        reuse_existing(replace(job, on_damaged="refuse"), folder)
    (folder / "manifest.json").unlink()  # files left, manifest gone: damage too
    with pytest.raises(DamagedArtifactsError, match="manifest.json is missing"):
        reuse_existing(replace(job, on_damaged="refuse"), folder)


def test_refused_damage_stops_the_bench_before_anything_runs(tmp_path):
    """``--on-damaged refuse``: one ``error:`` line and exit 2 before the GEMM peak or any
    worker (it once exited 3 with the damage in every row, after measuring the peak)."""
    folder = _write_artifacts(tmp_path / "artifacts" / MODEL, ("onnx",))
    _damage(folder / "onnx.bin")
    proc = run_bench_cli("--models", MODEL, "--runtimes", "onnxruntime", "--threads", "1",
                         "--artifacts", str(tmp_path / "artifacts"),
                         "--results", str(tmp_path / "results"), "--on-damaged", "refuse")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "onnx.bin is damaged (sha256 differs from manifest)" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*"))


def test_an_unwritable_peak_cache_warns_and_keeps_the_run(tmp_path, capsys):
    from bench.latency import peak_cache
    from bench.latency.records import PeakRecord

    (tmp_path / "file").write_text("x")
    key = peak_cache.PeakKey.for_machine("cpu", 1, "test cpu")
    record = PeakRecord("cpu", 1, gflops_per_s=100.0)
    assert peak_cache.store(key, tmp_path / "file" / "cache", record) is None
    assert "warning: GEMM peak not cached" in capsys.readouterr().err


def test_gemm_peak_is_cached_per_machine(bench_run):
    """A second run with the same device/threads/libraries reuses the best peak measured."""
    root, _ = bench_run
    (first,) = (root / "results" / "raw").glob("latency-cpu-1t-*-test.jsonl")
    measured = [json.loads(x) for x in first.read_text().splitlines()]
    best = max(x["gflops_per_s"] for x in measured if x["type"] == "peak")
    proc = run_bench_cli("--models", MODEL, "--runtimes", "pytorch", "--weights", "random",
                         *FAST_ARGS, "--artifacts", str(root / "artifacts"),
                         "--results", str(root / "cached"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (raw,) = (root / "cached" / "raw").glob("*.jsonl")
    peaks = [json.loads(x) for x in raw.read_text().splitlines() if '"type": "peak"' in x]
    assert [p["when"] for p in peaks] == ["cached"] and peaks[0]["gflops_per_s"] == best
    md = next((root / "cached").glob("latency-*.md")).read_text()
    assert "cached from an earlier run on this machine" in md


def test_peak_cache_key_and_keep_the_fastest(tmp_path):
    from bench.latency import peak_cache
    from bench.latency.records import PeakRecord

    key = peak_cache.PeakKey.for_machine("cpu", 1, "Some CPU")
    assert peak_cache.load(key, tmp_path) is None
    assert peak_cache.store(key, tmp_path, PeakRecord("cpu", 1, gflops_per_s=100.0))
    assert peak_cache.store(key, tmp_path, PeakRecord("cpu", 1, gflops_per_s=90.0)) is None
    assert peak_cache.load(key, tmp_path).gflops_per_s == 100.0
    for other in (replace(key, threads=2), replace(key, hardware="Other CPU"),
                  replace(key, versions=(("torch", "0.0"),)), replace(key, code="x")):
        assert peak_cache.load(other, tmp_path) is None, other
    assert peak_cache.store(key, tmp_path, PeakRecord("cpu", 1, error="boom")) is None
