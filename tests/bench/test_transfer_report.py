"""Records -> CSV/Markdown/PNG, CPU latency lookup, and the CLI end to end on a tiny folder."""
from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from bench.transfer.cli import main
from bench.transfer.records import (TransferRecord, append_env, append_record, latest,
                                    read_jsonl)
from bench.transfer.report import cpu_latency, generate
from tests.support.images import make_image_folder
from zoo.exits import ExitCode

REQUIRED = {"model", "weights", "dataset", "protocol", "n_train", "n_test", "resolution",
            "accuracy", "extract_s", "fit_s"}


def _record(**kw) -> TransferRecord:
    base = dict(model="mobilenet_v2", weights="imagenet", weights_label="imagenet (X)",
                weights_spec="/w.pth", dataset="cifar10", dataset_source="ImageFolder /d",
                classes=tuple("abcdefghij"), grayscale=False, protocol="linear", n_train=100,
                n_test=50, subset_seed=None, resolution=224, resize_mode="resize", accuracy=0.8,
                extract_s=10.0, fit_s=2.0, features_s=10.0, cache_hit=False, device="cpu",
                threads=2, date="2025-01-01T00:00:00+00:00", run_id="r1", best_c=0.01,
                c_grid=(0.01, 1.0), val_accuracy=(0.8, 0.7), converged=True)
    return TransferRecord(**{**base, **kw})


def _records():
    ft = dict(protocol="finetune", extract_s=None, features_s=None, cache_hit=None, best_c=None,
              c_grid=(), val_accuracy=(), converged=None, freeze="first:14", stages_frozen=14,
              stages_total=19, trainable_params=10, frozen_params=20, optimizer="sgd", epochs=1,
              lr=0.01, backbone_lr=0.001, train_loss=0.5, eval_s=3.0)
    return [_record(), _record(weights="random", weights_spec="random:0", accuracy=0.11),
            _record(dataset="fashion-mnist", grayscale=True), _record(**ft)]


def test_records_round_trip_and_reruns_replace(tmp_path):
    path = tmp_path / "transfer.jsonl"
    append_env(path, "r1", {"date": "d"})
    for r in _records():
        append_record(path, r)
    append_record(path, replace(_records()[0], cache_hit=True, features_s=0.1, run_id="r2"))
    envs, recs = read_jsonl(path)
    assert envs == {"r1": {"date": "d"}} and recs[:4] == _records()
    kept = latest(recs)
    assert len(kept) == 4 and kept[0].cache_hit is True


def test_report_writes_csv_with_required_columns_md_and_png(tmp_path):
    from zoo.env import environment

    path = tmp_path / "transfer.jsonl"
    append_env(path, "r1", environment(threads=2, weights="imagenet,random", with_gpu=False))
    for r in _records():
        append_record(path, r)
    files = generate(tmp_path)
    rows = list(csv.DictReader(files.csv.open()))
    assert REQUIRED <= set(rows[0]) and len(rows) == 4
    assert {r["weights"] for r in rows} == {"imagenet", "random"}
    assert {r["protocol"] for r in rows} == {"linear", "finetune"}
    md = files.markdown.read_text()
    assert "Do not edit by hand" in md and "not measured" in md and "fashion-mnist" in md
    assert files.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not files.latency_found


def test_cpu_latency_is_batch1_fastest_runtime(tmp_path):
    (tmp_path / "latency-cpu-x.csv").write_text(
        "model,runtime,batch_size,threads,median_ms,error,unstable\n"
        "mobilenet_v2,pytorch,1,2,9.5,,False\n"
        "mobilenet_v2,onnxruntime,1,2,4.25,,False\n"
        "mobilenet_v2,tflite,1,2,3.0,,True\n"
        "mobilenet_v2,onnxruntime,8,2,2.0,,False\n"
        "mobilenet_v2,keras,1,2,1.0,ImportError,False\n"
        "mobilenet_v2,onnxruntime,1,1,3.5,,False\n"
        "resnet18,tflite,1,2,nan,,False\n")
    lat = cpu_latency(tmp_path, threads=2)
    assert set(lat) == {"mobilenet_v2"}
    assert lat["mobilenet_v2"].median_ms == 4.25 and lat["mobilenet_v2"].runtime == "onnxruntime"
    assert cpu_latency(tmp_path)["mobilenet_v2"].median_ms == 3.5  # any threads: fastest stable
    path = tmp_path / "transfer.jsonl"
    append_record(path, _records()[0])
    files = generate(tmp_path)
    assert files.latency_found
    row = next(csv.DictReader(files.csv.open()))
    assert row["cpu_latency_ms"] == "4.250" and row["latency_source"] == "latency-cpu-x.csv"


