"""``bench ship``: rows quoted from latency, accuracy and parity tables written by their own
record writers, the recommendation rule, "not measured" inputs, and staleness."""
from __future__ import annotations

import csv
import json

import pytest

from bench.accuracy.records import AccuracyRecord, write_jsonl
from bench.latency.records import LatencyRecord, StaticRecord
from bench.latency.runtimes import RUNTIMES
from bench.latency.timing import Measurement
from zoo.exits import ExitCode

MB = 2**20
REAL = "imagenet (test weights)"
RANDOM = "random weights (seed 0)"
D1, D2 = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"
# batch-1 medians (ms) of the labelled model; None: the row's timing failed
MEDIANS = {"pytorch": 40.0, "onnxruntime": 10.0, "tflite_fp32": 10.4, "tflite_fp16": None,
           "onnxruntime_int8": 6.0, "tflite_int8": 5.0}
SIZES = {"onnx": 14 * MB, "tflite_fp32": 13 * MB, "tflite_fp16": 7 * MB, "onnx_int8": 6 * MB,
         "tflite_int8": 4 * MB}


def _env(date: str, threads: int = 1) -> dict:
    from zoo.env import environment

    return {**environment(threads=threads, weights="auto", with_gpu=False), "date": date}


def write_latency(folder, medians, *, date=D1, stem="latency-cpu-1t-test", threads=1,
                  model="mobilenet_v2", weights=REAL):
    """A raw latency run: samples (0.9, 1, 1, 1.05, 1.5) x median, so IQR = 5% of it."""
    env = {"type": "env", **_env(date, threads),
           "bench": {"device": "cpu", "batch_sizes": [1], "runtimes": list(medians)}}
    lines = [env, StaticRecord(model, weights, params=3_500_000, gflops=0.6,
                               state_dict_bytes=13 * MB, artifact_bytes=SIZES).to_json()]
    for runtime, ms in medians.items():
        rec = LatencyRecord(model, runtime, RUNTIMES[runtime].precision, "cpu", 1, threads,
                            weights)
        if ms is None:
            rec.error = "RuntimeError: boom"
        else:
            rec.measurement = Measurement(tuple(ms / 1e3 * f for f in (0.9, 1, 1, 1.05, 1.5))
                                          ).to_json()
        lines.append(rec.to_json())
    path = folder / "raw" / f"{stem}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _acc(model, fmt, precision, *, top1=None, agreement=1.0, labelled=True, ref=0.80,
         weights=REAL):
    from bench.accuracy.metrics import wilson

    n = 900
    lo, hi = wilson(round(top1 * n), n) if top1 is not None else (None, None)
    a_lo, a_hi = wilson(round(agreement * n), n)
    return AccuracyRecord(model, weights, labelled, fmt, precision, "imagenet-sample", n=n,
                          top1=top1, top1_lo=lo, top1_hi=hi,
                          relative_top1=top1 / ref if top1 is not None else None,
                          agreement=agreement, agreement_lo=a_lo, agreement_hi=a_hi)


def accuracy_records(top1_onnx: float = 0.80) -> list[AccuracyRecord]:
    return [_acc("mobilenet_v2", "pytorch", "fp32", top1=0.80),
            _acc("mobilenet_v2", "onnx", "fp32", top1=top1_onnx),
            _acc("mobilenet_v2", "tf_savedmodel", "fp32", top1=0.80),
            _acc("mobilenet_v2", "tflite_fp32", "fp32", top1=0.80),
            _acc("mobilenet_v2", "onnx_int8", "int8", top1=0.795, agreement=0.95),
            _acc("mobilenet_v2", "tflite_int8", "int8", top1=0.78, agreement=0.9),
            _acc("squeezenet1_1", "pytorch", "fp32", labelled=False, weights=RANDOM),
            _acc("squeezenet1_1", "onnx", "fp32", labelled=False, weights=RANDOM),
            _acc("squeezenet1_1", "onnx_int8", "int8", agreement=0.9, labelled=False,
                 weights=RANDOM)]


def write_accuracy(folder, *, date=D1, top1_onnx=0.80):
    return write_jsonl(folder / "raw" / "accuracy-imagenet-sample.jsonl", _env(date, 2),
                       accuracy_records(top1_onnx))


def write_parity(folder, *, date=D1, tflite_fp32="pass"):
    from converters.parity.catalog_table import write_tables

    rows = [{"model": m, "weights": w, "pair": pair, "precision": "fp32", "result": result}
            for m, w in (("mobilenet_v2", REAL), ("squeezenet1_1", RANDOM))
            for pair, result in (("pytorch vs onnx", "pass"), ("onnx vs tflite_fp32", tflite_fp32),
                                 ("onnx vs tflite_fp16", "pass"))]
    write_tables(rows, folder, _env(date))


