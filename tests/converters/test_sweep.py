"""The coverage sweep (``python -m converters sweep``): a tiny model of a user's file,
timm's tiny ``test_resnet`` and a user's factory that raises, each in its own process;
both tables with their columns and verdicts; a re-run converts nothing; the failing model
is one error row and exit 3."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from converters.sweep.run import sweep_status
from converters.sweep.worker import fallback_formats
from converters.sweep.select import parse_params, select_models
from converters.sweep.table import COLUMNS, coverage, md_rows, verdict
from zoo.build import RANDOM_RECIPE
from zoo.env import environment

REPO = Path(__file__).resolve().parents[2]
FIXTURE = "tests/fixtures/user_model.py"
GOOD = (f"{FIXTURE}:tiny_net", "timm/test_resnet")  # 0.5M parameters, 160 px
BROKEN = f"{FIXTURE}:broken_net"
NO_KERAS = f"{FIXTURE}:elu_net"  # ONNX Elu: onnx2tf converts it, the Keras builder does not
FORMATS = ["onnx", "tf_savedmodel", "tflite_fp32", "tflite_fp16", "keras"]


def sweep(out: Path, results: Path, *models: str, flags: tuple[str, ...] = ()
          ) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "converters", "sweep", "--weights", "random",
                           "--out", str(out), "--results", str(results), *flags,
                           "--models", *models],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out, results = tmp_path_factory.mktemp("sweep"), tmp_path_factory.mktemp("results")
    proc = sweep(out, results, *GOOD, NO_KERAS, BROKEN)
    return out, results, proc


def read_csv(results: Path) -> list[dict]:
    with (results / "coverage-torchvision.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def test_sweep_writes_both_tables_with_verdicts(swept):
    out, results, proc = swept
    rows = read_csv(results)
    assert [r["model"] for r in rows] == [m for m in (*GOOD, NO_KERAS) for _ in FORMATS] + [
        BROKEN]
    for model in GOOD:
        mine = [r for r in rows if r["model"] == model]
        assert [r["format"] for r in mine] == FORMATS
        for r in mine:  # every format converted, ran and agreed with PyTorch: real bounds
            assert (r["converted"], r["ran"], r["agreed"]) == ("True", "True", "True"), r
            assert float(r["max_abs_err"]) < 2e-2 and float(r["top1"]) == 1.0
            assert float(r["convert_s"]) > 0 and float(r["peak_rss_mb"]) > 100
            assert r["weights"] == "random" and r["weights_recipe"] == RANDOM_RECIPE
            # PyTorch's own distance from its fp64 logits at the format's precision
            assert 0 < float(r["torch_floor"]) < float(r["logits_max"]), r
            # a parity FAIL names the first divergent layer; a pass names none
            assert r["parity"] in ("pass", "FAIL") and bool(r["first_divergent"]) == (
                r["parity"] == "FAIL"), r
        assert float(mine[0]["torch_floor"]) < 1e-4 * float(mine[0]["logits_max"])  # fp32
        assert mine[0]["params_m"] == ("0.47" if model.startswith("timm/") else "")
        assert [r["converter"] for r in mine] == ["torch.onnx", "onnx2tf", "onnx2tf", "onnx2tf",
                                                 "keras"]
        # onnx2tf made the shipped TF files, so its columns are the same artifacts' numbers
        assert all(r["o2t_shared"] == "True" for r in mine)
        assert [r["o2t_parity"] for r in mine[:4]] == [r["parity"] for r in mine[:4]]
        assert not mine[4]["o2t_parity"]  # Keras: not onnx2tf's
    # the user's tiny network passes every check in every format
    assert all(r["parity"] == "pass" for r in rows if r["model"] == GOOD[0])
    # an op the Keras builder lacks fails the Keras format only, naming the op; the rest of
    # the model still converts (onnx2tf makes its TF files) and passes
    elu = {r["format"]: r for r in rows if r["model"] == NO_KERAS}
    assert elu["keras"]["converted"] == "False" and "Elu" in elu["keras"]["error"]
    assert all(elu[f]["parity"] == "pass" and elu[f]["converter"] in ("torch.onnx", "onnx2tf")
               for f in FORMATS[:4])
    [bad] = [r for r in rows if r["model"] == BROKEN]
    assert bad["format"] == "" and "the factory failed on purpose" in bad["error"]
    failing = any(r["format"] and r["converted"] == "True" and r["parity"] != "pass"
                  for r in rows)
    # 1 when a converted format fails a check (timm's test_resnet: TFLite parity, today),
    # else 3: broken_net is an error row, the sweep finished (partial)
    assert proc.returncode == (1 if failing else 3), proc.stderr[-2000:]
    timm_ok = not any(r["parity"] != "pass" for r in rows if r["model"] == GOOD[1])
    tool, alone = 1 + timm_ok, 2 + timm_ok  # elu_net: all of onnx2tf's formats, not Keras
    md = (results / "coverage-torchvision.md").read_text()
    assert f"this tool {tool}/4 ({tool / 4:.0%}); onnx2tf alone {alone}/4 ({alone / 4:.0%})" in md
    assert "random" in md and "the factory failed on purpose" in md
    assert md.count(f"`{GOOD[0]}` |") == 1


def test_rerun_skips_every_done_model(swept):
    """A re-run converts nothing; with the failing model beside one that passes, exit 3."""
    out, results, _ = swept
    stamps = {p: p.stat().st_mtime_ns for p in (out / ".records").iterdir()}
    assert len(stamps) == 4
    t0 = time.perf_counter()
    proc = sweep(out, results, GOOD[0], BROKEN)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in (out / ".records").iterdir()} == stamps
    assert "0 ok, 0 failed, 2 skipped" in proc.stderr, proc.stderr[-1000:]
    assert time.perf_counter() - t0 < 60  # nothing converted again (a conversion is ~40 s)
    assert len(read_csv(results)) == len(FORMATS) + 1
    assert "this tool 1/2 (50%); onnx2tf alone 1/2 (50%)" in (
        results / "coverage-torchvision.md").read_text()


def test_collect_only_tables_a_partial_run(swept, tmp_path):
    """``--collect-only`` converts nothing and names the models not swept yet (exit 3)."""
    out, _, _ = swept
    proc = sweep(out, tmp_path, GOOD[0], "squeezenet1_1", flags=("--collect-only",))
    assert proc.returncode == 3, proc.stderr[-2000:]
    rows = read_csv(tmp_path)
    assert len(rows) == len(FORMATS) and all(r["swept"].startswith("20") for r in rows)
    md = (tmp_path / "coverage-torchvision.md").read_text()
    assert "Incomplete: 1 of 2 selected models swept**; not yet: squeezenet1_1." in md


def test_collect_only_completes_a_table_from_the_results_raw_records(swept, tmp_path):
    """The records outlive ``--out``: a later ``--collect-only`` with another ``--out`` (a
    later session's) takes the models it has no records for from the results folder's
    ``raw/coverage-<source>.jsonl``, each row keeping the date it was swept."""
    import json
    import shutil

    out, results, _ = swept
    raw = results / "raw" / "coverage-torchvision.jsonl"
    lines = [json.loads(ln) for ln in raw.read_text().splitlines()]
    assert lines[0]["type"] == "environment" and "cpu" in lines[0]["environment"]
    # every model of the first run: the re-run of two (test above) replaced only theirs
    assert {r["model"] for r in lines[1:]} == {*GOOD, NO_KERAS, BROKEN}
    later = tmp_path / "results"
    shutil.copytree(results, later)
    fresh = tmp_path / "out"  # nothing swept under it
    proc = sweep(fresh, later, GOOD[0], BROKEN, "squeezenet1_1", flags=("--collect-only",))
    assert proc.returncode == 3 and not (fresh / ".records").exists(), proc.stderr[-2000:]
    rows = read_csv(later)
    first = [r for r in read_csv(results) if r["model"] in (GOOD[0], BROKEN)]
    assert rows == first  # the same rows, swept dates included
    md = (later / "coverage-torchvision.md").read_text()
    assert "Incomplete: 2 of 3 selected models swept**; not yet: squeezenet1_1." in md
    assert "Rows swept on 20" in md


def test_parse_params():
    assert parse_params("100M") == 100_000_000
    assert parse_params("5.5M") == 5_500_000
    assert parse_params("2e7") == 20_000_000
    assert parse_params("300k") == 300_000
    for bad in ("", "M", "-1M", "10X", "0"):
        with pytest.raises(ValueError):
            parse_params(bad)


def test_max_params_filters_on_published_counts(tmp_path):
    small = select_models("torchvision", ["squeezenet*", "resnet*"], max_params=parse_params("12M"),
                          cache_dir=tmp_path)
    assert small == ["squeezenet1_0", "squeezenet1_1", "resnet18"]  # 1.2M, 1.2M, 11.7M


def test_verdicts_and_coverage_of_failing_rows():
    good = {"model": "a", "format": "onnx", "converted": True, "ran": True, "agreed": True,
            "parity": "pass", "o2t_converted": True, "o2t_ran": True, "o2t_agreed": True,
            "o2t_parity": "pass"}
    rows = [dict(good, format=f) for f in FORMATS]
    rows[1] |= {"converter": "keras", "o2t_converted": False, "o2t_error": "onnx2tf: Add"}
    rows[4] |= {"parity": "FAIL", "first_divergent": "blocks.0 (MatMul)"}
    assert verdict(rows[1]) == "ok (keras)" and verdict(rows[1], "o2t_") == "not converted"
    assert verdict(rows[4]) == "parity FAIL"
    assert verdict(dict(rows[3], converter="keras", fp32_kept=11)) == "ok (keras; 11 weights fp32)"
    assert verdict(dict(rows[3], fp32_kept=1)) == "ok (1 weight fp32)"
    assert verdict(dict(rows[3], fp32_kept=0)) == "ok"
    assert verdict(dict(good, agreed=False, max_abs_err=0.5, top1=0.75)) == (
        "disagrees 5.0e-01, top-1 75%")
    assert coverage(rows) == (0, 0, 1)
    assert sweep_status(rows) == 1
    assert sweep_status([dict(good, format=f) for f in FORMATS]) == 0
    assert sweep_status([dict(good, format=f) for f in FORMATS] + [{"model": "b", "format": "",
                                                                   "error": "x"}]) == 3


def test_a_failing_ill_conditioned_model_says_so():
    """Random-weight efficientnet_b1 (as swept): PyTorch's own fp32 logits land 143 from its
    fp64 ones, of 1913; a well-conditioned failure gets no such note."""
    base = {"model": "efficientnet_b1", "weights": "random", "converted": True, "ran": True,
            "agreed": False, "max_abs_err": 154.7, "top1": 0.9375, "parity": "FAIL",
            "first_divergent": "features.6.3.block.3.0 (Conv)"}
    rows = [dict(base, format="onnx", torch_floor=143.3, logits_max=1913.1)]
    problem = md_rows(rows)[0][-1]
    assert problem.startswith("ill-conditioned with random weights (PyTorch's own fp32 "
                              "logits land 143 from fp64, of 1913); onnx: first divergent "
                              "features.6.3.block.3.0 (Conv)"), problem
    rows[0] |= {"torch_floor": 0.27, "logits_max": 350.0}  # efficientnet_b0's: 0.08%
    assert md_rows(rows)[0][-1] == "onnx: first divergent features.6.3.block.3.0 (Conv)"


def test_fallback_formats_drop_keras_then_keep_onnx_alone():
    assert fallback_formats(tuple(FORMATS)) == tuple(FORMATS[:4])
    assert fallback_formats(tuple(FORMATS[:4])) == ("onnx",)
    assert fallback_formats(("onnx",)) is None


def test_onnx_row_survives_when_every_tf_step_fails(monkeypatch, tmp_path):
    """Keras and onnx2tf both failing (timm's swiftformer_xs, as swept) still leaves the
    ONNX export its row: converted, run and checked for real; each failed format keeps the
    error of the attempt that included it."""
    import converters.pipeline as pipeline
    from converters.sweep import worker

    real = pipeline.convert_model

    def no_tf(model, opts, **kwargs):
        if opts.formats != ("onnx",):
            raise RuntimeError(f"TF step failed for {len(opts.formats)} formats")
        return real(model, opts, **kwargs)

    monkeypatch.setattr(pipeline, "convert_model", no_tf)
    result = worker.run_path(str(REPO / f"{FIXTURE}:tiny_net"), "tool", weights="random",
                             out=tmp_path)
    assert list(result.formats) == FORMATS and not result.error
    onnx = result.formats["onnx"]
    assert (onnx.converted, onnx.ran, onnx.agreed, onnx.parity) == (True, True, True, "pass")
    assert onnx.max_abs_err < 1e-4 and onnx.top1 == 1.0
    assert "for 5 formats" in result.formats["keras"].error
    assert all("for 4 formats" in result.formats[f].error and not result.formats[f].converted
               for f in FORMATS[1:4])


def test_a_pass_on_the_fp16_rounding_floor_is_noted_in_the_table():
    """regnet_x_400mf, random weights, as swept: every format ok, its TFLite fp16 file's
    last stage under the flat 30 dB bar as the ONNX graph with fp16 weights is."""
    good = {"model": "regnet_x_400mf", "weights": "random", "converted": True, "ran": True,
            "agreed": True, "parity": "pass"}
    rows = [dict(good, format=f) for f in FORMATS]
    assert md_rows(rows)[0][-1] == ""
    note = ("31 tensors under the flat 30 dB pass on fp16's own rounding (the ONNX graph, "
            "its weights rounded to fp16, reaches 17.8 dB at trunk_output.block4.block4-11.f"
            ".c.1; the file 18.6)")
    rows[3] |= {"parity_note": note}
    assert md_rows(rows)[0][-1] == f"(passes; tflite_fp16: {note})"[:200]
    rows[0] |= {"parity": "FAIL", "first_divergent": "stem (Conv)"}  # a failure comes first
    assert md_rows(rows)[0][-1] == "onnx: first divergent stem (Conv)"


def test_rows_of_random_weights_under_an_older_recipe_say_so(tmp_path):
    """Records from before the BN recipe was recorded hold other random weights than a
    re-run converts: their weights cell says so, and the legend what the recipes were."""
    from converters.sweep.table import OLDER_RECIPE, write_md

    now = {"model": "resnet18", "weights": "random", "weights_recipe": RANDOM_RECIPE,
           "format": "onnx"}
    before = {"model": "resnet34", "weights": "random", "format": "onnx"}
    real = {"model": "mobilenet_v2", "weights": "pretrained", "weights_recipe": "",
            "format": "onnx"}
    assert [row[2] for row in md_rows([now, before, real])] == [
        "random", OLDER_RECIPE, "pretrained"]
    legend = (f"Weights *{OLDER_RECIPE}*: swept when random weights' BN statistics came from "
              f"noise alone; *random*: from {RANDOM_RECIPE}")
    env = environment(with_gpu=False)
    assert legend in write_md([now, before], tmp_path / "a.md", env, "torchvision").read_text()
    assert legend not in write_md([now, real], tmp_path / "b.md", env, "torchvision").read_text()


@pytest.mark.parametrize("kept, shared", [(0, True), (3, False)])
def test_onnx2tf_alone_is_redone_where_the_tools_fp16_file_kept_weights_in_fp32(
        monkeypatch, kept, shared):
    """The tool's files are onnx2tf's and stand for onnx2tf alone, unless the tool put
    weights of the fp16 file back in float32: onnx2tf alone did not."""
    from converters.sweep import worker

    calls = []

    def run_path(model, path, *, weights, out, formats=None):
        calls.append(path)
        formats = {f: worker.FormatResult(f, converter="onnx2tf" if f != "onnx" else
                                          "torch.onnx", converted=True)
                   for f in worker.path_formats(path)}
        formats["tflite_fp16"].fp32_kept = kept if path == "tool" else None
        return worker.PathResult(path, formats=formats)

    monkeypatch.setattr(worker, "run_path", run_path)
    monkeypatch.setattr(worker, "params_m", lambda model, weights: 1.0)
    rows = worker.sweep_model("m", weights="random", out=Path("unused"))
    assert calls == (["tool"] if shared else ["tool", "onnx2tf"])
    assert all(r["o2t_shared"] is shared for r in rows)
    fp16 = next(r for r in rows if r["format"] == "tflite_fp16")
    assert (fp16["fp32_kept"], fp16["o2t_fp32_kept"]) == (kept, kept if shared else None)


def test_sigterm_leaves_no_worker_staging_folder_behind(tmp_path):
    """The sweep's worker cleans up and exits before the driver does (it once left its
    ``.partial-PID`` folder for seconds after the driver's exit)."""
    import signal

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "converters", "sweep", "--weights", "random", "--out", str(out),
         "--results", str(tmp_path / "results"), "--models", GOOD[0]],
        cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.rglob(".*.partial-*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert list(out.rglob(".*.partial-*")) == []