def test_cli_runs_probe_then_hits_the_cache(tmp_path, capsys):
    """The second run writes into another folder (in the first one, its done-store would
    skip the model) and reads the features from the cache the first one filled."""
    folder = make_image_folder(tmp_path / "tiny", per_class=4)
    args = ["--models", "squeezenet1_1", "--datasets", str(folder), "--weights", "random",
            "--resolution", "32", "--batch-size", "8", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    assert "extracted" in out and "cache hit" in out
    lines = [json.loads(x) for name in ("out", "again")
             for x in (tmp_path / name / "transfer.jsonl").read_text().splitlines()]
    recs = [x for x in lines if x["type"] == "record"]
    assert [r["cache_hit"] for r in recs] == [False, True]
    assert recs[0]["accuracy"] == recs[1]["accuracy"] and recs[0]["weights"] == "random"
    assert (tmp_path / "out" / "transfer.csv").is_file()
    assert (tmp_path / "out" / "transfer.png").is_file()


def test_cli_reports_unavailable_dataset_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELZOO_DATA", str(tmp_path / "none"))
    rc = main(["--datasets", "cats-vs-dogs", "--out", str(tmp_path / "out"), "--no-report"])
    err = capsys.readouterr().err
    assert rc == ExitCode.BAD_INPUT and "error: cats-vs-dogs: not found offline" in err


@pytest.mark.parametrize("flag", ["--list-datasets", "--report-only"])
def test_cli_info_flags(flag, tmp_path, capsys):
    assert main([flag, "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out


def _figure_text(fig) -> str:
    return fig._suptitle.get_text().replace("\n", " ")


def test_plot_with_one_model_shows_per_dataset_bars_against_the_control():
    import matplotlib.pyplot as plt

    from bench.transfer.plot import transfer_figure

    fig = transfer_figure(_records(), {"mobilenet_v2": 4.25})  # one model: no latency axis
    linear, finetune = fig.axes
    assert linear.get_xscale() == "linear"
    assert [t.get_text() for t in linear.get_xticklabels()] == ["cifar10", "fashion-mnist"]
    heights = sorted(round(p.get_height(), 3) for p in linear.patches)
    assert heights == [0.11, 0.8, 0.8]  # ImageNet and random on cifar10, ImageNet on fashion
    assert [round(p.get_height(), 3) for p in finetune.patches] == [0.8]
    text = _figure_text(fig)
    assert "ImageNet features vs random-weights control" in text and "mobilenet_v2" in text
    assert "needs two or more models" in text and "4.25 ms" in text
    plt.close(fig)
    fig = transfer_figure(_records(), {})
    assert "no CPU latency measured yet" in _figure_text(fig)
    plt.close(fig)


def test_plot_with_two_models_and_latency_is_accuracy_vs_latency():
    import matplotlib.pyplot as plt
    from matplotlib.text import Annotation, Text

    from bench.transfer.plot import transfer_figure

    records = _records() + [replace(r, model="resnet18", accuracy=r.accuracy - 0.01)
                            for r in _records()]
    fig = transfer_figure(records, {"mobilenet_v2": 4.25, "resnet18": 18.0})
    linear = fig.axes[0]
    assert linear.get_xscale() == "log" and not linear.patches
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    boxes = [Text.get_window_extent(t, renderer) for t in linear.texts
             if isinstance(t, Annotation)]
    assert len(boxes) == 6 and not any(a.overlaps(b) for i, a in enumerate(boxes)
                                       for b in boxes[i + 1:])
    assert "vs CPU latency" in _figure_text(fig)
    plt.close(fig)


def test_a_run_that_measured_nothing_leaves_the_records_file_as_it_was(tmp_path):
    """The run's environment line is written with its first record, never alone: an
    interrupted run once appended an ``env`` line to a finished transfer.jsonl."""
    from bench.transfer.records import append_missing, read_jsonl

    path = tmp_path / "transfer.jsonl"
    records = [replace(r, grayscale=float(r.grayscale)) for r in _records()]  # as read back
    first = records[:1]
    assert append_missing(path, first, ("r1", {"date": "d"})) == 1
    before = path.read_bytes()
    assert append_missing(path, [], ("r2", {"date": "later"})) == 0  # interrupted: nothing
    assert path.read_bytes() == before
    assert append_missing(path, first + records[1:2], ("r2", {"date": "later"})) == 1
    envs, records = read_jsonl(path)
    assert list(envs) == ["r1", "r2"] and len(records) == 2
