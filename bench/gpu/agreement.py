"""Agreement on the GPU: does each GPU way of running a model give the CPU's logits?

``python -m bench.gpu.agreement --device cuda`` runs every model on real photos
(``zoo.data.sample_photos``: the imagenet-sample photos under ``$MODELZOO_DATA``, else
scikit-image's) and compares, per model:

- PyTorch on the device in fp32 (strict), TF32, fp16 and bf16 autocast against PyTorch
  fp32 on the CPU (the reference);
- ONNX Runtime's CUDA EP (fp32, and the fp16 model) against ONNX Runtime on the CPU, where
  the EP is installed and the model's ONNX artifact exists (else a row says why not).

Each row: max and mean |logit error|, top-1 agreement, and pass/fail against the bound of
its precision (``TOLERANCES``). Records go to ``<results>/raw/agreement-<device>-<hw>.jsonl``
and the tables beside them (``.csv``, ``.md``). Exit status: 0 every row passed; 3 a row
failed or errored (a row that cannot run here says "skipped: why" and fails
nothing); 2 bad input.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.agreement import Agreement, compare_logits, failed_run
from converters.tolerance import DEFAULT_POLICY, LogitTolerance

# Logit bounds on the GPU, against PyTorch fp32 on the CPU. fp32: cuDNN and the CPU sum in
# other orders, so the converters' fp32 bar applies (it widens to twice PyTorch's own fp32
# rounding). TF32 rounds matmul inputs to 10 mantissa bits, as fp16 does: fp16's bar. bf16
# keeps 7 bits, eight times coarser: a bar of our own, eight times fp16's rtol (not yet
# measured on a GPU; the first run's table says how close it lands).
TOLERANCES: dict[str, LogitTolerance] = {
    "fp32": DEFAULT_POLICY.by_precision["fp32"].logits,
    "tf32": DEFAULT_POLICY.by_precision["fp16"].logits,
    "fp16": DEFAULT_POLICY.by_precision["fp16"].logits,
    "bf16": LogitTolerance(atol=0.1, rtol=0.16, min_top1=0.8),
}


@dataclass(frozen=True)
class AgreementRow:
    """One (model, way of running) compared with its CPU reference."""

    model: str
    weights: str
    device: str
    reference: str  # what it is compared with, e.g. "pytorch cpu fp32"
    agreement: Agreement  # artifact = the runtime name (pytorch_fp16, onnxruntime, ...)

    def to_json(self) -> dict[str, Any]:
        return {"type": "agreement", "model": self.model, "weights": self.weights,
                "device": self.device, "reference": self.reference,
                **self.agreement.to_json()}


@dataclass(frozen=True)
class TorchWay:
    name: str  # the latency runtime of the same set-up
    precision: str
    tf32: bool = False
    autocast: str | None = None


TORCH_WAYS = (TorchWay("pytorch", "fp32"), TorchWay("pytorch_tf32", "tf32", tf32=True),
              TorchWay("pytorch_fp16", "fp16", autocast="float16"),
              TorchWay("pytorch_bf16", "bf16", autocast="bfloat16"))


def _torch_logits(model: Any, x: np.ndarray, device: str, way: TorchWay) -> np.ndarray:
    import torch

    from bench.latency.torch_variants import autocast_module, set_math_mode

    if device.startswith("cuda"):
        set_math_mode(tf32=way.tf32)
    run = autocast_module(model, way.autocast, device) if way.autocast else model
    with torch.inference_mode():
        out = run(torch.from_numpy(x).to(device)).float().cpu().numpy()
    if device.startswith("cuda"):
        set_math_mode(tf32=False)
    return out


def _fp64_logits(model: Any, x: np.ndarray, device: str) -> np.ndarray:
    """The model in float64 on ``device`` (a GPU does fp64 in a fraction of the CPU's time):
    near-exact logits, to tell PyTorch's own fp32 rounding on the CPU."""
    import copy

    import torch

    exact = copy.deepcopy(model).double().to(device).eval()
    with torch.inference_mode():
        out = exact(torch.from_numpy(x).double().to(device)).cpu().numpy()
    del exact
    return out


def torch_rows(model_name: str, x: np.ndarray, device: str, *, weights: str = "auto",
               ways: tuple[TorchWay, ...] = TORCH_WAYS) -> list[AgreementRow]:
    """PyTorch on ``device`` in each way against PyTorch fp32 on the CPU, on inputs ``x``.
    The bounds never go under twice the CPU fp32 logits' distance to float64's."""
    import copy

    from zoo.build import build_model

    model, source = build_model(model_name, weights=weights)
    ref = _torch_logits(model, x, "cpu", TORCH_WAYS[0])
    gap = float(np.abs(ref - _fp64_logits(model, x, device)).max())
    on_device = copy.deepcopy(model).to(device).eval()
    rows = []
    for way in ways:
        try:
            logits = _torch_logits(on_device, x, device, way)
            found = compare_logits(way.name, way.precision, logits, ref, torch_gap=gap,
                                   tol=TOLERANCES[way.precision])
        except Exception as exc:  # noqa: BLE001  one way failing is its row
            found = failed_run(way.name, way.precision, len(x), exc)
        rows.append(AgreementRow(model_name, source.label, device, "pytorch cpu fp32", found))
    return rows


def onnx_rows(model_name: str, x: np.ndarray, device: str, artifacts: Path, weights: str
              ) -> list[AgreementRow]:
    """ONNX Runtime's CUDA EP (fp32 model, fp16 model) against ONNX Runtime on the CPU."""
    from bench.latency.runtimes import get_runtime

    names = ("onnxruntime", "onnxruntime_fp16")
    why = next((w for n in names if (w := get_runtime(n).unavailable(device))), "")
    onnx_path = None if why else _onnx_file(artifacts, model_name)
    if not why and onnx_path is None:
        why = f"no ONNX artifact under {artifacts / model_name} (convert the model first)"
    if why:
        return [AgreementRow(model_name, weights, device, "onnxruntime cpu fp32",
                             skipped(n, get_runtime(n).precision, len(x), why)) for n in names]
    return _run_onnx(model_name, x, device, onnx_path, weights)


SKIPPED = "skipped: "


def skipped(name: str, precision: str, n_images: int, why: str) -> Agreement:
    """The row of a way of running that cannot run here: not a failure, and says why."""
    nan = float("nan")
    return Agreement(name, precision, n_images, nan, nan, nan, nan, nan, nan, False,
                     f"{SKIPPED}{why}")


def _status(a: Agreement) -> str:
    return "skipped" if a.error.startswith(SKIPPED) else "ok" if a.passed else "FAIL"


def _onnx_file(artifacts: Path, model_name: str) -> Path | None:
    from converters.manifest import load_manifest
    from converters.pipeline import runner_spec

    folder = artifacts / model_name
    try:
        record = load_manifest(folder).artifact("onnx")
    except (OSError, KeyError, ValueError):
        return None
    path = Path(runner_spec(folder, record).path)
    return path if path.is_file() else None


def _run_onnx(model_name: str, x: np.ndarray, device: str, onnx_path: Path, weights: str
              ) -> list[AgreementRow]:
    import tempfile

    import onnxruntime as ort

    from bench.latency.runtimes import ORT_PROVIDERS
    from converters.onnx_fp16 import write_fp16

    def run(path: Path, providers: tuple[Any, ...]) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=list(providers))
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    ref = run(onnx_path, ORT_PROVIDERS["cpu"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="modelzoo-fp16-") as tmp:
        fp16 = Path(tmp) / f"{model_name}_fp16.onnx"
        for name, precision, make in (("onnxruntime", "fp32", lambda: onnx_path),
                                      ("onnxruntime_fp16", "fp16",
                                       lambda: write_fp16(onnx_path, fp16))):
            try:
                logits = run(make(), ORT_PROVIDERS[device])
                found = compare_logits(name, precision, logits, ref, tol=TOLERANCES[precision])
            except Exception as exc:  # noqa: BLE001  one provider failing is its row
                found = failed_run(name, precision, len(x), exc)
            rows.append(AgreementRow(model_name, weights, device, "onnxruntime cpu fp32",
                                     found))
    return rows


def photos_batch(model_name: str, n: int) -> tuple[np.ndarray, str]:
    """``n`` real photos preprocessed for ``model_name`` (NCHW float32), and their source."""
    from zoo.data import sample_photos
    from zoo.meta import preprocessing_of
    from zoo.preprocess import preprocess_images
    from zoo.registry import get_entry

    photos = sample_photos(n)
    return preprocess_images(photos.images, preprocessing_of(get_entry(model_name))), \
        photos.source


COLUMNS = ("model", "weights", "device", "runtime", "precision", "reference", "n_images",
           "max_abs_err", "mean_abs_err", "ref_max_abs", "top1_agreement", "bound", "passed",
           "error")


def _cells(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["model"], r["weights"], r["device"], r["artifact"], r["precision"],
            r["reference"], r["n_images"], r["max_abs_err"], r["mean_abs_err"],
            r["ref_max_abs"], r["top1_agreement"], r["tolerance"],
            "skipped" if str(r["error"]).startswith(SKIPPED) else r["passed"], r["error"])


def write_tables(env: dict[str, Any], records: list[dict[str, Any]], stem: Path
                 ) -> list[Path]:
    """``stem.csv`` and ``stem.md`` from the records (the raw file is written by ``run``)."""
    from zoo import atomic
    from zoo.env import markdown_header
    from zoo.tables import md_table

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return "" if v is None else str(v).replace("|", "\\|")

    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    with atomic.atomic_open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(_cells(r) for r in records)
    text = markdown_header(env, f"Agreement on {env.get('device', '?')}: logits against the "
                                f"CPU's")
    text += (f"- photos: {env.get('photos')}\n- bounds: max |err| <= atol + rtol x max |ref| "
             "(never under twice PyTorch's own fp32 rounding) and top-1 agreement >= the "
             "precision's minimum: " + "; ".join(
                 f"{p}: atol {t.atol:g}, rtol {t.rtol:g}, top-1 {t.min_top1:g}"
                 for p, t in TOLERANCES.items()) + "\n\n")
    text += md_table(COLUMNS, (_cells(r) for r in records), cell=cell)
    atomic.write_text(md_path, text)
    return [csv_path, md_path]


def write_all(stem: Path, env: dict[str, Any], records: list[dict[str, Any]]) -> list[Path]:
    """The raw records (``raw/<stem>.jsonl``) and the tables made from them."""
    from zoo import atomic

    raw = stem.parent / "raw" / f"{stem.name}.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(raw, "".join(json.dumps(x, default=str) + "\n"
                                   for x in [{"type": "env", **env}, *records]))
    return [raw, *write_tables(env, records, stem)]


