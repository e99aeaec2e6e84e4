"""One model of the sweep, in its own process: ``python -m converters.sweep.worker MODEL
--weights W --out DIR``.

Two paths, each converted and checked (agreement on the sample photos, per-layer parity):
``tool`` (every default format, ``--tf-converter auto``) and ``onnx2tf`` (ONNX and the TF
formats by onnx2tf alone; not converted again when the tool shipped onnx2tf's artifacts).
A path whose conversion raises is retried without the Keras format (an op the Keras
builder lacks must not hide what the other formats do), then with ONNX alone (an
onnx2tf failure must not hide that the export itself works). Each path's wall time and peak
RSS (``VmHWM``, reset before it) are recorded. The records (one per model x format) go to
``DIR/<model folder>/sweep.json``; a model that cannot be built is one error record.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo import atomic
from zoo.exits import raise_if_exhausted, run_command

RECORDS = "sweep.json"
PATHS = ("tool", "onnx2tf")


@dataclass
class FormatResult:
    """One format by one path: what the table's columns say."""
    format: str
    converter: str = ""
    converted: bool = False
    ran: bool = False
    agreed: bool = False
    max_abs_err: float | None = None
    top1: float | None = None
    parity: str = ""  # pass | FAIL | error | "" (not checked)
    first_divergent: str = ""
    parity_note: str = ""  # a pass that rests on the fp16 rounding floor, where it does
    step_s: float | None = None
    error: str = ""
    # how far PyTorch's own run at the format's precision lands from its fp64 logits, and
    # the largest |logit|: a floor that is a sizeable share of the logits says the model
    # (random weights, typically) amplifies round-off, whichever runtime runs it
    torch_floor: float | None = None
    logits_max: float | None = None
    # TFLite fp16: weights kept in float32, as float16 cannot hold them (converters.tflite_fp16)
    fp32_kept: int | None = None


@dataclass
class PathResult:
    path: str
    seconds: float = 0.0
    peak_rss_mb: float | None = None
    formats: dict[str, FormatResult] = field(default_factory=dict)
    error: str = ""  # why nothing converted
    shared: bool = False  # onnx2tf alone: the tool's artifacts were onnx2tf's, not redone
    weights: str = ""  # pretrained | random | factory (the manifest's)
    weights_recipe: str = ""  # random weights: what BN statistics came from (zoo.build)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0); False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def path_formats(path: str) -> tuple[str, ...]:
    from converters.formats import default_formats, formats_of_step

    if path == "tool":
        return default_formats()
    return ("onnx", *formats_of_step("tf"))


def fallback_formats(formats: tuple[str, ...]) -> tuple[str, ...] | None:
    """What to convert when converting ``formats`` raised: without Keras first (an op the
    builder lacks), then ONNX alone (the TF step failed too); None when nothing is left."""
    if "keras" in formats:
        return tuple(f for f in formats if f != "keras")
    if "onnx" in formats and len(formats) > 1:
        return ("onnx",)
    return None


def model_ref(model: str, weights: str):
    """What ``convert_model`` takes for ``model``: its name, or a user's factory's entry."""
    from zoo.sources.user import is_user_target, user_entry

    return user_entry(model, weights=weights) if is_user_target(model) else model


def run_path(model: str, path: str, *, weights: str, out: Path,
             formats: tuple[str, ...] | None = None) -> PathResult:
    """Convert ``model`` by ``path`` into ``out/path``, then agreement and parity."""
    from converters.errors import error_line
    from converters.pipeline import ConvertOptions, convert_model

    formats = formats or path_formats(path)
    result = PathResult(path, formats={f: FormatResult(f) for f in formats})
    _reset_peak()
    t0 = time.perf_counter()
    opts = ConvertOptions(weights=weights, out_root=out / path, formats=formats,
                          tf_converter="auto" if path == "tool" else "onnx2tf",
                          fp16_keep_fp32=path == "tool")
    try:
        manifest = convert_model(model_ref(model, weights), opts,
                                 log=lambda s: print(s, file=sys.stderr))
    except Exception as exc:  # noqa: BLE001  the reason is the record
        raise_if_exhausted(exc, memory=False)
        result.error = error_line(exc)
        fewer = fallback_formats(formats)
        if fewer:  # what failed may be one step: the formats before it still get their row
            peak = _peak_rss_mb()
            rest = run_path(model, path, weights=weights, out=out, formats=fewer)
            for f in formats:
                if f not in fewer:
                    rest.formats[f] = FormatResult(f, error=result.error)
            rest.formats = {f: rest.formats[f] for f in formats}
            rest.seconds = round(time.perf_counter() - t0, 1)
            rest.peak_rss_mb = max(v for v in (peak, rest.peak_rss_mb, 0.0) if v is not None)
            onnx_made = rest.formats.get("onnx", FormatResult("onnx")).converted
            rest.error = "" if onnx_made else result.error
            return rest
        result.seconds = round(time.perf_counter() - t0, 1)
        result.peak_rss_mb = _peak_rss_mb()
        for f in result.formats.values():
            f.error = result.error
        return result
    _fill_conversion(result, manifest)
    w = manifest.weights
    result.weights = "random" if w.kind == "random" else "pretrained" if w.pretrained else w.kind
    result.weights_recipe = w.recipe if w.kind == "random" else ""
    _fill_parity(result, out / path / manifest.entry.folder)
    result.seconds = round(time.perf_counter() - t0, 1)
    result.peak_rss_mb = _peak_rss_mb()
    return result