def sources_folder(tmp_path):
    folder = tmp_path / "results"
    write_latency(folder, MEDIANS)
    write_accuracy(folder)
    write_parity(folder)
    return folder


def ship_of(folder, model, artifacts=None):
    from bench.ship.sources import load_sources
    from bench.ship.table import model_ship

    sources = load_sources(folder, artifacts=artifacts or folder.parent / "artifacts",
                           threads=1)
    return model_ship(model, sources, threads=1)


def test_rows_quote_every_source_and_the_rule_ships_the_fastest_eligible(tmp_path):
    ship = ship_of(sources_folder(tmp_path), "mobilenet_v2")
    rows = {r.runtime: r for r in ship.rows}
    assert list(rows) == ["pytorch", "onnxruntime", "tf_savedmodel", "tflite_fp32",
                          "tflite_fp16", "onnxruntime_int8", "tflite_int8"]  # registry order
    onnx = rows["onnxruntime"]
    assert onnx.median_ms == pytest.approx(10.0) and onnx.iqr_ms == pytest.approx(0.5)
    assert onnx.speed == pytest.approx(1.0) and onnx.size_mb == pytest.approx(14.0)
    assert onnx.top1_change_pp == pytest.approx(0.0) and onnx.parity == "pass"
    assert rows["pytorch"].speed == pytest.approx(0.25)  # 10 ms fastest fp32 / 40 ms
    assert rows["pytorch"].size_mb == pytest.approx(13.0) and rows["pytorch"].parity == "reference"
    assert rows["tflite_int8"].top1_change_pp == pytest.approx(-2.0)
    assert rows["tflite_int8"].speed == pytest.approx(2.0)  # faster than every fp32 row
    assert rows["tflite_fp16"].latency_error == "RuntimeError: boom"
    assert rows["tflite_fp32"].parity_detail == "pytorch vs onnx: pass; onnx vs tflite_fp32: pass"
    # eligible: pytorch, onnxruntime, tflite_fp32; int8 rows are faster but not eligible
    assert [r.runtime for r in ship.rows if r.recommended] == ["onnxruntime"]
    assert rows["onnxruntime_int8"].ineligible() == "parity not measured"
    assert rows["tflite_int8"].ineligible() == "top-1 97.5% of PyTorch fp32 (< 99%)"
    assert rows["tflite_fp16"].ineligible() == "timing failed"
    assert ship.recommendation.startswith("Ship **onnxruntime** (onnx, fp32): 10 ms median")
    assert "Tied within its IQR: tflite_fp32 (10.4 ms)." in ship.recommendation  # 10.4 <= 10.5
    assert ("Faster but not eligible: tflite_int8 (5 ms: top-1 97.5% of PyTorch fp32 (< 99%)); "
            "onnxruntime_int8 (6 ms: parity not measured).") in ship.recommendation
    assert {(s.kind, s.table, s.date) for s in ship.sources} == {
        ("latency", "latency-cpu-1t-test.csv", D1),
        ("accuracy", "accuracy-imagenet-sample.csv", D1), ("parity", "parity-catalog.csv", D1)}


def test_int8_parity_report_decides_whether_int8_can_ship(tmp_path):
    folder = sources_folder(tmp_path)
    report = tmp_path / "artifacts" / "mobilenet_v2" / "parity" / "onnx_vs_onnx_int8.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"passed": True, "first_below": None}))
    ship = ship_of(folder, "mobilenet_v2")
    assert [r.runtime for r in ship.rows if r.recommended] == ["onnxruntime_int8"]
    assert "onnx_vs_onnx_int8.json" in {s.table.rsplit("/", 1)[-1] for s in ship.sources}
    report.write_text(json.dumps({"passed": False, "first_below": {"node": "/conv7/Conv"}}))
    rows = {r.runtime: r for r in ship_of(folder, "mobilenet_v2").rows}
    assert rows["onnxruntime_int8"].parity == "FAIL" and not rows["onnxruntime_int8"].recommended
    assert rows["onnxruntime_int8"].parity_detail.endswith(
        "onnx vs onnx_int8: FAIL (first int8 layer below the bars: /conv7/Conv)")
    assert rows["tflite_int8"].parity == "" and "no int8 per-layer report" in str(
        rows["tflite_int8"].missing)
    tflite = report.parent / "tflite_fp32_vs_tflite_int8.json"
    tflite.write_text(json.dumps({"passed": False, "first_below": {
        "node": "model/tf.nn.relu6_3/Relu6;model/tf.nn.convolution_3/convolution"}}))
    rows = {r.runtime: r for r in ship_of(folder, "mobilenet_v2").rows}
    assert rows["tflite_int8"].parity == "FAIL" and rows["tflite_int8"].parity_detail.endswith(
        "tflite_fp32 vs tflite_int8: FAIL (first int8 layer below the bars: "
        "model/tf.nn.relu6_3/Relu6)")