def run(args: argparse.Namespace,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> int:
    """Model by model; the files are rewritten after each, so a run stopped part-way keeps
    the models it finished."""
    from bench.latency.availability import no_gpu
    from bench.latency.cli import slug
    from zoo.cli import expand_models, results_dir
    from zoo.env import environment
    from zoo.exits import ExitCode
    from zoo.registry import list_models

    if args.device == "cuda" and (why := no_gpu()):
        print(f"error: --device cuda: {why}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        models = expand_models(args.models, list_models())
    except (ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    import torch

    env = environment(threads=torch.get_num_threads(), weights=args.weights,
                      with_gpu=args.device == "cuda")
    env.update(device=args.device, command=sys.orig_argv[1:])
    hardware = env["gpu"]["name"] if env.get("gpu") else env["cpu"]
    stem = results_dir(args) / f"agreement-{args.device}-{slug(hardware)}"
    records: list[dict[str, Any]] = []
    for name in models:
        x, source = photos_batch(name, args.photos)
        env["photos"] = f"{len(x)} photos from {source}"
        rows = torch_rows(name, x, args.device, weights=args.weights)
        rows += onnx_rows(name, x, args.device, args.artifacts, rows[0].weights)
        for row in rows:
            a = row.agreement
            log(f"{name:18s} {a.artifact:18s} {a.precision:5s} max|err| {a.max_abs_err:.3g} "
                f"top-1 {a.top1_agreement:.3f} {_status(a)} {a.error}")
        records += [r.to_json() for r in rows]
        written = write_all(stem, env, records)
    log("wrote " + ", ".join(str(p) for p in written))
    measured = [r for r in records if not str(r["error"]).startswith(SKIPPED)]
    return ExitCode.OK if all(r["passed"] for r in measured) else ExitCode.PARTIAL


def build_parser() -> argparse.ArgumentParser:
    from zoo.cli import add_models_argument, add_results_argument

    p = argparse.ArgumentParser(prog="python -m bench.gpu.agreement", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="where the compared runs go (default cuda)")
    add_models_argument(p, default="the 16 curated models")
    p.add_argument("--weights", default="auto",
                   help="auto (ImageNet where available offline, else random) | random[:SEED]")
    p.add_argument("--photos", type=int, default=16, help="how many photos (default 16)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="where ONNX artifacts are looked for (ONNX Runtime rows)")
    add_results_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
