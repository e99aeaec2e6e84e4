"""Per-tensor error statistics, judged against ``converters.tolerance``'s bars."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from converters.tolerance import TensorTolerance
from zoo.jsonrecord import finite_or_null


@dataclass(frozen=True)
class TensorDiff:
    """How one aligned tensor differs between a reference and a test format."""

    name: str  # ONNX tensor name
    module: str  # PyTorch module path ("" for top-level functional ops)
    op: str  # ONNX op type
    depth: int  # position in the ONNX graph's topological order
    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    rel_l2: float  # ||test - ref|| / ||ref||: robust to single outliers and scale
    cosine: float
    snr_db: float
    passed: bool
    # "" when both tensors are finite, else what is not ("tflite_fp16: 12 NaN, 3 Inf"):
    # a failure of its own kind, never a low SNR (NaN compares false with any bar)
    nonfinite: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return finite_or_null(d)


def count_nonfinite(label: str, x: np.ndarray) -> str:
    """``"label: 12 NaN, 3 Inf"`` (only the non-zero counts), or "" when ``x`` is all finite."""
    if not np.issubdtype(x.dtype, np.floating) or np.isfinite(x).all():
        return ""
    n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    return f"{label}: " + ", ".join(f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "Inf"))
                                    if n)


def _energy_stats(r: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """(rel_l2, cosine, snr_db) of finite float64 vectors."""
    err = t - r
    ref_energy, err_energy = float(r @ r), float(err @ err)
    norms = math.sqrt(ref_energy) * math.sqrt(float(t @ t))
    cosine = float(r @ t) / norms if norms > 0 else (1.0 if err_energy == 0 else 0.0)
    if err_energy == 0:
        snr = math.inf
    elif ref_energy == 0:
        snr = -math.inf
    else:
        snr = 10 * math.log10(ref_energy / err_energy)
    rel = math.sqrt(err_energy / ref_energy) if ref_energy > 0 else (0.0 if err_energy == 0 else math.inf)
    return rel, cosine, snr


_F16_MAX = float(np.finfo(np.float16).max)


def _same_infinities(ref: np.ndarray, test: np.ndarray) -> bool:
    """Whether ``ref`` has infinities and ``test`` the same ones at the same places and is
    finite elsewhere, where a value at least float16's largest in magnitude stands for the
    infinity of its sign: TFLite's converter stores a constant -inf (the value a Pad fills
    with) as float32's lowest, and its fp16 files as float16's (-65504)."""
    if ref.shape != test.shape or np.isnan(ref).any() or np.isnan(test).any():
        return False
    inf = np.isinf(ref)
    if not inf.any() or not np.isfinite(test[~inf]).all():
        return False
    at = test[inf]
    return bool(np.all((np.abs(at) >= _F16_MAX) & (np.sign(at) == np.sign(ref[inf]))))


def diff_tensors(ref: np.ndarray, test: np.ndarray, *, name: str, module: str, op: str,
                 depth: int, tol: TensorTolerance, labels: tuple[str, str] = ("reference", "test")
                 ) -> TensorDiff:
    """Error statistics of ``test`` against ``ref``; ``labels`` name them in ``nonfinite``.

    A NaN or Inf in either tensor fails it as ``nonfinite``, with NaN statistics (None in
    JSON), whatever the rest of the values; except infinities of the same sign at the same
    places in both and no NaN (the -inf a "same" max pool pads with, timm's
    MaxPool2dSame; TFLite's float32 or float16 lowest for it): those agree, and the
    finite values are compared.
    """
    if _same_infinities(ref, test):
        finite = np.isfinite(ref)
        ref, test = ref[finite], test[finite]
    nonfinite = "; ".join(filter(None, (count_nonfinite(labels[1], test),
                                        count_nonfinite(labels[0], ref))))
    if nonfinite:
        nan = math.nan
        return TensorDiff(name, module, op, depth, tuple(ref.shape), nan, nan, nan, nan, nan,
                          False, nonfinite)
    r = ref.astype(np.float64).ravel()
    t = test.astype(np.float64).ravel()
    rel, cosine, snr = _energy_stats(r, t)
    # identical tensors pass, an all-zero one (a dead ReLU) included: snr is inf there
    passed = snr >= tol.min_snr_db and (cosine >= tol.min_cosine or snr == math.inf)
    abs_err = np.abs(t - r)
    return TensorDiff(name, module, op, depth, tuple(ref.shape), float(abs_err.max(initial=0)),
                      float(abs_err.mean()) if abs_err.size else 0.0, rel, cosine, snr, passed)
