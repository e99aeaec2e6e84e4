"""``coverage-<source>.{csv,md}`` from the sweep's records (``converters.sweep.worker``).

A record is one model x format with the tool's columns and, prefixed ``o2t_``, onnx2tf
alone's; a model that could not be converted at all is one record with only ``error``.
A format is *ok* when it converted, ran, agreed with PyTorch and passed per-layer parity.
Coverage: models whose every format is ok, over all models (the tool: the five default
formats; onnx2tf alone: ONNX, SavedModel, TFLite fp32 and fp16, which is all it makes).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from zoo import atomic
from zoo.build import RANDOM_RECIPE

PATH_COLUMNS = ("converter", "converted", "ran", "agreed", "max_abs_err", "top1", "parity",
                "first_divergent", "parity_note", "step_s", "convert_s", "peak_rss_mb",
                "error", "torch_floor", "logits_max", "fp32_kept")
# PyTorch's own fp32 run this far from its fp64 logits, as a share of the largest |logit|,
# marks a model that amplifies round-off (random-weight efficientnet_b1: 143 of 1913, 7%;
# efficientnet_b0: 0.27 of 350, 0.08%): a failing row then says so
ILL_CONDITIONED = 0.01
COLUMNS = ("model", "weights", "weights_recipe", "params_m", "format", *PATH_COLUMNS,
           *(f"o2t_{c}" for c in PATH_COLUMNS), "o2t_shared", "swept")
TOOL_FORMATS = ("onnx", "tf_savedmodel", "tflite_fp32", "tflite_fp16", "keras")
O2T_FORMATS = ("onnx", "tf_savedmodel", "tflite_fp32", "tflite_fp16")


def ok(row: dict[str, Any], prefix: str = "") -> bool:
    g = lambda k: row.get(prefix + k)  # noqa: E731
    return bool(g("converted") and g("ran") and g("agreed") and g("parity") == "pass")


def verdict(row: dict[str, Any] | None, prefix: str = "") -> str:
    """One cell: ok, or the first check that failed (and the converter when not onnx2tf, and
    how many weights a TFLite fp16 file keeps in float32)."""
    if row is None or prefix + "converted" not in row:
        return "-"
    g = lambda k: row.get(prefix + k)  # noqa: E731
    marks = ["keras"] if g("converter") == "keras" and row["format"] != "keras" else []
    kept = g("fp32_kept")
    marks += [f"{kept} weight{'s' if kept != 1 else ''} fp32"] if kept else []
    mark = f" ({'; '.join(marks)})" if marks else ""
    if not g("converted"):
        return "not converted"
    if not g("ran"):
        return "does not run" + mark
    if not g("agreed"):
        return f"disagrees {g('max_abs_err'):.1e}, top-1 {g('top1'):.0%}{mark}"
    if g("parity") != "pass":
        return f"parity {g('parity') or 'unchecked'}{mark}"
    return "ok" + mark


def by_model(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["model"], []).append(r)
    return out


def model_ok(rows: list[dict[str, Any]], prefix: str, formats: Sequence[str]) -> bool:
    have = {r.get("format"): r for r in rows}
    return all(f in have and ok(have[f], prefix) for f in formats)


def coverage(records: Sequence[dict[str, Any]]) -> tuple[int, int, int]:
    """(models ok by the tool, models ok by onnx2tf alone, models)."""
    models = by_model(records)
    tool = sum(model_ok(rows, "", TOOL_FORMATS) for rows in models.values())
    alone = sum(model_ok(rows, "o2t_", O2T_FORMATS) for rows in models.values())
    return tool, alone, len(models)


def write_csv(records: Sequence[dict[str, Any]], path: Path) -> Path:
    with atomic.atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return path


def _problem(rows: list[dict[str, Any]]) -> str:
    """The first reason a model is not ok (an error, else the first divergent layer), after
    a note when PyTorch itself cannot hold its logits to fp32 round-off; for a model that
    is ok, where a pass rests on the fp16 rounding floor (``converters.tolerance``)."""
    reason = _first_problem(rows)
    if reason:
        return f"{_conditioning(rows)}{reason}"
    return next((f"(passes; {r['format']}: {r['parity_note']})"[:200] for r in rows
                 if r.get("parity_note") and ok(r)), "")


def _conditioning(rows: list[dict[str, Any]]) -> str:
    """"ill-conditioned ...; " when PyTorch's own fp32 logits land a sizeable share of
    their magnitude from its fp64 ones (``ILL_CONDITIONED``), else ""."""
    for r in rows:
        floor, top = r.get("torch_floor"), r.get("logits_max")
        if r.get("format") == "onnx" and floor and top and floor >= ILL_CONDITIONED * top:
            weights = f"{r.get('weights')} weights" if r.get("weights") else "the weights"
            return (f"ill-conditioned with {weights} (PyTorch's own fp32 logits land "
                    f"{floor:.3g} from fp64, of {top:.4g}); ")
    return ""


def _first_problem(rows: list[dict[str, Any]]) -> str:
    for prefix in ("", "o2t_"):
        for r in rows:
            if r.get(prefix + "error") and not ok(r, prefix):
                tag = "onnx2tf alone: " if prefix else ""
                return f"{tag}{r.get('format') or 'model'}: {r[prefix + 'error']}"[:160]
            if r.get(prefix + "first_divergent") and r.get(prefix + "parity") != "pass":
                tag = "onnx2tf alone: " if prefix else ""
                return f"{tag}{r['format']}: first divergent {r[prefix + 'first_divergent']}"[:200]
    for r in rows:  # logits beyond tolerance while every layer passes parity
        if r.get("ran") and not r.get("agreed") and r.get("parity") == "pass":
            return (f"{r['format']}: logits disagree (max abs err {r['max_abs_err']:.2g}) "
                    "though every layer passes parity")
    return ""


OLDER_RECIPE = "random (older BN recipe)"


def _weights(row: dict[str, Any]) -> str:
    """The row's weights; random ones made under another recipe than this version's say
    so: a re-run converts other weights."""
    if row.get("weights") == "random" and row.get("weights_recipe", "") != RANDOM_RECIPE:
        return OLDER_RECIPE
    return row.get("weights", "-")


def md_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for model, recs in by_model(records).items():
        have = {r.get("format"): r for r in recs}
        first = recs[0]
        cells = [f"`{model}`", _num(first.get("params_m"), "{:.1f}"), _weights(first)]
        cells += [verdict(have.get(f)) for f in TOOL_FORMATS]
        cells += [verdict(have.get(f), "o2t_") for f in O2T_FORMATS[1:]]
        cells += [_num(first.get("convert_s"), "{:.0f}"), _num(first.get("peak_rss_mb"), "{:.0f}"),
                  _problem(recs).replace("|", "/")]
        rows.append(cells)
    return rows


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None or v == "" else fmt.format(v)


def write_md(records: Sequence[dict[str, Any]], path: Path, env: dict[str, Any], source: str,
             not_swept: Sequence[str] = ()) -> Path:
    from zoo.env import markdown_header
    from zoo.tables import md_table

    tool, alone, n = coverage(records)
    pct = lambda k: f"{k}/{n} ({k / n:.0%})" if n else "0/0"  # noqa: E731
    dates = sorted({str(r["swept"])[:10] for r in records if r.get("swept")})
    headers = ["model", "params M", "weights", *TOOL_FORMATS,
               *(f"onnx2tf alone: {f}" for f in O2T_FORMATS[1:]), "convert+check s",
               "peak RSS MB", "first problem"]
    text = (markdown_header(env, f"Conversion coverage: {source}")
            + f"**Coverage (models whose every format converts, runs, agrees with PyTorch "
              f"and passes per-layer parity): this tool {pct(tool)}; onnx2tf alone "
              f"{pct(alone)}.** The tool's formats are {', '.join(TOOL_FORMATS)} "
              "(SavedModel/TFLite by onnx2tf, or by the Keras model's own export where "
              "onnx2tf fails or disagrees: marked (keras)); onnx2tf alone makes ONNX, "
              "SavedModel and TFLite fp32/fp16 (its ONNX cell is the tool's). "
              "*(N weights fp32)*: the tool's TFLite fp16 file keeps N weight tensors in "
              "float32, as float16 cannot hold them (docs/conversion.md); onnx2tf alone "
              "keeps none.\n\n"
              "Cells: ok, or the first check that fails; a file's per-layer bars drop to "
              "its precision's rounding floor where that is lower (fp16: the ONNX graph's "
              "own with its weights rounded to fp16, less 9.5 dB, under 30 dB; fp32: "
              "PyTorch's fp32 run against its fp64 one, less 18 dB, under 80 dB; the last "
              "column says where a pass rests on it). "
              "Time and peak RSS are the tool's "
              "path (conversion, agreement on 16 photos, per-layer parity) in the model's "
              "own process; every column per format is in the CSV.\n\n"
            + (f"Rows swept on {dates[0]}" + (f" to {dates[-1]} (`swept` in the CSV: the "
               "table completes an earlier run's records, see docs/parity.md)" if len(dates) > 1
               else "") + ".\n\n" if dates else "")
            + (f"Weights *{OLDER_RECIPE}*: swept when random weights' BN statistics came "
               f"from noise alone; *random*: from {RANDOM_RECIPE} (docs/conversion.md).\n\n"
               if any(_weights(r) == OLDER_RECIPE for r in records) else "")
            + (f"**Incomplete: {n} of {n + len(not_swept)} selected models swept**; not yet: "
               f"{', '.join(not_swept)}.\n\n" if not_swept else "")
            + md_table(headers, md_rows(records)))
    return atomic.write_text(path, text)


def write_tables(records: Sequence[dict[str, Any]], folder: Path, env: dict[str, Any],
                 source: str, not_swept: Sequence[str] = ()) -> list[Path]:
    """``not_swept``: selected models with no records yet (a partial run, named in the md).
    The records themselves go to ``raw/coverage-<source>.jsonl`` (``raw_records`` reads
    them back), replacing the rows of the models they cover and keeping every other
    model's, so a later ``--collect-only`` can complete the table from them."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = raw_path(folder, source)
    return [write_raw(merged(raw_records(raw), records), raw, env),
            write_csv(records, folder / f"coverage-{source}.csv"),
            write_md(records, folder / f"coverage-{source}.md", env, source, not_swept)]


def merged(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
           ) -> list[dict[str, Any]]:
    """``old`` without the models ``new`` covers, then ``new``."""
    covered = {r["model"] for r in new}
    return [r for r in old if r["model"] not in covered] + list(new)


def raw_path(folder: Path, source: str) -> Path:
    return folder / "raw" / f"coverage-{source}.jsonl"


def write_raw(records: Sequence[dict[str, Any]], path: Path, env: dict[str, Any]) -> Path:
    """The environment header line, then one record per line; written whole or not at all."""
    from zoo.jsonrecord import finite_or_null

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"type": "environment", "environment": env}, default=str)]
    lines += [json.dumps({"type": "coverage", **finite_or_null(dict(r))}, default=str)
              for r in records]
    return atomic.write_text(path, "\n".join(lines) + "\n")


def raw_records(path: Path) -> list[dict[str, Any]]:
    """The records a results folder's ``raw/coverage-<source>.jsonl`` holds (none when absent)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k != "type"} for r in rows
            if r.get("type") == "coverage"]
