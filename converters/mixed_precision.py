"""Automatic mixed precision for int8 artifacts: keep in float the layers that per-layer
parity ranks worst, a few at a time, until top-1 agreement with fp32 reaches a target.

Agreement is measured on *tuning photos*: every 10th imagenet-sample photo from the 6th
(indices 5, 15, ..., 995), disjoint from the default calibration set (0, 10, ...) and, by
content digest, from any ``--calib`` folder. They are among the accuracy bench's
evaluation photos (the README says so); the fp32 reference is the graph quantization starts from
(BatchNormalization folded), run by ONNX Runtime.

Each step ranks the quantized graph's layers by their SNR drop (``converters.parity.int8``)
on a few tuning photos and puts the ``float_step`` worst back in float (``nodes_to_exclude``)
with the nodes that read their output: a layer's drop includes the rounding of its output
for its consumers, which only leaving those consumers in float removes (a layer whose
group would pass the budget is skipped). It then re-quantizes with the same calibration
ranges and measures agreement and one-thread latency again. It stops at the target or
when ``float_budget`` layers are float; every step is recorded (``FallbackStep``) in the
manifest, and the best step (highest agreement, then fewest float layers) is the artifact.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from converters.calibration import (DEFAULT_STRIDE, CalibrationDataError, CalibrationSet,
                                    FallbackStep, image_files, imagenet_sample_dir,
                                    photo_digest)
from zoo.entry import Preprocessing



class Requantizable(Protocol):
    """``converters.quantize.Calibrated``: the prepared fp32 graph and its ranges."""

    prepared: Path

    def quantize(self, out_path: Path, keep_float: Iterable[str] = ()) -> Path: ...

TUNING_OFFSET = 5
PARITY_PHOTOS = 8  # photos parity ranks layers on (of the tuning photos)
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


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _top1(path: Path, x: np.ndarray) -> np.ndarray:
    return _session(path, 0).run(None, {"input": x})[0].argmax(1)


def latency_ms(path: Path, x1: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """Median batch-1 latency at one thread (a step's cost; the latency bench is the
    reference measurement)."""
    s = _session(path, 1)
    for _ in range(3):
        s.run(None, {"input": x1})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, {"input": x1})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _step(out: Path, x: np.ndarray, ref: np.ndarray, keep: list[str], added: list[str]
          ) -> FallbackStep:
    agreement = float((_top1(out, x) == ref).mean())
    return FallbackStep(tuple(keep), tuple(added), agreement, len(x), latency_ms(out, x[:1]))


def _readers(int8_onnx: Path) -> dict[str, list[str]]:
    """Node name -> the (non-Q/DQ) nodes that read its output, through Q/DQ pairs."""
    import onnx

    from converters.qdq import DQ_SUFFIX

    graph = onnx.load(str(int8_onnx)).graph
    nodes = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    producer = {o: n.name for n in nodes for o in n.output}
    out: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.input:
            src = producer.get(i[:-len(DQ_SUFFIX)] if i.endswith(DQ_SUFFIX) else i)
            if src and n.name not in out.setdefault(src, []):
                out[src].append(n.name)
    return out


def fall_back_to_target(c: Requantizable, out: Path, prep: Preprocessing, cal: CalibrationSet,
                        *, target: float, keep_float: Iterable[str] = (),
                        float_budget: int = 12, float_step: int = 3, log=lambda s: None
                        ) -> tuple[tuple[str, ...], tuple[FallbackStep, ...]]:
    """(layers kept in float, the steps) after re-quantizing ``out`` until it agrees with
    fp32 on ``target`` of the tuning photos or ``float_budget`` layers are float."""
    from converters.parity.int8 import int8_parity
    from zoo.preprocess import load_batch

    x = load_batch(tuning_photos(cal), prep)
    ref = _top1(c.prepared, x)
    keep = list(keep_float)
    steps = [_step(out, x, ref, keep, [])]
    log(f"    int8 agreement {steps[-1].agreement:.1%} with {len(keep)} layers float")
    while steps[-1].agreement < target and len(keep) < float_budget:
        report = int8_parity(c.prepared, out, x[:PARITY_PHOTOS], prepared=c.prepared)
        ranked = [lay.node for lay in report.ranked() if lay.node not in keep
                  and lay.drop_db > 0]
        readers = _readers(out)
        added: list[str] = []
        chosen = 0
        for node in ranked:
            if chosen >= float_step:
                break
            group = [n for n in (node, *readers.get(node, ())) if n not in keep + added]
            if len(keep) + len(added) + len(group) <= float_budget:  # never past the budget
                added += group
                chosen += 1
        if not added:
            break
        keep += added
        c.quantize(out, keep)
        steps.append(_step(out, x, ref, keep, added))
        log(f"    int8 agreement {steps[-1].agreement:.1%} with {len(keep)} layers float")
    # the best step ships (highest agreement, then fewest float layers), not merely the last
    best = max(steps, key=lambda st: (st.agreement, -len(st.float_layers)))
    if best is not steps[-1]:
        c.quantize(out, best.float_layers)
    return best.float_layers, tuple(steps)
