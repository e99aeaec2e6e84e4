"""int8 artifacts: ONNX Runtime static quantization (QDQ), calibrated on real photos.

The scheme is U8S8: activations uint8 (asymmetric, per tensor), weights int8 (symmetric,
per output channel), in the QDQ format, which ONNX Runtime's CPU provider fuses into
integer kernels (QLinearConv, QGemm). Why U8S8 on x86: the integer dot products (AVX2's
VPMADDUBSW, AVX-512 VNNI's VPDPBUSD) multiply an unsigned by a signed byte, which is exactly
U8S8; with int8 activations (S8S8) ORT has to shift them to uint8 first. Measured on this
project's AMD EPYC (AVX2, no VNNI), mobilenet_v2, one thread: U8S8 9.2 ms, S8S8 19.6 ms,
fp32 13.8 ms. ``activations="int8"`` stays available for targets where S8S8 is the fast
path (ARM64 with SDOT).

Weight bits (``reduce_range``; ``--int8-weight-bits``, default ``auto``): on x86 without
VNNI, VPMADDUBSW adds pairs of u8*s8 products into int16, which saturates with full-range
int8 weights, so there weights use 7 bits. Measured on mobilenet_v2 on an AVX2 VM (minmax,
150 calibration-disjoint photos): top-1 agreement with fp32 78.7% with 8-bit weights,
90.0% with 7-bit, at the same speed. With VNNI (VPDPBUSD sums into int32) or off x86, 8-bit
weights are safe and better: on an AVX-512 VNNI VM (percentile, no layer float, 100 tuning
photos) 96% agreement with 8 bits against 91% with 7. ``auto`` picks by the converting
machine's CPU (``full_range_safe``) and the manifest records the choice (``weights``:
int8 or int7); convert with ``--int8-weight-bits 7`` for a fleet that includes CPUs
without VNNI.

Calibration methods (``--calib-method``): ``minmax`` (the observed range), ``percentile``
(99.999th percentile of a 2048-bin histogram, clipping rare outliers) and ``entropy``
(TensorRT's KL-divergence threshold). ``quantize_static`` itself cannot pass histogram
sizes to the entropy calibrator, whose default of 128 bins for 128 quantized bins leaves it
a single candidate threshold, the observed range: entropy would silently be minmax. So
calibration runs here, with 2048 bins, and its ranges reach ``quantize_static`` through
its calibration cache.
"""
from __future__ import annotations

import contextlib
import io
import logging
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from converters.calibration import (CalibrationSet, Quantization, calibration_set,
                                    choose_calibration)
from converters.qdq import prepare_for_quantization, readers
from converters.runners.base import RunnerSpec
from zoo.entry import Preprocessing

INT8_FORMAT = "onnx_int8"
METHODS = ("minmax", "percentile", "entropy")
ACTIVATIONS = ("uint8", "int8")
DEFAULT_METHOD = "percentile"  # mobilenet_v2, 7-bit weights: 90.7% agreement, minmax 90.0%
TOOL = "onnxruntime.quantization.quantize_static"
# The calibrators' settings, recorded in the manifest with each artifact.
CALIBRATOR_OPTIONS: dict[str, dict[str, Any]] = {
    "minmax": {},
    "percentile": {"num_bins": 2048, "percentile": 99.999},
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
}


@dataclass(frozen=True)
class QuantizeOptions:
    method: str = DEFAULT_METHOD
    per_channel: bool = True
    activations: str = "uint8"
    calib: Path | None = None  # a folder of photos; None: every 10th imagenet-sample photo
    batch_size: int = 8  # calibration batch: bounds the histogram calibrators' memory
    # 7-bit weights (no int16 saturation on x86 without VNNI); None: by this machine's CPU
    reduce_range: bool | None = None
    # ONNX node names left in float (mixed precision: the layers int8 hurts most)
    keep_float: tuple[str, ...] = ()
    # automatic mixed precision (``converters.mixed_precision``): keep the layers parity
    # ranks worst in float, ``float_step`` at a time, until top-1 agreement with fp32 on
    # calibration-disjoint photos reaches ``target`` or ``float_budget`` layers are float
    target: float | None = None
    float_budget: int = 12
    float_step: int = 3

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method {self.method!r}: choose one of "
                             f"{', '.join(METHODS)}")
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"int8 activations {self.activations!r}: choose one of "
                             f"{', '.join(ACTIVATIONS)}")
        if self.target is not None and not 0 < self.target <= 1:
            raise ValueError(f"--int8-target {self.target:g}: a top-1 agreement in (0, 1], "
                             "e.g. 0.99")
        if self.float_budget < 0 or self.float_step < 1:
            raise ValueError("--int8-float-budget must be 0 or more (and the step positive)")


    @property
    def weights_7bit(self) -> bool:
        if self.reduce_range is not None:
            return self.reduce_range
        from zoo.env import cpu_features

        return not full_range_safe(cpu_features(), platform.machine())


def full_range_safe(features: Iterable[str], machine: str) -> bool:
    """Whether ONNX Runtime's int8 kernels on this CPU take 8-bit weights without int16
    saturation: x86 with VNNI (AVX-512 VNNI, AVX-VNNI; AMX too), or any other architecture
    (ARM's kernels widen products to 32 bits). ``features``: ``zoo.env.cpu_features``."""
    x86 = machine.lower() in ("x86_64", "amd64", "i386", "i686")
    return not x86 or bool({"vnni", "avx-vnni", "amx"} & set(features))