def test_inputs_no_table_holds_are_not_measured_never_invented(tmp_path):
    from bench.ship.report import csv_text, markdown_text
    from converters.manifest import MANIFEST, ArtifactRecord, Manifest, write_json_atomic
    from zoo.entry import WeightsSource

    folder = sources_folder(tmp_path)
    # an older 1-thread run with tf_savedmodel and a 2-thread one: neither is quoted
    write_latency(folder, {"tf_savedmodel": 3.0, "onnxruntime": 2.0}, date="2025-06-01T00:00:00",
                  stem="latency-cpu-1t-old")
    write_latency(folder, {"tf_savedmodel": 1.0}, stem="latency-cpu-2t-test", threads=2)
    sq = tmp_path / "artifacts" / "squeezenet1_1"
    sq.mkdir(parents=True)
    manifest = Manifest("squeezenet1_1", WeightsSource("random", RANDOM, "", False, 0), {},
                        [ArtifactRecord("onnx", "m.onnx", "NCHW", "fp32", None, 5 * MB, "0")],
                        created=D1)
    write_json_atomic(sq / MANIFEST, manifest.to_json())

    ship = ship_of(folder, "mobilenet_v2")
    saved = next(r for r in ship.rows if r.runtime == "tf_savedmodel")
    assert saved.median_ms is None and saved.speed is None and saved.size_mb is None
    assert [m.text(["tf_savedmodel"]) for m in saved.missing] == [
        "latency: not in `latency-cpu-1t-test.csv` (`python -m bench --threads 1 --models "
        "mobilenet_v2 --runtimes tf_savedmodel`)",
        "size: not in `latency-cpu-1t-test.csv`'s static record, nor in "
        f"{tmp_path / 'artifacts' / 'mobilenet_v2'}/manifest.json",
        "parity: not in `parity-catalog.csv` (`python -m converters parity-catalog --models "
        "mobilenet_v2`)"]
    onnx = next(r for r in ship.rows if r.runtime == "onnxruntime")
    assert onnx.median_ms == pytest.approx(10.0)  # the newest run's, never the old 2.0

    random = ship_of(folder, "squeezenet1_1")
    rows = {r.runtime: r for r in random.rows}
    assert all(r.median_ms is None and not r.recommended for r in random.rows)
    assert rows["onnxruntime"].size_mb == pytest.approx(5.0)  # from the manifest
    assert rows["onnxruntime"].size_from == "manifest" and rows["pytorch"].size_mb is None
    assert rows["onnxruntime_int8"].agreement == pytest.approx(0.9)
    assert rows["onnxruntime_int8"].top1 is None and rows["onnxruntime_int8"].top1_change_pp is None
    assert random.recommendation.startswith("No recommendation: no row meets the rule: latency "
                                            "not measured (pytorch, onnxruntime,")
    md = markdown_text([random], folder, threads=1)
    assert "| onnxruntime_int8 | onnx_int8 | int8 | not measured |  | not measured | 90.0% agree" \
           " | not measured |" in md
    assert "no 1-thread CPU latency run timed squeezenet1_1 (`python -m bench --threads 1 " \
           "--models squeezenet1_1 --runtimes pytorch,onnxruntime," in md
    assert "5 (manifest)" in md
    table = list(csv.DictReader(csv_text([random]).splitlines()))
    assert all(r["median_ms"] == "" and r["speed"] == "" for r in table)


def _cli(*args):
    from bench.cli import main

    return main(list(args))


@pytest.fixture
def cli_folder(tmp_path, monkeypatch):
    """The sources in ``results/`` with the working directory at ``tmp_path`` (so the
    default ``artifacts/`` root is empty)."""
    monkeypatch.chdir(tmp_path)
    return sources_folder(tmp_path)


def _quoted(folder, column):
    with (folder / "ship-cpu-1t.csv").open() as fh:
        return {r["runtime"]: r[column] for r in csv.DictReader(fh) if r["model"] == "mobilenet_v2"}


