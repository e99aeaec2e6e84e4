"""End-to-end agreement of each artifact's logits with PyTorch's."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# max |a - ref| <= atol + rtol * max |ref|, and top-1 agreement >= min_top1.
TOLERANCE = {"fp32": (1e-4, 1e-5, 1.0), "fp16": (5e-2, 2e-2, 0.9)}


@dataclass(frozen=True)
class Agreement:
    artifact: str
    precision: str
    n_images: int
    max_abs_err: float
    mean_abs_err: float
    ref_max_abs: float
    top1_agreement: float
    tolerance: float
    passed: bool

    def to_json(self) -> dict:
        return asdict(self)


def compare_logits(artifact: str, precision: str, logits: np.ndarray, ref: np.ndarray
                   ) -> Agreement:
    atol, rtol, min_top1 = TOLERANCE[precision]
    diff = np.abs(logits.astype(np.float64) - ref.astype(np.float64))
    ref_max = float(np.abs(ref).max())
    tol = atol + rtol * ref_max
    top1 = float(np.mean(logits.argmax(1) == ref.argmax(1)))
    return Agreement(artifact, precision, int(ref.shape[0]), float(diff.max()), float(diff.mean()),
                     ref_max, top1, tol, bool(diff.max() <= tol and top1 >= min_top1))
