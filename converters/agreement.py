"""End-to-end agreement of each artifact's logits with PyTorch's."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

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
    # From PyTorch's exact (fp64) logits, and PyTorch's own distance from them at this
    # precision (``exact_reference``); NaN where no fp64 run was made. ``tolerance`` bounds
    # ``max_abs_err_exact`` when it is measured, else ``max_abs_err``.
    max_abs_err_exact: float = math.nan
    rounding_floor: float = math.nan
    # Images whose exact top-1 leads the runner-up by more than twice what the tolerance
    # grants rounding (``floor_margin`` x ``rounding_floor``, which two logits may each move
    # in opposite directions): only on these is top-1 checked (``top1_decided``; NaN with
    # none). None where no fp64 run was made or the precision has no rounding floor (int8:
    # every image counts).
    n_decided: int | None = None
    top1_decided: float = math.nan

    @property
    def checked_err(self) -> float:
        """The error ``tolerance`` was applied to."""
        return self.max_abs_err if math.isnan(self.max_abs_err_exact) else self.max_abs_err_exact

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


@dataclass(frozen=True)
class ExactReference:
    """PyTorch's exact (fp64) logits on the agreement input, and ``floors``: how far
    PyTorch's own finite-precision runs land from them, per precision."""

    logits: np.ndarray
    floors: Mapping[str, float]
    torch_gap: float  # max |PyTorch fp32 (its default CPU path) - exact|

    def floor(self, precision: str) -> float:
        return self.floors.get(precision, 0.0)


def compare_logits(artifact: str, precision: str, logits: np.ndarray, ref: np.ndarray,
                   *, torch_gap: float = 0.0, exact: ExactReference | None = None,
                   tol: LogitTolerance | None = None) -> Agreement:
    """``ref``: PyTorch's fp32 logits; ``exact``: its fp64 run (``exact_reference``), whose
    distance from the artifact is then held to ``tol.exact_bound``; without it, the distance
    from ``ref`` is held to ``tol.bound`` with ``torch_gap`` (max |PyTorch fp32 - fp64| on
    the same input). ``tol``: the bounds (default: the precision's in
    ``converters.tolerance``).

    NaN or Inf in either set of logits fails the row with an error saying how many,
    rather than a max |err| of nan that reads like a (huge) numerical error.
    """
    tol = tol or DEFAULT_POLICY.by_precision[precision].logits
    gap = exact.torch_gap if exact is not None else torch_gap
    for what, x in (("output", logits), ("PyTorch reference output", ref)):
        if counts := _nonfinite(x):
            nan = float("nan")
            return Agreement(artifact, precision, int(ref.shape[0]), nan, nan, nan, gap,
                             0.0, nan, False, f"non-finite {what} ({counts})")
    diff = np.abs(logits.astype(np.float64) - ref.astype(np.float64))
    ref_max = float(np.abs(ref).max())
    top1 = float(np.mean(logits.argmax(1) == ref.argmax(1)))
    if exact is None:
        err_exact = floor = math.nan
        bound = tol.bound(ref_max, torch_gap)
        checked = float(diff.max())
        n_decided, top1_decided, top1_ok = None, math.nan, top1 >= tol.min_top1
    else:
        err_exact = float(np.abs(logits.astype(np.float64) - exact.logits).max())
        floor = exact.floor(precision)
        bound = tol.exact_bound(ref_max, floor)
        checked = err_exact
        n_decided, top1_decided, top1_ok = None, math.nan, top1 >= tol.min_top1
        if tol.floor_margin:  # a bound from rounding (int8's is loose by design: all count)
            decided = _top1_margin(exact.logits) > 2 * tol.floor_margin * floor
            n_decided = int(decided.sum())
            top1_decided = (float(np.mean(logits[decided].argmax(1)
                                          == exact.logits[decided].argmax(1)))
                            if n_decided else math.nan)
            top1_ok = not n_decided or top1_decided >= tol.min_top1
    return Agreement(artifact, precision, int(ref.shape[0]), float(diff.max()), float(diff.mean()),
                     ref_max, gap, top1, bound, bool(checked <= bound and top1_ok),
                     max_abs_err_exact=err_exact, rounding_floor=floor, n_decided=n_decided,
                     top1_decided=top1_decided)


def top1_text(a: Agreement) -> str:
    """Top-1 agreement, and on the images whose top-1 is decided where some are not."""
    text = f"{a.top1_agreement:.0%}"
    if a.n_decided is not None and a.n_decided < a.n_images:
        text += (f" ({a.top1_decided:.0%} of {a.n_decided} decided)" if a.n_decided
                 else " (no top-1 decided beyond rounding)")
    return text


