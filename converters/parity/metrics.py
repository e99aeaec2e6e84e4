"""Per-tensor error statistics, judged against ``converters.tolerance``'s bars."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

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
    # the ONNX graph's own SNR here with its weights rounded to the test's precision (fp16),
    # where parity measured it: the bars drop toward it (``TensorTolerance.under_floor``)
    floor_snr_db: float | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return finite_or_null(d)


def _nonfinite_counts(x: np.ndarray) -> tuple[int, int]:
    if not np.issubdtype(x.dtype, np.floating) or np.isfinite(x).all():
        return 0, 0
    return int(np.isnan(x).sum()), int(np.isinf(x).sum())


def _nonfinite_text(label: str, n_nan: int, n_inf: int) -> str:
    """``"label: 12 NaN, 3 Inf"`` (only the non-zero counts), or "" when all are finite."""
    if not n_nan and not n_inf:
        return ""
    return f"{label}: " + ", ".join(f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "Inf"))
                                    if n)


def _energy_stats(ref_energy: float, err_energy: float, cross: float, test_energy: float
                  ) -> tuple[float, float, float]:
    """(rel_l2, cosine, snr_db) from r.r, e.e, r.t and t.t (e = t - r) of finite vectors."""
    norms = math.sqrt(ref_energy) * math.sqrt(test_energy)
    cosine = cross / norms if norms > 0 else (1.0 if err_energy == 0 else 0.0)
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
    acc = DiffAccumulator(name, module, op, depth, tol, labels)
    acc.add(ref, test)
    return acc.result()


@dataclass
class DiffAccumulator:
    """``diff_tensors`` over a batch that arrives a few images at a time: parity of a big
    model captures every tensor of a slice of its inputs, compares, and drops it (every
    tensor of efficientnet_b4 at 380 px is 617 MiB an image). The energies, the sums and
    the counts add up, so ``result()`` is the whole batch's statistics."""

    name: str
    module: str
    op: str
    depth: int
    tol: TensorTolerance
    labels: tuple[str, str] = ("reference", "test")
    shape: tuple[int, ...] = ()  # the first slice's, its leading (batch) axis summed
    _sums: np.ndarray = field(default_factory=lambda: np.zeros(5))  # r.r, e.e, r.t, t.t, |e|
    _max_abs: float = 0.0
    _count: int = 0
    _nonfinite: np.ndarray = field(default_factory=lambda: np.zeros(4, np.int64))
    # the precision's rounding floor here (converters.parity.run.measure_floors)
    floor: TensorDiff | None = None

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        """One slice of the batch: ``ref`` and ``test`` of equal shape."""
        self.shape = (tuple(ref.shape) if not self.shape or not ref.ndim
                      else (self.shape[0] + ref.shape[0], *self.shape[1:]))
        if _same_infinities(ref, test):
            finite = np.isfinite(ref)
            ref, test = ref[finite], test[finite]
        counts = (*_nonfinite_counts(test), *_nonfinite_counts(ref))
        self._nonfinite += counts
        if any(counts) or self._nonfinite.any():
            return
        r = ref.astype(np.float64).ravel()
        t = test.astype(np.float64).ravel()
        err = t - r
        abs_err = np.abs(err)
        self._sums += (r @ r, err @ err, r @ t, t @ t, abs_err.sum())
        self._max_abs = max(self._max_abs, float(abs_err.max(initial=0)))
        self._count += r.size

    def result(self) -> TensorDiff:
        n_nan_t, n_inf_t, n_nan_r, n_inf_r = (int(n) for n in self._nonfinite)
        nonfinite = "; ".join(filter(None, (_nonfinite_text(self.labels[1], n_nan_t, n_inf_t),
                                            _nonfinite_text(self.labels[0], n_nan_r, n_inf_r))))
        where = (self.name, self.module, self.op, self.depth, self.shape)
        floor = self.floor
        floor_snr = None if floor is None or floor.nonfinite else floor.snr_db
        if nonfinite:
            nan = math.nan
            return TensorDiff(*where, nan, nan, nan, nan, nan, False, nonfinite, floor_snr)
        rel, cosine, snr = _energy_stats(*(float(v) for v in self._sums[:4]))
        tol = self.tol if floor_snr is None else self.tol.under_floor(floor_snr, floor.cosine)
        # identical tensors pass, an all-zero one (a dead ReLU) included: snr is inf there
        passed = snr >= tol.min_snr_db and (cosine >= tol.min_cosine or snr == math.inf)
        mean_abs = float(self._sums[4]) / self._count if self._count else 0.0
        return TensorDiff(*where, self._max_abs, mean_abs, rel, cosine, snr, passed,
                          floor_snr_db=floor_snr)
