"""Artifacts for the bench: reuse ``artifacts/<model>/`` or convert the model (in a worker).

Weights: ``auto`` takes ImageNet where it is available offline, else seeded
random weights; every record carries the label of what was used.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bench.latency.records import ConvertRecord, Job
from converters.formats import FORMATS, formats_of_step
from zoo.exits import raise_if_exhausted

if TYPE_CHECKING:
    from converters.manifest import Damage, Manifest

ARTIFACT_FORMATS = tuple(FORMATS)  # every registered format, in registry order
TF_FORMATS = formats_of_step("tf")  # SavedModel and TFLite: one step


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


class Existing(NamedTuple):
    spec: str
    label: str
    formats: tuple[str, ...]
    manifest: "Manifest"


def manifest_weights(folder: Path) -> Existing | None:
    """(spec, label, formats, manifest) of an existing manifest, else None; ValueError when
    ``manifest.json`` is corrupt.

    The artifacts themselves are not checked here: ``reuse_existing`` verifies the ones it
    would reuse (``verify_artifacts``) before reusing them."""
    from converters.manifest import load_manifest

    try:
        manifest = load_manifest(folder)
    except FileNotFoundError:
        return None
    spec = "imagenet" if manifest.weights.kind == "imagenet" else manifest.weights.spec
    return Existing(spec, manifest.weights.label, tuple(a.format for a in manifest.artifacts),
                    manifest)


def weights_match(requested: str, spec: str) -> bool:
    return requested == "auto" or requested == spec or spec.startswith(f"{requested}:")


def expected_gaps(model: str) -> tuple[tuple[str, ...], str]:
    """Formats the catalog says cannot be made for ``model``, and why."""
    from zoo.registry import get_entry

    entry = get_entry(model)
    return ((), "") if entry.converts_to_tf else (TF_FORMATS, entry.notes)


def reuse_existing(job: Job, folder: Path) -> ConvertRecord | None:
    """The existing artifacts, when the only formats they lack are ones that cannot be made
    and the ones the job needs match their manifest (size+mtime, else sha256; every sha256
    with ``job.verify == "full"``).

    A damaged artifact (or manifest, or files with no manifest): ``job.on_damaged ==
    "reconvert"`` prints one line per damaged file to stderr and returns None (the caller
    converts); ``"refuse"`` raises ``DamagedArtifactsError`` (exit 2, nothing measured)."""
    from converters.manifest import missing_manifest, unreadable_manifest, verify_artifacts

    if job.reconvert:
        return None
    try:
        found = manifest_weights(folder)
    except ValueError:  # manifest.json itself is corrupt
        return _damaged(job, [unreadable_manifest(folder)])
    if found is None and (gone := missing_manifest(folder)):
        return _damaged(job, [gone])
    if not found or not weights_match(job.weights, found.spec):
        return None
    missing = set(job.formats) - set(found.formats)
    gaps, why = expected_gaps(job.model)
    if not missing <= set(gaps):
        return None
    # Only what the bench will load: a damaged artifact it does not time changes no row.
    if damage := verify_artifacts(folder, found.manifest, formats=job.formats, side_files=False,
                                  full=job.verify == "full"):
        return _damaged(job, damage)
    note = f"no {'/'.join(sorted(missing))}: {why}" if missing else ""
    return ConvertRecord(job.model, weights=found.spec, weights_label=found.label,
                         folder=str(folder), formats=found.formats, note=note)


def _damaged(job: Job, damage: list["Damage"]) -> None:
    """None after saying what will be reconverted; ``DamagedArtifactsError`` when refused."""
    from converters.manifest import act_on_damage

    act_on_damage(damage, job.on_damaged, log=lambda s: print(s, file=sys.stderr),
                  remedy="rerun with --on-damaged reconvert (or --reconvert)")
    return None


def ensure_artifacts(job: Job) -> ConvertRecord:
    """Convert ``job.model`` into ``job.artifacts_root`` (the caller, ``prepare_model``, has
    already found nothing to reuse). A step that fails drops only its own formats (onnx2tf:
    SavedModel and TFLite; the builder: Keras; ONNX or TFLite int8: those), so the rest is
    benchmarked and the dropped rows carry the reason."""
    t0 = time.perf_counter()
    folder = Path(job.artifacts_root).resolve() / job.model
    record = ConvertRecord(model=job.model, folder=str(folder))
    try:
        record.weights, record.weights_label = resolve_weights(job.model, job.weights)
    except Exception as exc:  # noqa: BLE001
        raise_if_exhausted(exc, memory=False)
        record.error = f"weights: {type(exc).__name__}: {exc}"
        return record
    formats = tuple(f for f in ARTIFACT_FORMATS if f in job.formats)
    if not formats:  # only PyTorch runtimes asked for: the weights are all that is needed
        return record
    try:
        record.formats, record.note = convert_what_converts(
            job.model, record.weights, folder.parent, formats)
    except Exception as exc:  # noqa: BLE001
        raise_if_exhausted(exc, memory=False)
        record.error = f"conversion: {type(exc).__name__}: {exc}"[:500]
        return record
    record.converted = True
    record.seconds = time.perf_counter() - t0
    return record


def convert_what_converts(model: str, weights: str, root: Path, formats: tuple[str, ...]
                          ) -> tuple[tuple[str, ...], str]:
    """Convert; when a step fails, drop its formats and retry. (formats made, what was dropped
    and why). Raises when even the ONNX export fails."""
    notes: list[str] = []
    while True:
        try:
            _convert(model, weights, root, formats)
            return formats, "; ".join(notes)
        except Exception as exc:  # noqa: BLE001  any step may fail in any way
            raise_if_exhausted(exc, memory=False)
            dropped = tuple(f for f in formats if f in _formats_of_failure(exc))
            if not dropped:
                raise
            notes.append(f"no {'/'.join(dropped)}: {type(exc).__name__}: {exc}"[:400])
            formats = tuple(f for f in formats if f not in dropped)


# convert steps (``converters.pipeline`` timer names) whose failure costs only their formats
STEP_FORMATS: dict[str, tuple[str, ...]] = {
    "onnx2tf": TF_FORMATS, "keras_tf": TF_FORMATS, "keras": ("keras",),
    "onnx_int8": ("onnx_int8",), "tflite_int8": ("tflite_int8", "tflite_int8_io")}


def _formats_of_failure(exc: Exception) -> tuple[str, ...]:
    """The formats a failed convert loses: those of the step it escaped from; a
    ``ConversionError`` is the TF step's; one from outside every step is taken for the Keras
    builder's. Empty (nothing to drop: the model is lost) for the ONNX export or loading."""
    from converters.pipeline import failed_step
    from converters.tf_export import ConversionError

    if isinstance(exc, ConversionError):
        return TF_FORMATS
    step = failed_step(exc)
    return ("keras",) if step is None else STEP_FORMATS.get(step, ())


def _convert(model: str, weights: str, root: Path, formats: tuple[str, ...]) -> None:
    from converters.pipeline import ConvertOptions, convert_model

    # An absolute root: onnx2tf runs in another working directory.
    opts = ConvertOptions(weights=weights, out_root=root.resolve(), formats=formats)
    convert_model(model, opts, log=lambda s: print(s, file=sys.stderr))