def test_bench_report_rebuilds_the_ship_table_and_transfer_quote(cli_folder, capsys):
    from bench.transfer.records import TransferRecord, append_env, append_record

    def transfer_quote():
        with (cli_folder / "transfer.csv").open() as fh:
            row = next(csv.DictReader(fh))
        return row["cpu_latency_ms"], row["latency_source"]

    append_env(cli_folder / "transfer.jsonl", "r1", _env(D1, 2))
    append_record(cli_folder / "transfer.jsonl", TransferRecord(
        model="mobilenet_v2", weights="imagenet", weights_label=REAL, weights_spec="/w.pth",
        dataset="cifar10", dataset_source="ImageFolder /d", classes=("a", "b"), grayscale=0.0,
        protocol="linear", n_train=10, n_test=10, subset_seed=None, resolution=224,
        resize_mode="resize", accuracy=0.8, extract_s=1.0, fit_s=1.0, features_s=1.0,
        cache_hit=False, device="cpu", threads=2, date=D1, run_id="r1", best_c=1.0,
        c_grid=(0.1, 1.0, 10.0), val_accuracy=(0.7, 0.8, 0.75), converged=True))
    raw = cli_folder / "raw" / "latency-cpu-1t-test.jsonl"
    assert _cli("report", str(raw), "--out", str(cli_folder)) == ExitCode.OK
    assert _quoted(cli_folder, "median_ms")["onnxruntime"] == "10"
    assert transfer_quote() == ("5.000", "latency-cpu-1t-test.csv")  # tflite_int8, fastest

    write_latency(cli_folder, {**MEDIANS, "onnxruntime": 7.0, "tflite_int8": 4.5}, date=D2)
    assert _cli("report", str(raw), "--out", str(cli_folder)) == ExitCode.OK
    assert _quoted(cli_folder, "median_ms")["onnxruntime"] == "7"
    assert set(_quoted(cli_folder, "latency_date").values()) == {D2}
    assert f"| latency | `latency-cpu-1t-test.csv` | {D2} |" in (
        cli_folder / "ship-cpu-1t.md").read_text()
    assert transfer_quote() == ("4.500", "latency-cpu-1t-test.csv")
    assert _cli("ship", "--results", str(cli_folder), "--check") == ExitCode.OK
    capsys.readouterr()
    assert _cli("ship", "--results", str(cli_folder)) == ExitCode.OK
    assert capsys.readouterr().out.startswith(
        "mobilenet_v2: Ship onnxruntime (onnx, fp32): 7 ms median (IQR 0.35 ms), 14 MB")


def test_accuracy_report_rebuilds_the_ship_table(cli_folder, tmp_path):
    assert _cli("ship", "--results", str(cli_folder)) == ExitCode.OK
    write_accuracy(cli_folder, date=D2, top1_onnx=0.70)
    assert _cli("accuracy", "--report-only", "--photos", str(tmp_path / "imagenet-sample"),
                "--results", str(cli_folder)) == ExitCode.OK
    assert _quoted(cli_folder, "top1_change_pp")["onnxruntime"] == "-10"
    assert _quoted(cli_folder, "accuracy_date")["onnxruntime"] == D2
    assert _quoted(cli_folder, "recommended")["tflite_fp32"] == "True"  # onnx lost 12.5%


def test_check_names_the_source_that_moved_past_the_ship_table(cli_folder, capsys):
    assert _cli("ship", "--results", str(cli_folder)) == ExitCode.OK
    assert _cli("ship", "--results", str(cli_folder), "--check") == ExitCode.OK
    write_parity(cli_folder, date=D2, tflite_fp32="FAIL")  # converters cannot rebuild ship
    capsys.readouterr()
    assert _cli("ship", "--results", str(cli_folder), "--check") == ExitCode.CHECKS_FAILED
    assert capsys.readouterr().err == (
        f"stale: ship-cpu-1t.csv quotes parity `parity-catalog.csv` of {D1}; it is now of "
        f"{D2}\n")
    assert _cli("ship", "--results", str(cli_folder)) == ExitCode.OK
    assert _quoted(cli_folder, "parity")["tflite_fp32"] == "FAIL"


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _cli("ship", "--results", str(tmp_path / "empty")) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not list((tmp_path / "empty").iterdir())  # nothing half-written
    folder = sources_folder(tmp_path)
    assert _cli("ship", "--sources", str(folder), "--results", str(tmp_path / "out"),
                "--latency", "latency-cpu-1t-nosuch") == ExitCode.BAD_INPUT
    assert capsys.readouterr().err.startswith("error: --latency latency-cpu-1t-nosuch: no")
