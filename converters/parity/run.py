"""Per-layer parity of a converted model: capture every format, align, compare."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from converters.errors import error_line
from converters.formats import get_format
from converters.manifest import Manifest, load_manifest
from converters.parity.capture import (Capture, capture_keras, capture_keras_saved_model,
                                       capture_onnx, capture_tf, capture_tflite,
                                       capture_torch, folded_readers)
from converters.parity.graph_index import GraphIndex, index_graph
from converters.parity.metrics import TensorDiff, diff_tensors
from converters.terminal import Status, no_status
from converters.tolerance import DEFAULT_POLICY, TolerancePolicy

if TYPE_CHECKING:
    import torch



def default_pairs() -> tuple[tuple[str, str], ...]:
    """PyTorch vs ONNX, then ONNX vs every other default format (``converters.formats``)."""
    from converters.formats import default_formats

    return (("pytorch", "onnx"), *(("onnx", f) for f in default_formats() if f != "onnx"))


@dataclass
class PairReport:
    model: str
    weights: str
    reference: str
    test: str
    precision: str
    inputs: str
    n_sites: int  # float tensors in the ONNX graph
    diffs: list[TensorDiff]
    unaligned: dict[str, str]
    fused: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""  # a format that could not run at all

    @property
    def passed(self) -> bool:
        return not self.error and all(d.passed for d in self.diffs)

    @property
    def first_divergent(self) -> TensorDiff | None:
        """The first failing tensor, non-finite ones included."""
        return next((d for d in self.diffs if not d.passed), None)

    @property
    def first_nonfinite(self) -> TensorDiff | None:
        """The first tensor holding NaN or Inf (in either format)."""
        return next((d for d in self.diffs if d.nonfinite), None)

    @property
    def worst(self) -> TensorDiff | None:
        """The lowest SNR; a non-finite tensor is worse than any (its SNR is NaN, and NaN
        loses every comparison, so a plain ``min`` would skip it)."""
        return min(self.diffs, key=_badness, default=None)

    @property
    def aligned_fraction(self) -> float:
        return len(self.diffs) / self.n_sites if self.n_sites else 0.0


def _badness(d: TensorDiff) -> tuple[int, float]:
    """Sort key, lowest first: non-finite tensors (earliest first), then by SNR."""
    if d.nonfinite or math.isnan(d.snr_db):
        return 0, 0.0
    return 1, d.snr_db


@dataclass(frozen=True)
class ParityInputs:
    x: np.ndarray  # NCHW float32
    description: str
    calibration_images: list[np.ndarray]


def parity_inputs(manifest: Manifest, *, n_photos: int = 4, n_random: int = 2, seed: int = 0
                  ) -> ParityInputs:
    """Real photos (preprocessed) followed by seeded standard-normal images."""
    from zoo.data import sample_photos
    from zoo.preprocess import preprocess_images

    photos = sample_photos(max(n_photos, 1))
    real = preprocess_images(photos.images[:n_photos], manifest.preprocessing())
    noise = np.random.default_rng(seed).standard_normal((n_random, *real.shape[1:]),
                                                        dtype=np.float32)
    desc = f"{n_photos} photos ({photos.source}) + {n_random} seeded N(0,1) images"
    return ParityInputs(np.concatenate([real, noise]), desc, photos.images)


def capture_format(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs,
                   index: GraphIndex, model: "torch.nn.Module | None" = None) -> Capture:
    """Every intermediate tensor of ``fmt``; PyTorch's from ``model`` when given, else from
    the model rebuilt as the manifest records it (no catalog look-up)."""
    if fmt == "pytorch":
        from zoo.build import build_model

        if model is None:
            model, _ = build_model(manifest.model_entry(), weights=manifest.weights.spec)
        return capture_torch(model, inputs.x, index)
    return CAPTURES[get_format(fmt).capture](fmt, folder, manifest, inputs)


def _capture_onnx(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs) -> Capture:
    return capture_onnx(folder / manifest.artifact(fmt).path, inputs.x, fmt)


def _capture_tf_graph(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs
                      ) -> Capture:
    """The graph the SavedModel was saved from: onnx2tf's, rebuilt, or the Keras model."""
    record = manifest.artifact(fmt)
    if record.converter == "keras":
        keras_path = folder / manifest.artifact("keras").path
        return capture_keras_saved_model(keras_path, folder / record.path, inputs.x, fmt)
    return capture_tf(folder / manifest.artifact("onnx").path, folder / record.path, inputs.x,
                      inputs.calibration_images)


def _capture_tflite(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs
                    ) -> Capture:
    import json

    from converters.tf_export import TENSOR_MAP

    tensor_map = json.loads((folder / TENSOR_MAP).read_text())
    folded = folded_readers(folder / manifest.artifact("onnx").path)
    return capture_tflite(folder / manifest.artifact(fmt).path, tensor_map, inputs.x, fmt,
                          folded)


