"""End-to-end agreement of each artifact's logits with PyTorch's."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from converters.errors import error_line
from converters.tolerance import DEFAULT_POLICY, LogitTolerance
from zoo.jsonrecord import finite_or_null


@dataclass(frozen=True)
class Agreement:
    artifact: str
    precision: str
    n_images: int
    max_abs_err: float
    mean_abs_err: float
    ref_max_abs: float
    torch_fp32_vs_fp64: float
    top1_agreement: float
    tolerance: float
    passed: bool
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        # null, not a bare NaN: manifest.json stays valid JSON for any reader
        return finite_or_null(asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Agreement":
        """The record ``to_json`` wrote (null statistics back to NaN)."""
        types = {f.name: f.type for f in fields(cls)}
        return cls(**{k: math.nan if v is None and types[k] == "float" else v
                      for k, v in data.items() if k in types})


def _nonfinite(x: np.ndarray) -> str:
    """``"3 NaN, 0 Inf"`` when ``x`` has any, else ""."""
    if np.isfinite(x).all():
        return ""
    return f"{int(np.isnan(x).sum())} NaN, {int(np.isinf(x).sum())} Inf"


def compare_logits(artifact: str, precision: str, logits: np.ndarray, ref: np.ndarray,
                   *, torch_gap: float = 0.0, tol: LogitTolerance | None = None) -> Agreement:
    """``torch_gap``: max |PyTorch fp32 - PyTorch fp64| on the same input; ``tol``: the
    bounds (default: the precision's in ``converters.tolerance``).

    NaN or Inf in either set of logits fails the row with an error saying how many,
    rather than a max |err| of nan that reads like a (huge) numerical error.
    """
    tol = tol or DEFAULT_POLICY.by_precision[precision].logits
    for what, x in (("output", logits), ("PyTorch reference output", ref)):
        if counts := _nonfinite(x):
            nan = float("nan")
            return Agreement(artifact, precision, int(ref.shape[0]), nan, nan, nan, torch_gap,
                             0.0, nan, False, f"non-finite {what} ({counts})")
    diff = np.abs(logits.astype(np.float64) - ref.astype(np.float64))
    ref_max = float(np.abs(ref).max())
    bound = tol.bound(ref_max, torch_gap)
    top1 = float(np.mean(logits.argmax(1) == ref.argmax(1)))
    return Agreement(artifact, precision, int(ref.shape[0]), float(diff.max()), float(diff.mean()),
                     ref_max, torch_gap, top1, bound,
                     bool(diff.max() <= bound and top1 >= tol.min_top1))


def failed_run(artifact: str, precision: str, n_images: int, exc: BaseException) -> Agreement:
    """The record of an artifact that raised instead of producing logits."""
    nan = float("nan")
    return Agreement(artifact, precision, n_images, nan, nan, nan, nan, 0.0, nan, False,
                     error_line(exc))


def torch_rounding_gap(model, x: np.ndarray) -> float:
    """max |fp32 - fp64| logits of ``model`` on ``x`` (the model itself is left in fp32)."""
    import copy

    import torch

    with torch.inference_mode():
        ref32 = model(torch.from_numpy(x)).double()
        ref64 = copy.deepcopy(model).double()(torch.from_numpy(x).double())
    return float((ref32 - ref64).abs().max())
