"""How close a converted artifact must stay to its reference: one policy, per precision,
with per-model overrides, read by agreement (logits vs PyTorch) and parity (every tensor).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class LogitTolerance:
    """Agreement passes when an artifact's max |logit error| is within a bound and top-1
    agreement with PyTorch is at least ``min_top1``.

    Conversion measures the error from PyTorch's exact (fp64) logits of the same model and
    input, and ``exact_bound`` is ``max(atol + rtol * max |ref|, floor_margin * floor)``,
    where ``floor`` is how far PyTorch itself lands from those exact logits at the
    artifact's precision (``converters.agreement.exact_reference``): fp32, the largest of
    its CPU fp32 paths (oneDNN on and off) and of its means summed in order
    (``converters.agreement.sequential_sums``); fp16, the model with every parameter and
    buffer rounded to fp16 (run in fp32, as fp16-stored artifacts run on CPUs). The floor
    scales with the logits and with the depth that amplifies round-off: random-weight
    efficientnet_b0 (logits up to 350) lands 0.27 from the exact logits in PyTorch fp32,
    regnet_y_400mf (193) 0.034, where ``atol + rtol * max |ref|`` (4e-3, 2e-3) asks what no
    fp32 runtime gives; random efficientnet_b7 (logits within 0.95) 1.1e-5 by PyTorch's own
    paths but 3.1e-3 with its squeeze-excitation means summed in order, as its ONNX
    Runtime and TFLite files land (its SavedModel 1.9e-4).

    ``floor_margin``: the runtimes' own kernels sum and approximate differently (ONNX
    Runtime's NCHWc convolutions with fused SiLU, TensorFlow's, XNNPACK's). Measured on the
    16 agreement photos, random weights, every artifact of efficientnet_b0, regnet_y_400mf,
    squeezenet1_1 and resnet18: fp32 ones land 0.15-4.2x PyTorch's floor from the exact
    logits (efficientnet_b0's ONNX file worst: 1.15 of 0.27, 0.34 with ONNX Runtime's
    layout optimisations off), fp16 ones 1.0-1.5x the fp16 floor: margins 8 and 3 leave
    about 2x. A conversion bug does not scale with round-off: scaling one mid-network conv
    of efficientnet_b0's ONNX file by 1.005 moves its logits 42 from the exact ones, 19x
    the fp32 bound of 2.2 (squeezenet1_1's by 1.01: 0.012, 107x its bound). ``min_top1``
    applies, with an fp64 run, to the images whose exact top-1 leads by more than twice
    ``floor_margin * floor``: a closer race is rounding's to decide (random regnet_y_3_2gf:
    logits within 0.78, its TFLite fp16 file 0.012 from them, PyTorch's fp16 rounding 0.015,
    4 of 16 top-1s flipped, every one such a race; ``converters.agreement``).

    ``bound`` is the rule where no fp64 run is made (``bench.gpu``): the error from
    PyTorch's fp32 logits within ``max(atol + rtol * max |ref|, 2 * torch_gap)``, twice
    PyTorch's own fp32 rounding (its gap to an fp64 run).
    """

    atol: float
    rtol: float
    min_top1: float
    floor_margin: float = 0.0  # 0: no rounding floor (int8's bars are loose by design)

    def bound(self, ref_max_abs: float, torch_gap: float = 0.0) -> float:
        """The largest max |err| from PyTorch fp32 that passes, for logits whose largest
        magnitude is given."""
        return max(self.atol + self.rtol * ref_max_abs, 2 * torch_gap)

    def exact_bound(self, ref_max_abs: float, floor: float) -> float:
        """The largest max |err| from PyTorch's exact (fp64) logits that passes, where
        PyTorch at this precision lands ``floor`` from them."""
        return max(self.atol + self.rtol * ref_max_abs, self.floor_margin * floor)


@dataclass(frozen=True)
class TensorTolerance:
    """A tensor passes parity when its SNR and cosine similarity clear these bars.

    SNR = 10 log10(sum ref^2 / sum err^2): 80 dB is a relative L2 error of
    1e-4, comfortably above fp32 round-off (~120 dB) and far below any real
    bug; fp16 storage/arithmetic sits near 60-70 dB on early layers and
    degrades with depth, so its bar is 30 dB (relative error ~3%).

    ``floor_margin_db``: the bars at a tensor drop to the precision's rounding floor there
    (``converters.parity.run``), less this margin, where those are lower. fp16's floor is
    the ONNX graph's own, its weights rounded to fp16 and run in fp32: a deep random-weight
    network amplifies fp16 rounding layer by layer (regnet_x_400mf's last stage: 18.6 dB in
    TFLite fp16, 17.8 dB with the weights merely rounded, from 74 dB at the stem). fp32's is
    PyTorch's fp32 run against its fp64 one: where a tensor is a small difference of large
    values, fp32 itself keeps few digits (random regnet_y_1_6gf's block4-1 BN output: ONNX
    Runtime 81.0 dB from PyTorch, TensorFlow 79.8 dB from ONNX Runtime). Both are the drift
    the logits' floor already allows for, and the margin is the logits' (fp16 3x the
    floor's error, 9.5 dB; fp32 8x, 18 dB; cosine's 1 - c, which grows as the error
    squared, 9x and 64x); a conversion bug does not scale with round-off and stays beyond
    it.
    """

    min_snr_db: float
    min_cosine: float
    floor_margin_db: float = 0.0  # 0: the bars hold everywhere, whatever the rounding floor

    def under_floor(self, floor_snr_db: float, floor_cosine: float) -> "TensorTolerance":
        """The bars at a tensor where the graph, its weights rounded, reaches
        ``floor_snr_db`` and ``floor_cosine``: the lower of these bars and the floor's less
        the margin (unchanged without a margin, or where the floor is not finite)."""
        if not self.floor_margin_db or not (math.isfinite(floor_snr_db)
                                            and math.isfinite(floor_cosine)):
            return self
        scale = 10 ** (self.floor_margin_db / 10)  # error energy; 1 - cosine grows with it
        return replace(self, min_snr_db=min(self.min_snr_db, floor_snr_db - self.floor_margin_db),
                       min_cosine=min(self.min_cosine, 1 - scale * (1 - floor_cosine)))


@dataclass(frozen=True)
class Tolerance:
    """Every bound an artifact of one precision is held to."""

    logits: LogitTolerance
    tensors: TensorTolerance


DEFAULTS: Mapping[str, Tolerance] = MappingProxyType({
    "fp32": Tolerance(LogitTolerance(atol=1e-4, rtol=1e-5, min_top1=1.0,
                                     floor_margin=8.0),
                      TensorTolerance(min_snr_db=80.0, min_cosine=0.99999,
                                      floor_margin_db=20 * math.log10(8.0))),
    "fp16": Tolerance(LogitTolerance(atol=5e-2, rtol=2e-2, min_top1=0.9,
                                     floor_margin=3.0),
                      TensorTolerance(min_snr_db=30.0, min_cosine=0.999,
                                      floor_margin_db=20 * math.log10(3.0))),
    # int8 (``onnx_int8``): bars of its own, loose by design (8-bit rounding is the point)
    # yet far from a broken calibration. Logits: max |err| <= 35% of max |logit| and top-1
    # agreement >= 60% on the 16 agreement photos. Measured there (minmax calibration):
    # mobilenet_v2, real weights: 19% and 94% with the default calibration, 85% and 6% with
    # one black image; squeezenet1_1, random weights: 2.5% and 88%, 68% and 25%.
    # Tensors (parity, ``converters.parity.int8``): 8 bits give ~40 dB on one well-scaled
    # tensor and error accumulates with depth: good calibrations of mobilenet_v2 bottom out
    # at ~4 dB on one projection layer (13 dB at the logits), squeezenet1_1 at 28 dB; one
    # black image drops both to 0.4-1.8 dB. Bar: SNR >= 3 dB (relative L2 error <= 71%)
    # and cosine >= 0.5. An absolute bar is blunt for int8, so the int8 report also ranks
    # layers by their SNR drop from their inputs: the layers that add the most error.
    "int8": Tolerance(LogitTolerance(atol=0.0, rtol=0.35, min_top1=0.6),
                      TensorTolerance(min_snr_db=3.0, min_cosine=0.5)),
})


@dataclass(frozen=True)
class TolerancePolicy:
    """The bounds per precision, and per-model overrides: ``{"model": {"fp16": Tolerance}}``."""

    by_precision: Mapping[str, Tolerance] = field(default_factory=lambda: DEFAULTS)
    overrides: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)

    def for_(self, model: str, precision: str) -> Tolerance:
        return self.overrides.get(model, {}).get(precision, self.by_precision[precision])


DEFAULT_POLICY = TolerancePolicy()


def parity_bars_text(policy: TolerancePolicy = DEFAULT_POLICY) -> str:
    """``fp32: SNR >= 80 dB and cosine >= 0.99999; fp16: ...``, as tables state the bars."""
    return "; ".join(f"{p}: SNR >= {t.tensors.min_snr_db:g} dB and cosine >= "
                     f"{t.tensors.min_cosine:g}" for p, t in policy.by_precision.items())