def _capture_keras(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs
                   ) -> Capture:
    return capture_keras(folder / manifest.artifact(fmt).path, inputs.x)


# ``Format.capture`` -> how to read every intermediate tensor of an artifact of that kind
CAPTURES: dict[str, Callable[[str, Path, Manifest, ParityInputs], Capture]] = {
    "onnx": _capture_onnx, "tf_graph": _capture_tf_graph, "tflite": _capture_tflite,
    "keras": _capture_keras}


def _capture_or_error(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs,
                      index: GraphIndex, model: "torch.nn.Module | None" = None
                      ) -> Capture | str:
    """The capture, or one line saying why this format could not run on the inputs."""
    try:
        return capture_format(fmt, folder, manifest, inputs, index, model)
    except Exception as exc:  # an artifact that cannot run fails its pairs, with the reason
        return f"{fmt}: {error_line(exc)}"


def compare(ref: Capture, test: Capture, index: GraphIndex, *, model: str, weights: str,
            precision: str, inputs: str, policy: TolerancePolicy) -> PairReport:
    tol = policy.for_(model, precision).tensors
    diffs, unaligned = [], {}
    for site in index.sites:
        a, b = ref.tensors.get(site.name), test.tensors.get(site.name)
        if a is None or b is None:
            missing = ref if a is None else test
            unaligned[site.name] = f"{missing.format}: " + missing.unaligned.get(
                site.name, "tensor not produced")
            continue
        if a.shape != b.shape:
            unaligned[site.name] = f"shape {a.shape} vs {b.shape}"
            continue
        diffs.append(diff_tensors(a, b, name=site.name, module=site.module, op=site.op,
                                  depth=site.depth, tol=tol, labels=(ref.format, test.format)))
    return PairReport(model, weights, ref.format, test.format, precision, inputs,
                      len(index.sites), diffs, unaligned, test.fused)


def run_parity(folder: Path, *, pairs: tuple[tuple[str, str], ...] | None = None,
               policy: TolerancePolicy | None = None, inputs: ParityInputs | None = None,
               timings: dict[str, float] | None = None, status: Status = no_status,
               model: "torch.nn.Module | None" = None) -> list[PairReport]:
    """Compare every pair in ``pairs`` for the converted model in ``folder``.

    Everything comes from the folder (the ONNX file and the manifest's preprocessing and
    entry); ``model`` is the PyTorch reference when given (an in-memory module that cannot
    be rebuilt), else it is rebuilt as the manifest records it. ``timings``, when given,
    receives the seconds spent capturing each format and comparing each pair;
    ``status(text)`` is entered around each of those steps.
    """
    import time

    timings = {} if timings is None else timings
    manifest = load_manifest(folder)
    pairs = default_pairs() if pairs is None else pairs
    policy = policy or DEFAULT_POLICY
    inputs = inputs or parity_inputs(manifest)
    index = index_graph(folder / manifest.artifact("onnx").path)
    captures: dict[str, Capture | str] = {}
    reports = []
    for i, (ref_fmt, test_fmt) in enumerate(pairs):
        # a capture no later pair reads is dropped: every tensor of a big model at 6 images
        # is gigabytes (maxvit_t's six captures held at once outgrew a 23 GB machine)
        later = {f for pair in pairs[i:] for f in pair}
        for fmt in [f for f in captures if f not in later]:
            del captures[fmt]
        for fmt in (ref_fmt, test_fmt):
            if fmt not in captures:
                t0 = time.perf_counter()
                with status(f"parity: capturing every {fmt} tensor"):
                    captures[fmt] = _capture_or_error(fmt, folder, manifest, inputs, index,
                                                      model)
                timings[f"capture {fmt}"] = time.perf_counter() - t0
        precision = get_format(test_fmt).precision
        failed = [c for c in (captures[ref_fmt], captures[test_fmt]) if isinstance(c, str)]
        if failed:
            reports.append(PairReport(manifest.model, manifest.weights.label, ref_fmt,
                                      test_fmt, precision, inputs.description,
                                      len(index.sites), [], {}, error=failed[0]))
            continue
        t0 = time.perf_counter()
        with status(f"parity: comparing {ref_fmt} vs {test_fmt}"):
            reports.append(compare(captures[ref_fmt], captures[test_fmt], index,
                                   model=manifest.model, weights=manifest.weights.label,
                                   precision=precision, inputs=inputs.description,
                                   policy=policy))
        timings[f"compare {ref_fmt} vs {test_fmt}"] = time.perf_counter() - t0
    return reports
