"""Run PyTorch fp32 and every artifact of a converted model over labelled photos, batch by
batch (each batch is read and preprocessed once, then fed to every runner), and score each
against the labels and against PyTorch."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from bench.accuracy.metrics import score
from bench.accuracy.photos import LabelledPhotos
from bench.accuracy.records import REFERENCE, AccuracyRecord, from_scores
from zoo.exits import raise_if_exhausted

if TYPE_CHECKING:
    from converters.manifest import Manifest
    from converters.runners import BaseRunner


@dataclass
class _Lane:
    """One artifact's runner and what it has produced so far."""

    base: AccuracyRecord
    runner: "BaseRunner | None"
    logits: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


def calibration_digests(manifests: Iterable["Manifest"], *, default_set: bool = True
                        ) -> frozenset[str]:
    """Content digests of every photo that calibrated an artifact of ``manifests``, and of the
    default calibration set (so fp32 and int8 rows are scored on the same photos)."""
    from converters.calibration import CalibrationDataError, calibration_set, choose_calibration

    digests: set[str] = set()
    for manifest in manifests:
        for a in manifest.artifacts:
            if getattr(a, "quantization", None) is not None:
                digests.update(a.quantization.calibration.digests)
    if default_set:
        try:
            digests.update(calibration_set(*choose_calibration(None)).digests)
        except CalibrationDataError:  # no sample folder here: nothing to leave out
            pass
    return frozenset(digests)


def _lanes(folder: Path, manifest: "Manifest", formats: tuple[str, ...] | None,
           base: AccuracyRecord, threads: int | None) -> list[_Lane]:
    from converters.errors import error_line
    from converters.pipeline import runner_spec
    from converters.runners import make_runner

    lanes = []
    for record in manifest.artifacts:
        if formats is not None and record.format not in formats:
            continue
        quant = getattr(record, "quantization", None)
        lane = _Lane(AccuracyRecord(**{**base.__dict__, "format": record.format,
                                       "precision": record.precision,
                                       "quantization": quant.label if quant else ""}), None)
        try:
            lane.runner = make_runner(runner_spec(folder, record, threads))
            lane.runner.activate()
        except Exception as exc:  # noqa: BLE001  an artifact that cannot load is a row error
            raise_if_exhausted(exc, memory=False)
            lane.error, lane.runner = error_line(exc), None
        lanes.append(lane)
    return lanes


def _not_converted(manifest: "Manifest", formats: tuple[str, ...] | None,
                   base: AccuracyRecord, why: str) -> list[_Lane]:
    from converters.formats import get_format

    made = {a.format for a in manifest.artifacts}
    lanes = []
    for fmt in (f for f in formats or () if f not in made):
        lane = _Lane(AccuracyRecord(**{**base.__dict__, "format": fmt,
                                       "precision": get_format(fmt).precision}), None)
        lane.error = f"not converted: {why or 'the convert made no such artifact'}"[:500]
        lanes.append(lane)
    return lanes


def _feed(lane: _Lane, x: np.ndarray) -> None:
    from converters.errors import error_line
    from converters.onnx_export import INPUT_NAME, OUTPUT_NAME

    if lane.runner is None:
        return
    t0 = time.perf_counter()
    try:
        lane.logits.append(np.asarray(lane.runner.infer({INPUT_NAME: x})[OUTPUT_NAME],
                                      dtype=np.float32))
    except Exception as exc:  # noqa: BLE001
        raise_if_exhausted(exc, memory=False)
        lane.error = error_line(exc)
        lane.runner.deactivate()
        lane.runner = None
    lane.seconds += time.perf_counter() - t0


def evaluate_model(folder: Path, manifest: "Manifest", photos: LabelledPhotos, *,
                   formats: tuple[str, ...] | None = None, batch_size: int = 50,
                   threads: int | None = None, log: Callable[[str], None] = lambda s: None,
                   not_converted: str = "") -> list[AccuracyRecord]:
    """PyTorch fp32 (built with the manifest's weights) and each artifact of ``manifest``
    (of ``formats``, default all) over ``photos``: one record each, PyTorch first. A
    requested format the manifest lacks is an error row (``not_converted``: why, from the
    convert), never a row left out."""
    import torch

    from converters.runners.torch_runner import TorchRunner
    from converters.runners import RunnerSpec
    from zoo.build import build_model
    from zoo.meta import published_meta
    from zoo.preprocess import load_batch
    from zoo.registry import get_entry

    entry = get_entry(manifest.model)
    prep = published_meta(entry).preprocessing
    model, _ = build_model(entry, weights=manifest.weights.spec)
    labelled = manifest.weights.kind != "random"
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    base = AccuracyRecord(manifest.model, manifest.weights.label, labelled, REFERENCE, "fp32",
                          photos.name, date=date)
    if threads:
        torch.set_num_threads(threads)
    ref = _Lane(base, TorchRunner(RunnerSpec("pytorch", "in-memory"), model=model))
    ref.runner.activate()
    lanes = [ref, *_lanes(folder, manifest, formats, base, threads),
             *_not_converted(manifest, formats, base, not_converted)]
    for start in range(0, len(photos), batch_size):
        x = load_batch(photos.files[start:start + batch_size], prep)
        for lane in lanes:
            _feed(lane, x)
        log(f"  {manifest.model}: {min(start + batch_size, len(photos))}/{len(photos)} photos")
    for lane in lanes:
        if lane.runner is not None:
            lane.runner.deactivate()
    if ref.error:
        raise RuntimeError(f"{manifest.model}: PyTorch failed on the photos: {ref.error}")
    return _records(lanes, np.concatenate(ref.logits), np.asarray(photos.labels))


def _records(lanes: list[_Lane], ref: np.ndarray, labels: np.ndarray) -> list[AccuracyRecord]:
    ref_scores = score(ref, ref, labels)
    ref_top1 = ref_scores.top1.value if ref_scores.top1 else None
    out = []
    for lane in lanes:
        if lane.error:
            out.append(AccuracyRecord(**{**lane.base.__dict__, "error": lane.error}))
            continue
        logits = np.concatenate(lane.logits)
        if not np.isfinite(logits).all():
            out.append(AccuracyRecord(**{**lane.base.__dict__, "n": len(logits),
                                         "error": f"non-finite logits "
                                                  f"({int((~np.isfinite(logits)).sum())})"}))
            continue
        rec = from_scores(lane.base, score(logits, ref, labels), ref_top1)
        out.append(AccuracyRecord(**{**rec.__dict__, "seconds": round(lane.seconds, 2)}))
    return out
