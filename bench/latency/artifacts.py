"""Artifacts for the bench: reuse ``artifacts/<model>/`` or convert the model (in a worker).

Weights: ``auto`` takes ImageNet where it is available offline, else seeded
random weights; every record carries the label of what was used.
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from bench.latency.records import ConvertRecord, Job

ARTIFACT_FORMATS = ("onnx", "tf_savedmodel", "tflite_fp32", "tflite_fp16", "keras")


def keras_unavailable() -> str:
    """Why the Keras converter cannot run here, or "" when it can."""
    try:
        module = importlib.import_module("converters.keras")
    except Exception as exc:  # noqa: BLE001  a half-written converter may fail in any way
        return f"converters.keras does not import ({type(exc).__name__}: {exc})"
    if not hasattr(module, "onnx_to_keras"):
        return "the Keras converter (converters.keras.onnx_to_keras) is not available yet"
    return ""


def resolve_weights(model: str, requested: str) -> tuple[str, str]:
    """(spec, label) of the weights to use; ``auto`` falls back to random offline."""
    from zoo.build import build_model
    from zoo.weights import WeightsUnavailableError

    try:
        _, source = build_model(model, weights="imagenet" if requested == "auto" else requested)
    except WeightsUnavailableError:
        if requested != "auto":
            raise
        _, source = build_model(model, weights="random")
    spec = "imagenet" if source.kind == "imagenet" else source.spec
    return spec, source.label


def manifest_weights(folder: Path) -> tuple[str, str, tuple[str, ...]] | None:
    """(spec, label, formats) of an existing, readable manifest, else None."""
    from converters.manifest import load_manifest

    try:
        manifest = load_manifest(folder)
    except (FileNotFoundError, ValueError):
        return None
    spec = "imagenet" if manifest.weights["kind"] == "imagenet" else manifest.weights["spec"]
    return spec, manifest.weights["label"], tuple(a.format for a in manifest.artifacts)


def weights_match(requested: str, spec: str) -> bool:
    return requested == "auto" or requested == spec or spec.startswith(f"{requested}:")


def reuse_existing(job: Job, folder: Path) -> ConvertRecord | None:
    """The existing artifacts, when the only format they lack is one that cannot be made."""
    found = manifest_weights(folder)
    if job.reconvert or not found or not weights_match(job.weights, found[0]):
        return None
    missing = set(job.formats) - set(found[2])
    reason = keras_unavailable() if missing == {"keras"} else ""
    if missing and not reason:
        return None
    return ConvertRecord(job.model, weights=found[0], weights_label=found[1], folder=str(folder),
                         formats=found[2], note=reason)


def ensure_artifacts(job: Job) -> ConvertRecord:
    """Convert ``job.model`` into ``job.artifacts_root``; Keras is dropped (with a note) if
    its converter is missing or fails, so the other formats are still benchmarked."""
    t0 = time.perf_counter()
    folder = Path(job.artifacts_root).resolve() / job.model
    if existing := reuse_existing(job, folder):
        return existing
    record = ConvertRecord(model=job.model, folder=str(folder))
    try:
        record.weights, record.weights_label = resolve_weights(job.model, job.weights)
    except Exception as exc:  # noqa: BLE001
        record.error = f"weights: {type(exc).__name__}: {exc}"
        return record
    formats = tuple(f for f in ARTIFACT_FORMATS if f in job.formats)
    if not formats:  # only PyTorch runtimes asked for: the weights are all that is needed
        return record
    if "keras" in formats and (reason := keras_unavailable()):
        formats, record.note = tuple(f for f in formats if f != "keras"), reason
    try:
        _convert(job.model, record.weights, folder.parent, formats)
    except Exception as exc:  # noqa: BLE001
        if "keras" not in formats:
            record.error = f"conversion: {type(exc).__name__}: {exc}"[:500]
            return record
        record.note = f"Keras conversion failed ({type(exc).__name__}: {exc})"[:500]
        formats = tuple(f for f in formats if f != "keras")
        try:
            _convert(job.model, record.weights, folder.parent, formats)
        except Exception as exc2:  # noqa: BLE001
            record.error = f"conversion: {type(exc2).__name__}: {exc2}"[:500]
            return record
    record.formats, record.converted = formats, True
    record.seconds = time.perf_counter() - t0
    return record


def _convert(model: str, weights: str, root: Path, formats: tuple[str, ...]) -> None:
    from converters.pipeline import ConvertOptions, convert_model

    # An absolute root: onnx2tf runs in another working directory.
    opts = ConvertOptions(weights=weights, out_root=root.resolve(), formats=formats)
    convert_model(model, opts, log=lambda s: print(s, file=sys.stderr))
