"""Automatic mixed precision for int8 artifacts: keep in float the layers int8 hurts most,
a few at a time, until top-1 agreement with fp32 reaches a target. One loop for every int8
format: ONNX Runtime QDQ (``converters.quantize``, ONNX node names) and TFLite
(``converters.tflite_int8``, output tensor names), each a ``Requantizable``.

Agreement is measured on *tuning photos*: every 10th imagenet-sample photo from the 6th
(indices 5, 15, ..., 995), disjoint from the default calibration set (0, 10, ...) and, by
content digest, from any ``--calib`` folder. They are among the accuracy bench's
evaluation photos (docs/int8.md says so); the fp32 reference is the model quantization
starts from (ONNX: BatchNormalization folded; TFLite: the calibrated float model).

Each step ranks the quantized model's layers by the error they add themselves (ONNX: SNR
drop, ``converters.parity.int8``; TFLite: the QuantizationDebugger's per-layer SNR) on a
few tuning photos and puts the ``float_step`` worst back in float with the layers that
read their output: a layer's error includes the rounding of its output for its consumers,
which only leaving those consumers in float removes (a layer whose group would pass the
budget is skipped). It then re-quantizes with the same calibration ranges and measures
agreement and one-thread latency again. It stops at the target or when ``float_budget``
layers are float; every step is recorded (``FallbackStep``) in the manifest, and the best
step (highest agreement, then fewest float layers) is the artifact.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from converters.calibration import (DEFAULT_STRIDE, CalibrationDataError, CalibrationSet,
                                    FallbackStep, image_files, imagenet_sample_dir,
                                    photo_digest)
from converters.runners.base import RunnerSpec
from zoo.entry import Preprocessing


class Requantizable(Protocol):
    """A model calibrated once that quantizes again, cheaply, with chosen layers in float."""

    @property
    def fp32(self) -> RunnerSpec: ...  # the float model quantization starts from

    @property
    def int8_format(self) -> str: ...  # the artifact's format (same layout as ``fp32``)

    def quantize(self, out_path: Path, keep_float: Iterable[str] = ()) -> Path: ...

    def worst_layers(self, int8_path: Path, x: np.ndarray) -> list[str]:
        """The layers of ``int8_path`` that add error, worst first, on photos ``x`` (NCHW)."""
        ...

    def readers(self, int8_path: Path) -> dict[str, list[str]]:
        """Layer -> the layers that read its output."""
        ...


TUNING_OFFSET = 5
PARITY_PHOTOS = 8  # photos layers are ranked on (of the tuning photos)
LATENCY_RUNS = 15


def tuning_photos(cal: CalibrationSet) -> list[Path]:
    """Every 10th imagenet-sample photo from index 5, without any calibration photo."""
    folder = imagenet_sample_dir()
    files = image_files(folder)[TUNING_OFFSET::DEFAULT_STRIDE] if folder.is_dir() else []
    used = set(cal.digests)
    files = [p for p in files if photo_digest(p) not in used]
    if not files:
        raise CalibrationDataError(f"--int8-target needs tuning photos disjoint "
                                   f"from calibration: none in {folder}")
    return files


def _top1(spec: RunnerSpec, x: np.ndarray) -> np.ndarray:
    from converters.runners import make_runner

    with make_runner(spec) as runner:
        return runner.infer({spec.input_names[0]: x})[spec.output_names[0]].argmax(1)


def latency_ms(spec: RunnerSpec, x1: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """Median batch-1 latency at one thread (a step's cost; the latency bench is the
    reference measurement)."""
    from converters.runners import make_runner

    with make_runner(dataclasses.replace(spec, threads=1)) as runner:
        feed = runner.prepare({spec.input_names[0]: x1})
        for _ in range(3):
            runner.run_prepared(feed)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            runner.run_prepared(feed)
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _step(c: Requantizable, out: Path, x: np.ndarray, ref: np.ndarray, keep: list[str],
          added: list[str]) -> FallbackStep:
    spec = dataclasses.replace(c.fp32, format=c.int8_format, path=str(out))
    agreement = float((_top1(spec, x) == ref).mean())
    return FallbackStep(tuple(keep), tuple(added), agreement, len(x), latency_ms(spec, x[:1]))


def _next_group(c: Requantizable, out: Path, x: np.ndarray, keep: list[str], *,
                float_budget: int, float_step: int) -> list[str]:
    """The ``float_step`` worst layers not yet float, each with its readers, within budget."""
    ranked = [n for n in c.worst_layers(out, x[:PARITY_PHOTOS]) if n not in keep]
    readers = c.readers(out)
    added: list[str] = []
    chosen = 0
    for node in ranked:
        if chosen >= float_step:
            break
        group = [n for n in (node, *readers.get(node, ())) if n not in keep + added]
        if len(keep) + len(added) + len(group) <= float_budget:  # never past the budget
            added += group
            chosen += 1
    return added


def fall_back_to_target(c: Requantizable, out: Path, prep: Preprocessing, cal: CalibrationSet,
                        *, target: float, keep_float: Iterable[str] = (),
                        float_budget: int = 12, float_step: int = 3, log=lambda s: None
                        ) -> tuple[tuple[str, ...], tuple[FallbackStep, ...]]:
    """(layers kept in float, the steps) after re-quantizing ``out`` until it agrees with
    fp32 on ``target`` of the tuning photos or ``float_budget`` layers are float."""
    from zoo.preprocess import load_batch

    x = load_batch(tuning_photos(cal), prep)
    ref = _top1(c.fp32, x)
    keep = list(keep_float)
    steps = [_step(c, out, x, ref, keep, [])]
    log(f"    int8 agreement {steps[-1].agreement:.1%} with {len(keep)} layers float")
    while steps[-1].agreement < target and len(keep) < float_budget:
        added = _next_group(c, out, x, keep, float_budget=float_budget, float_step=float_step)
        if not added:
            break
        keep += added
        c.quantize(out, keep)
        steps.append(_step(c, out, x, ref, keep, added))
        log(f"    int8 agreement {steps[-1].agreement:.1%} with {len(keep)} layers float")
    # the best step ships (highest agreement, then fewest float layers), not merely the last
    best = max(steps, key=lambda st: (st.agreement, -len(st.float_layers)))
    if best is not steps[-1]:
        c.quantize(out, best.float_layers)
    return best.float_layers, tuple(steps)