def int8_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(f"{onnx_path.stem}_int8.onnx")


def make_int8(onnx_path: Path, prep: Preprocessing, opts: QuantizeOptions = QuantizeOptions(),
              *, log: Callable[[str], None] = lambda s: None) -> tuple[Path, Quantization]:
    """Quantize ``onnx_path`` into ``<stem>_int8.onnx`` beside it, calibrated on photos
    preprocessed as the catalog says; returns the file and the record of how."""
    folder, files, rule = choose_calibration(opts.calib)
    cal = calibration_set(folder, files, rule)
    out = int8_path(onnx_path)
    steps: tuple = ()
    keep = tuple(opts.keep_float)
    with Calibrated.of(onnx_path, _photo_batches(files, prep, opts.batch_size), opts) as c:
        c.quantize(out, keep)
        if opts.target is not None:
            from converters.mixed_precision import fall_back_to_target

            keep, steps = fall_back_to_target(
                c, out, prep, cal, target=opts.target, keep_float=keep,
                float_budget=opts.float_budget, float_step=opts.float_step, log=log)
    return out, Quantization(TOOL, "QDQ", opts.method, opts.per_channel, opts.activations,
                             "int7" if opts.weights_7bit else "int8", cal,
                             dict(CALIBRATOR_OPTIONS[opts.method]), keep_float=keep,
                             target=opts.target, fallback=steps)


def _photo_batches(files: list[Path], prep: Preprocessing, batch_size: int
                   ) -> Iterator[np.ndarray]:
    from zoo.preprocess import load_batch

    for i in range(0, len(files), batch_size):
        yield load_batch(files[i:i + batch_size], prep)


@dataclass(frozen=True)
class Calibrated:
    """An fp32 graph prepared for quantization and its activation ranges (ORT's calibration
    cache), in a temporary folder: quantized again cheaply with other layers left in float
    (``converters.mixed_precision.Requantizable``)."""

    prepared: Path  # the fp32 graph after ``prepare_for_quantization``
    cache: Path
    opts: QuantizeOptions

    @classmethod
    @contextlib.contextmanager
    def of(cls, onnx_path: Path, batches: Iterable[np.ndarray], opts: QuantizeOptions, *,
           input_name: str = "input") -> Iterator["Calibrated"]:
        with tempfile.TemporaryDirectory(prefix="modelzoo-int8-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            with _quiet():
                prepare_for_quantization(onnx_path, pre)
                cache = calibrate(pre, batches, opts.method, Path(tmp), input_name=input_name)
            yield cls(pre, cache, opts)

    @property
    def fp32(self) -> RunnerSpec:
        return RunnerSpec("onnx", str(self.prepared))

    @property
    def int8_format(self) -> str:
        return INT8_FORMAT

    def worst_layers(self, int8_path: Path, x: np.ndarray) -> list[str]:
        """ONNX nodes by SNR drop (``converters.parity.int8``), largest first."""
        from converters.parity.int8 import int8_parity

        report = int8_parity(self.prepared, int8_path, x, prepared=self.prepared)
        return [lay.node for lay in report.ranked() if lay.drop_db > 0]

    def readers(self, int8_path: Path) -> dict[str, list[str]]:
        return readers(int8_path)

    def quantize(self, out_path: Path, keep_float: Iterable[str] = ()) -> Path:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        opts = self.opts
        act = QuantType.QUInt8 if opts.activations == "uint8" else QuantType.QInt8
        with _quiet():
            quantize_static(str(self.prepared), str(out_path), None,
                            quant_format=QuantFormat.QDQ, per_channel=opts.per_channel,
                            activation_type=act, weight_type=QuantType.QInt8,
                            calibrate_method=_ort_method(opts.method),
                            calibration_cache_path=str(self.cache),
                            reduce_range=opts.weights_7bit, nodes_to_exclude=list(keep_float))
        return out_path


def quantize_onnx(onnx_path: Path, out_path: Path, batches: Iterable[np.ndarray],
                  opts: QuantizeOptions, *, input_name: str = "input") -> Path:
    """Static QDQ quantization of ``onnx_path`` calibrated on ``batches`` (NCHW float32)."""
    with Calibrated.of(onnx_path, batches, opts, input_name=input_name) as c:
        return c.quantize(out_path, opts.keep_float)


def calibrate(model: Path, batches: Iterable[np.ndarray], method: str, work: Path, *,
              input_name: str = "input") -> Path:
    """Activation ranges of ``model`` over ``batches``, saved as ORT's calibration cache.

    One ``collect_data`` call per batch: the histogram calibrators keep every intermediate
    tensor of a call in memory, so a call per batch bounds that to one batch."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(str(model), augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=_ort_method(method),
                                   extra_options=CALIBRATOR_OPTIONS[method])
    seen = 0
    for batch in batches:
        calibrator.collect_data(_OneBatch({input_name: batch}))
        seen += len(batch)
    if not seen:
        raise ValueError("no calibration photos were given")
    cache = work / "calibration.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


class _OneBatch:
    """An ONNX Runtime ``CalibrationDataReader`` over one feed."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self._feeds = iter([feed])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[method]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The calibrators print progress to stdout and the quantizer logs advice; a convert's
    output is its own step lines and tables."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


__all__ = ["INT8_FORMAT", "METHODS", "QuantizeOptions", "CalibrationSet", "make_int8",
           "quantize_onnx", "calibrate"]