def _fill_conversion(result: PathResult, manifest) -> None:
    step_of = {"onnx": "onnx", "keras": "keras"}
    for rec in manifest.artifacts:
        f = result.formats.setdefault(rec.format, FormatResult(rec.format))
        f.converted, f.converter = True, rec.converter
        f.fp32_kept = None if rec.fp32_kept is None else len(rec.fp32_kept)
        step = step_of.get(rec.format, "onnx2tf" if rec.converter == "onnx2tf" else "keras_tf")
        f.step_s = manifest.step_seconds.get(step)
    for a in manifest.agreement:
        f = result.formats[a.artifact]
        f.ran, f.agreed = not a.error, bool(a.passed)
        f.max_abs_err = None if a.error else float(a.max_abs_err)
        f.top1 = None if a.error else float(a.top1_agreement)
        f.error = a.error
        if not a.error and math.isfinite(a.rounding_floor):
            f.torch_floor, f.logits_max = float(a.rounding_floor), float(a.ref_max_abs)


def _fill_parity(result: PathResult, folder: Path) -> None:
    from converters.errors import error_line
    from converters.parity.report import describe
    from converters.parity.run import run_parity

    made = [f for f, r in result.formats.items() if r.converted]
    pairs = tuple(("pytorch" if f == "onnx" else "onnx", f) for f in made)
    try:
        reports = run_parity(folder, pairs=pairs)
    except Exception as exc:  # noqa: BLE001
        raise_if_exhausted(exc, memory=False)
        for f in made:
            result.formats[f].parity, result.formats[f].first_divergent = "error", error_line(exc)
        return
    for r in reports:
        f = result.formats[r.test]
        f.parity = "pass" if r.passed else ("error" if r.error else "FAIL")
        f.parity_note = r.floor[:200] if r.passed else ""
        d = r.first_divergent
        if r.error or d is None:
            f.first_divergent = r.error[:200]
        elif r.cause:  # the cause, not the ops fused with the layer
            f.first_divergent = f"{describe(d, [], {})}: {r.cause}"
        else:
            f.first_divergent = describe(d, r.fused.get(d.name, []), {})


def sweep_model(model: str, *, weights: str, out: Path) -> list[dict[str, Any]]:
    """The model's records: one per format, with the tool's and onnx2tf's columns."""
    tool = run_path(model, "tool", weights=weights, out=out)
    tf_by_onnx2tf = all(tool.formats[f].converter == "onnx2tf"
                        for f in path_formats("onnx2tf") if f != "onnx")
    # the tool's fp16 file with weights put back in float32 is not onnx2tf's alone
    kept = tool.formats.get("tflite_fp16", FormatResult("tflite_fp16")).fp32_kept
    if tf_by_onnx2tf and not kept and not tool.error:
        alone = PathResult("onnx2tf", tool.seconds, tool.peak_rss_mb, shared=True,
                           formats={f: tool.formats[f] for f in path_formats("onnx2tf")})
    else:
        alone = run_path(model, "onnx2tf", weights=weights, out=out)
    return records_of(model, weights, tool, alone)


def records_of(model: str, weights: str, tool: PathResult, alone: PathResult
               ) -> list[dict[str, Any]]:
    base = {"model": model, "weights": tool.weights or alone.weights or weights,
            "weights_recipe": tool.weights_recipe or alone.weights_recipe,
            "params_m": params_m(model, weights)}
    rows = []
    for fmt in tool.formats:
        row = dict(base, format=fmt)
        for prefix, path in (("", tool), ("o2t_", alone)):
            f = path.formats.get(fmt)
            row |= {prefix + k: v for k, v in asdict(f).items() if k != "format"} if f else {}
            row |= {prefix + "convert_s": path.seconds, prefix + "peak_rss_mb": path.peak_rss_mb}
        row["o2t_shared"] = alone.shared
        rows.append(row)
    return rows


def params_m(model: str, weights: str) -> float | None:
    """Millions of parameters as the source publishes them (None where it publishes none)."""
    from zoo.meta import published_meta

    ref = model_ref(model, weights)
    if isinstance(ref, str):
        from zoo.registry import get_entry

        ref = get_entry(ref)
    n = published_meta(ref).num_params
    return round(n / 1e6, 3) if n else None


def error_record(model: str, exc: BaseException) -> dict[str, Any]:
    from converters.errors import error_line

    return {"model": model, "format": "", "error": error_line(exc)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m converters.sweep.worker")
    p.add_argument("model")
    p.add_argument("--weights", default="auto")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--records", type=Path, required=True, help="where the JSON records go")
    p.add_argument("--keep-artifacts", action="store_true",
                   help="keep the converted files (default: removed once checked)")
    args = p.parse_args(argv)
    # SIGTERM from the driver: the conversion's staging folder is removed before exit 143
    return run_command("converters.sweep.worker", lambda: _sweep_one(args))


def _sweep_one(args: argparse.Namespace) -> int:
    try:
        records = sweep_model(args.model, weights=args.weights, out=args.out)
        code = 0
    except Exception as exc:  # noqa: BLE001  a model that cannot even be built: its row
        raise_if_exhausted(exc, memory=False)
        records = [error_record(args.model, exc)]
        print(f"error: {records[0]['error']}", file=sys.stderr)
        code = 3
    if not args.keep_artifacts:
        _remove_artifacts(args.model, args.out)
    args.records.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(args.records, records, default=str)
    return code


def _remove_artifacts(model: str, out: Path) -> None:
    """The model's artifact folders of both paths (a sweep of 80 models would fill a
    disk); its records hold every number."""
    import shutil

    from zoo.entry import safe_name
    from zoo.sources.user import is_user_target

    if is_user_target(model):
        where, _, factory = model.rpartition(":")
        folder = safe_name(f"{Path(where).stem}-{factory}")
    else:
        folder = "/".join(safe_name(p) for p in model.split("/") if p)
    for path in PATHS:
        shutil.rmtree(out / path / folder, ignore_errors=True)


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