def _top1_margin(logits: np.ndarray) -> np.ndarray:
    """Per image, how far the top logit leads the runner-up. Where that is within what
    rounding at a precision may move two logits, top-1 there is the rounding's choice:
    random-weight regnet_y_3_2gf's logits span 0.78, its TFLite fp16 file lands 0.012 from
    the exact ones (PyTorch's own fp16 rounding: 0.015) and still flips 4 of 16 top-1s."""
    top2 = np.sort(logits, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def failed_run(artifact: str, precision: str, n_images: int, exc: BaseException) -> Agreement:
    """The record of an artifact that raised instead of producing logits."""
    nan = float("nan")
    return Agreement(artifact, precision, n_images, nan, nan, nan, nan, 0.0, nan, False,
                     error_line(exc))


def torch_rounding_gap(model, x: np.ndarray) -> float:
    """max |fp32 - fp64| logits of ``model`` on ``x`` (the model itself is left in fp32)."""
    import torch

    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    return exact_reference(model, x, ref, precisions=()).torch_gap


def _sequential_mean(x, dims, keepdim: bool):
    """fp32 ``x.mean(dims)``, each mean summed one value after another in fp32."""
    import torch

    dims = sorted({d % x.ndim for d in dims})
    rest = [d for d in range(x.ndim) if d not in dims]
    moved = x.permute(*rest, *dims).reshape(*[x.shape[d] for d in rest], -1)
    total = np.cumsum(moved.numpy(), axis=-1, dtype=np.float32)[..., -1]
    out = torch.from_numpy(np.array(total / np.float32(moved.shape[-1]), dtype=np.float32))
    for d in dims if keepdim else ():
        out = out.unsqueeze(d)
    return out


def sequential_sums():
    """A torch function mode under which a model's fp32 means (``mean``, global
    ``adaptive_avg_pool2d``) sum their values one after another, as ONNX Runtime's NCHWc
    GlobalAveragePool and TFLite's Mean do, where PyTorch sums pairwise (far closer to the
    exact sum over 90,000 values: efficientnet_b7's first squeeze-excitation pools)."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    def global_pool(size) -> bool:
        return size == 1 or (isinstance(size, (tuple, list)) and all(s == 1 for s in size))

    class SequentialSums(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            x = args[0] if args else None
            if (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim > 0
                    and x.device.type == "cpu"):
                if func is F.adaptive_avg_pool2d and global_pool(
                        args[1] if len(args) > 1 else kwargs.get("output_size")):
                    return _sequential_mean(x, (-2, -1), keepdim=True)
                if func in (torch.mean, torch.Tensor.mean) and kwargs.get("dtype") is None:
                    dim = args[1] if len(args) > 1 else kwargs.get("dim")
                    dim = range(x.ndim) if dim is None else ([dim] if isinstance(dim, int)
                                                            else dim)
                    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
                    if all(isinstance(d, int) for d in dim):  # not named dimensions
                        return _sequential_mean(x, dim, bool(keepdim))
            return func(*args, **kwargs)

    return SequentialSums()


def exact_reference(model, x: np.ndarray, ref: np.ndarray,
                    precisions: Iterable[str] = ("fp32",)) -> ExactReference:
    """``model``'s fp64 logits on ``x`` and PyTorch's rounding floor for each of
    ``precisions`` it has one for (``converters.tolerance.LogitTolerance``): "fp32", the
    largest distance from the exact logits of three fp32 runs: ``ref`` (its fp32 logits),
    its CPU path without oneDNN, and its means summed in order (``sequential_sums``: a
    runtime's right, and on random efficientnet_b7's one ill-conditioned agreement photo
    alone 3.1e-3 from the exact logits, where PyTorch's own paths land 1.1e-5, ONNX Runtime
    and TFLite 3.1e-3); "fp16", of the model with every floating parameter and buffer
    rounded to fp16, run in fp32 (what an fp16-stored artifact computes on a CPU; its fp32
    round-off is thousands of times smaller than the fp16 rounding). ``model`` itself is
    left as it was (fp32)."""
    import copy
    import warnings

    import torch

    wanted = set(precisions)
    floors: dict[str, float] = {}
    with torch.inference_mode():
        exact = copy.deepcopy(model).double()(torch.from_numpy(x).double()).numpy()
        gap = float(np.abs(ref.astype(np.float64) - exact).max())
        if "fp32" in wanted:
            with warnings.catch_warnings():  # oneDNN's "TF32 on Intel GPUs" note
                warnings.simplefilter("ignore", UserWarning)
                with torch.backends.mkldnn.flags(enabled=False):
                    native = model(torch.from_numpy(x)).double().numpy()
            with sequential_sums():
                in_order = model(torch.from_numpy(x)).double().numpy()
            floors["fp32"] = max(gap, float(np.abs(native - exact).max()),
                                 float(np.abs(in_order - exact).max()))
        if "fp16" in wanted:
            rounded = copy.deepcopy(model)
            for t in [*rounded.parameters(), *rounded.buffers()]:
                if t.is_floating_point():
                    t.data = t.data.half().to(t.dtype)
            out = rounded(torch.from_numpy(x)).double().numpy()
            floor = float(np.abs(out - exact).max())
            # a value beyond fp16's range makes no floor: the atol + rtol bar alone applies
            floors["fp16"] = floor if math.isfinite(floor) else 0.0
    return ExactReference(exact, floors, gap)
