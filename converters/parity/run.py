"""Per-layer parity of a converted model: capture every format, align, compare."""
from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from converters.errors import error_line
from converters.formats import get_format
from converters.manifest import Manifest, load_manifest, remove_orphans
from converters.parity.capture import (Capture, capture_keras, capture_keras_saved_model,
                                       capture_onnx, capture_tf, capture_tflite,
                                       capture_torch, folded_readers, spill)
from converters.parity.graph_index import GraphIndex, index_graph, subnormal_in_fp16
from converters.parity.metrics import DiffAccumulator, TensorDiff
from converters.terminal import Status, no_status
from converters.tolerance import DEFAULT_POLICY, TensorTolerance, TolerancePolicy
from zoo.exits import raise_if_exhausted

if TYPE_CHECKING:
    import tempfile

    import torch



def default_pairs(made: Iterable[str] | None = None) -> tuple[tuple[str, str], ...]:
    """PyTorch vs ONNX, then ONNX vs every other default format (``converters.formats``);
    with ``made`` (a manifest's formats), only those that were made: a format the convert
    could not make (its notes say why) has nothing to compare."""
    from converters.formats import default_formats

    others = [f for f in default_formats() if f != "onnx" and (made is None or f in made)]
    return (("pytorch", "onnx"), *(("onnx", f) for f in others))


@dataclass
class PairReport:
    model: str
    weights: str
    reference: str
    test: str
    precision: str
    inputs: str
    n_sites: int  # float tensors in the ONNX graph
    diffs: list[TensorDiff]
    unaligned: dict[str, str]
    fused: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""  # a format that could not run at all
    cause: str = ""  # what the first divergent layer holds that explains it, when known
    floor: str = ""  # where fp16 bars dropped to the rounding floor, or why they could not

    @property
    def passed(self) -> bool:
        return not self.error and all(d.passed for d in self.diffs)

    @property
    def first_divergent(self) -> TensorDiff | None:
        """The first failing tensor, non-finite ones included."""
        return next((d for d in self.diffs if not d.passed), None)

    @property
    def first_nonfinite(self) -> TensorDiff | None:
        """The first tensor holding NaN or Inf (in either format)."""
        return next((d for d in self.diffs if d.nonfinite), None)

    @property
    def worst(self) -> TensorDiff | None:
        """The lowest SNR; a non-finite tensor is worse than any (its SNR is NaN, and NaN
        loses every comparison, so a plain ``min`` would skip it)."""
        return min(self.diffs, key=_badness, default=None)

    @property
    def aligned_fraction(self) -> float:
        return len(self.diffs) / self.n_sites if self.n_sites else 0.0


def _badness(d: TensorDiff) -> tuple[int, float]:
    """Sort key, lowest first: non-finite tensors (earliest first), then by SNR."""
    if d.nonfinite or math.isnan(d.snr_db):
        return 0, 0.0
    return 1, d.snr_db


@dataclass(frozen=True)
class ParityInputs:
    x: np.ndarray  # NCHW float32
    description: str
    calibration_images: list[np.ndarray]


def parity_inputs(manifest: Manifest, *, n_photos: int = 4, n_random: int = 2, seed: int = 0
                  ) -> ParityInputs:
    """Real photos (preprocessed) followed by seeded standard-normal images."""
    from zoo.data import sample_photos
    from zoo.preprocess import preprocess_images

    photos = sample_photos(max(n_photos, 1))
    real = preprocess_images(photos.images[:n_photos], manifest.preprocessing())
    noise = np.random.default_rng(seed).standard_normal((n_random, *real.shape[1:]),
                                                        dtype=np.float32)
    desc = f"{n_photos} photos ({photos.source}) + {n_random} seeded N(0,1) images"
    return ParityInputs(np.concatenate([real, noise]), desc, photos.images)


def capture_format(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs,
                   index: GraphIndex, model: "torch.nn.Module | None" = None) -> Capture:
    """Every intermediate tensor of ``fmt``; PyTorch's from ``model`` when given, else from
    the model rebuilt as the manifest records it (no catalog look-up)."""
    if fmt == "pytorch":
        return capture_torch(model if model is not None else _rebuild(manifest),
                             inputs.x, index)
    return CAPTURES[get_format(fmt).capture](fmt, folder, manifest, inputs)


def _rebuild(manifest: Manifest) -> "torch.nn.Module":
    from zoo.build import build_model, recipe_mismatch

    if why := recipe_mismatch(manifest.weights):
        raise ValueError(f"{manifest.model}: its artifacts hold {why}")
    model, _ = build_model(manifest.model_entry(), weights=manifest.weights.spec)
    return model


def _capture_onnx(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs) -> Capture:
    return capture_onnx(folder / manifest.artifact(fmt).path, inputs.x, fmt)


def _capture_tf_graph(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs
                      ) -> Capture:
    """The graph the SavedModel was saved from: onnx2tf's, rebuilt, or the Keras model."""
    record = manifest.artifact(fmt)
    if record.converter == "keras":
        keras_path = folder / manifest.artifact("keras").path
        return capture_keras_saved_model(keras_path, folder / record.path, inputs.x, fmt)
    return capture_tf(folder / manifest.artifact("onnx").path, folder / record.path, inputs.x,
                      inputs.calibration_images)


def _capture_tflite(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs
                    ) -> Capture:
    import json

    from converters.tf_export import TENSOR_MAP

    tensor_map = json.loads((folder / TENSOR_MAP).read_text())
    folded = folded_readers(folder / manifest.artifact("onnx").path)
    return capture_tflite(folder / manifest.artifact(fmt).path, tensor_map, inputs.x, fmt,
                          folded)


def _capture_keras(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs
                   ) -> Capture:
    return capture_keras(folder / manifest.artifact(fmt).path, inputs.x)


# ``Format.capture`` -> how to read every intermediate tensor of an artifact of that kind
CAPTURES: dict[str, Callable[[str, Path, Manifest, ParityInputs], Capture]] = {
    "onnx": _capture_onnx, "tf_graph": _capture_tf_graph, "tflite": _capture_tflite,
    "keras": _capture_keras}


def _capture_or_error(fmt: str, folder: Path, manifest: Manifest, inputs: ParityInputs,
                      index: GraphIndex, model: "torch.nn.Module | None" = None
                      ) -> Capture | str:
    """The capture, or one line saying why this format could not run on the inputs."""
    try:
        return capture_format(fmt, folder, manifest, inputs, index, model)
    except Exception as exc:  # an artifact that cannot run fails its pairs, with the reason
        raise_if_exhausted(exc)
        return f"{fmt}: {error_line(exc)}"


# The rounding floor parity measures per precision: (the capture at that precision, the
# one it is measured against); ``_ParityRun.measure_floors``
FLOOR_REFERENCES = {"fp32": ("pytorch", "pytorch_fp64"), "fp16": ("onnx", "onnx_fp16_weights")}

# A parity run's scratch folder in the artifacts' folder, named with its process id
SCRATCH_PREFIX = ".parity-scratch-"


def remove_stale_scratch(folder: Path) -> list[Path]:
    """Remove the scratch folders in ``folder`` whose parity process is gone (one killed
    outright, as a sweep's SIGKILL after its grace period, removes nothing: efficientnet_b7's
    left its 267 MB rounded ONNX file); those removed."""
    return remove_orphans(folder.glob(f"{SCRATCH_PREFIX}*"),
                          lambda path: path.name[len(SCRATCH_PREFIX):].partition("-")[0])


# What parity holds per image, in multiples of one capture: the reference's capture, the
# test's, and the runtime's own copy of the test's while it is read out.
_CAPTURES_HELD = 3


def capture_memory_mb() -> float:
    """What parity may spend on captures: a quarter of this machine's memory (the sweep
    runs two models side by side), 2 GiB where /proc/meminfo cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return 2048.0
    return kib / 1024 / 4


def images_per_slice(bytes_per_image: int, n_images: int, memory_mb: float) -> int:
    """How many images one capture may cover so that parity's captures fit ``memory_mb``:
    all of them for most models; fewer for one whose every tensor is hundreds of MiB an
    image (efficientnet_b4's 617 MiB, swin_s's 694), at least one."""
    per_image_mb = bytes_per_image / 2**20 * _CAPTURES_HELD
    if per_image_mb <= 0:
        return n_images
    return max(1, min(n_images, int(memory_mb // per_image_mb)))


def capture_bytes_per_image(index: GraphIndex, onnx_path: Path, x: np.ndarray) -> int:
    """What a capture holds per image: from the ONNX graph's shapes, or, where they are not
    all known, measured by ONNX Runtime on the first image alone."""
    if index.bytes_per_image:
        return index.bytes_per_image
    probe = capture_onnx(onnx_path, x[:1])
    return sum(v.nbytes for v in probe.tensors.values() if v.dtype == np.float32)


@dataclass
class _PairState:
    """One pair's comparison, filled a slice of images at a time."""

    accumulators: dict[str, DiffAccumulator] = field(default_factory=dict)
    unaligned: dict[str, str] = field(default_factory=dict)
    fused: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""


def _compare_into(state: _PairState, ref: Capture, test: Capture, index: GraphIndex, *,
                  tol: TensorTolerance) -> None:
    state.fused = test.fused
    for site in index.sites:
        if site.name in state.unaligned:
            continue
        a, b = ref.tensors.get(site.name), test.tensors.get(site.name)
        if a is None or b is None:
            missing = ref if a is None else test
            state.unaligned[site.name] = f"{missing.format}: " + missing.unaligned.get(
                site.name, "tensor not produced")
        elif a.shape != b.shape:
            state.unaligned[site.name] = f"shape {a.shape} vs {b.shape}"
        else:
            acc = state.accumulators.get(site.name)
            if acc is None:
                acc = state.accumulators[site.name] = DiffAccumulator(
                    site.name, site.module, site.op, site.depth, tol,
                    (ref.format, test.format))
            acc.add(a, b)
            continue
        state.accumulators.pop(site.name, None)  # aligned on earlier images only


def compare(ref: Capture, test: Capture, index: GraphIndex, *, model: str, weights: str,
            precision: str, inputs: str, policy: TolerancePolicy) -> PairReport:
    state = _PairState()
    _compare_into(state, ref, test, index, tol=policy.for_(model, precision).tensors)
    return PairReport(model, weights, ref.format, test.format, precision, inputs,
                      len(index.sites), [a.result() for a in state.accumulators.values()],
                      state.unaligned, state.fused)


def run_parity(folder: Path, *, pairs: tuple[tuple[str, str], ...] | None = None,
               policy: TolerancePolicy | None = None, inputs: ParityInputs | None = None,
               timings: dict[str, float] | None = None, status: Status = no_status,
               model: "torch.nn.Module | None" = None,
               memory_mb: float | None = None) -> list[PairReport]:
    """Compare every pair in ``pairs`` for the converted model in ``folder``.

    Everything comes from the folder (the ONNX file and the manifest's preprocessing and
    entry); ``model`` is the PyTorch reference when given (an in-memory module that cannot
    be rebuilt), else it is rebuilt as the manifest records it. ``timings``, when given,
    receives the seconds spent capturing each format and comparing each pair;
    ``status(text)`` is entered around each of those steps.

    The captures of a big model cover a slice of the images at a time, so that they fit
    ``memory_mb`` (``capture_memory_mb()`` by default); each slice is compared and dropped,
    and the statistics add up to the whole batch's (``DiffAccumulator``). Every format is
    then loaded once per slice. Where one image's captures outgrow ``memory_mb``, they are
    held in memory-mapped files (``spill``).
    """
    manifest = load_manifest(folder)
    _require_memory(folder, manifest)
    remove_stale_scratch(folder)
    inputs = inputs or parity_inputs(manifest)
    run = _ParityRun(folder, manifest, index_graph(folder / manifest.artifact("onnx").path),
                     default_pairs({a.format for a in manifest.artifacts}) if pairs is None
                     else pairs, policy or DEFAULT_POLICY,
                     {} if timings is None else timings, status, model)
    n = len(inputs.x)
    memory_mb = capture_memory_mb() if memory_mb is None else memory_mb
    per_image = capture_bytes_per_image(run.index, folder / manifest.artifact("onnx").path,
                                        inputs.x)
    step = images_per_slice(per_image, n, memory_mb)
    run.spill = per_image / 2**20 * _CAPTURES_HELD > memory_mb  # one image outgrows it
    if step < n and any("pytorch" in pair for pair in run.pairs):
        run.build_reference_once()
    try:
        for start in range(0, n, step):
            where = f" (images {start + 1}-{min(start + step, n)} of {n})" if step < n else ""
            run.compare_slice(replace(inputs, x=inputs.x[start:start + step]), where)
    finally:
        run.close()
    return run.reports(inputs.description)


def _require_memory(folder: Path, manifest: Manifest) -> None:
    from converters.onnx_io import load_structure, weight_bytes
    from converters.parity.budget import require_memory

    onnx = load_structure(folder / manifest.artifact("onnx").path)
    require_memory(manifest.model, weight_bytes(onnx))


@dataclass
class _ParityRun:
    """One parity run's state across slices of the images: each pair's accumulated
    comparison and the formats that could not run."""

    folder: Path
    manifest: Manifest
    index: GraphIndex
    pairs: tuple[tuple[str, str], ...]
    policy: TolerancePolicy
    timings: dict[str, float]
    status: Status
    model: "torch.nn.Module | None"
    failed: dict[str, str] = field(default_factory=dict)  # format -> why it could not run
    states: list[_PairState] = field(default_factory=list)
    # per precision, the rounding floor at each tensor (``measure_floors``)
    floor_states: dict[str, _PairState] = field(
        default_factory=lambda: {p: _PairState() for p in FLOOR_REFERENCES})
    model64: "torch.nn.Module | None" = None  # the reference in fp64, for fp32's floor
    scratch: "tempfile.TemporaryDirectory | None" = None  # the rounded ONNX file, spills
    spill: bool = False  # captures to memory-mapped files: one image's outgrow the memory

    def __post_init__(self) -> None:
        self.states = [_PairState() for _ in self.pairs]

    def _tolerance(self, fmt: str) -> TensorTolerance:
        return self.policy.for_(self.manifest.model, get_format(fmt).precision).tensors

    def _floored(self, fmt: str) -> bool:
        """Whether ``fmt``'s bars drop to a rounding floor: a precision parity measures one
        for, whose tolerance has a margin."""
        return (get_format(fmt).precision in FLOOR_REFERENCES
                and bool(self._tolerance(fmt).floor_margin_db))

    def build_reference_once(self) -> None:
        """The PyTorch model, built once for every slice and fp32's floor (its failure fails
        its pairs)."""
        if self.model is None and "pytorch" not in self.failed:
            try:
                self.model = _rebuild(self.manifest)
            except Exception as exc:  # noqa: BLE001 - reported as the pairs' error
                raise_if_exhausted(exc)
                self.failed["pytorch"] = f"pytorch: {error_line(exc)}"

    @contextmanager
    def _timed(self, key: str, text: str) -> Iterator[None]:
        """``status(text)`` around the step; its seconds added to ``timings[key]``."""
        t0 = time.perf_counter()
        with self.status(text):
            yield
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def measure_floors(self, inputs: ParityInputs, where: str, captures: dict[str, Capture]
                       ) -> None:
        """On this slice, each floored precision's rounding floor at every tensor: fp32,
        PyTorch against itself in fp64; fp16, the ONNX graph against itself with every
        weight rounded to fp16 (run in fp32, as an fp16-stored artifact runs on a CPU).
        The fp32 capture (PyTorch's, ONNX's) stays in ``captures`` for the pairs."""
        needed = {get_format(test).precision for _, test in self.pairs if self._floored(test)}
        for precision, (ref_fmt, exact_fmt) in FLOOR_REFERENCES.items():
            state = self.floor_states[precision]
            if precision not in needed or state.error:
                continue
            if ref_fmt == "pytorch":
                self.build_reference_once()
            self._capture_into(captures, ref_fmt, inputs, where)
            if ref_fmt in self.failed:
                state.error = self.failed[ref_fmt]
                continue
            with self._timed(f"capture {exact_fmt}", f"parity: capturing every {exact_fmt} "
                                                     f"tensor{where}"):
                try:
                    other = self._held(self._capture_floor(exact_fmt, inputs))
                except Exception as exc:  # noqa: BLE001 - the flat bars hold, with the reason
                    raise_if_exhausted(exc)
                    state.error = f"{exact_fmt}: {error_line(exc)}"
                    continue
            pair = (other, captures[ref_fmt]) if precision == "fp32" else (captures[ref_fmt], other)
            with self._timed(f"compare {pair[0].format} vs {pair[1].format}",
                             f"parity: comparing {pair[0].format} vs {pair[1].format}{where}"):
                _compare_into(state, *pair, self.index,
                              tol=self.policy.for_(self.manifest.model, precision).tensors)

    def _capture_floor(self, fmt: str, inputs: ParityInputs) -> Capture:
        if fmt == "onnx_fp16_weights":
            return capture_onnx(self._rounded_onnx(), inputs.x, fmt)
        if self.model64 is None:  # the fp32 capture's model, built once or given
            import copy

            self.model64 = copy.deepcopy(self.model).double()
        return replace(capture_torch(self.model64, inputs.x.astype(np.float64), self.index),
                       format=fmt)

    def _rounded_onnx(self) -> Path:
        """The ONNX file with its weights rounded to fp16, written once into the scratch
        folder."""
        path = self._scratch() / "fp16_weights.onnx"
        if not path.exists():
            import onnx

            from converters.onnx_fp16 import round_weights_to_fp16
            from converters.onnx_io import save_onnx

            save_onnx(round_weights_to_fp16(onnx.load(str(self.onnx_path))), path)
        return path

    def _scratch(self) -> Path:
        """This run's folder for the rounded ONNX file and spilled captures; ``close``
        removes it."""
        if self.scratch is None:
            import tempfile

            self.scratch = tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-",
                                                       dir=self.folder)
        return Path(self.scratch.name)

    def _held(self, capture: Capture) -> Capture:
        """``capture`` as parity holds it: spilled to memory-mapped files when one image's
        captures outgrow parity's memory (``spill``), else as it is."""
        return spill(capture, self._scratch()) if self.spill else capture

    def close(self) -> None:
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch = None

    @property
    def onnx_path(self) -> Path:
        return self.folder / self.manifest.artifact("onnx").path

    def _capture_into(self, captures: dict[str, Capture], fmt: str, inputs: ParityInputs,
                      where: str) -> None:
        """``fmt``'s capture of this slice into ``captures``, unless it is there or ``fmt``
        already failed; a failure goes to ``failed``, which fails every pair reading it."""
        if fmt in captures or fmt in self.failed:
            return
        with self._timed(f"capture {fmt}", f"parity: capturing every {fmt} tensor{where}"):
            got = _capture_or_error(fmt, self.folder, self.manifest, inputs, self.index,
                                    self.model)
        if isinstance(got, str):
            self.failed[fmt] = got
        else:
            captures[fmt] = self._held(got)

    def compare_slice(self, inputs: ParityInputs, where: str) -> None:
        captures: dict[str, Capture] = {}
        self.measure_floors(inputs, where, captures)
        for i, ((ref_fmt, test_fmt), state) in enumerate(zip(self.pairs, self.states)):
            # a capture no later pair reads is dropped: every tensor of a big model at 6 images
            # is gigabytes (maxvit_t's six captures held at once outgrew a 23 GB machine)
            later = {f for pair in self.pairs[i:] for f in pair}
            for fmt in [f for f in captures if f not in later]:
                del captures[fmt]
            for fmt in (ref_fmt, test_fmt):
                self._capture_into(captures, fmt, inputs, where)
            if error := next((self.failed[f] for f in (ref_fmt, test_fmt)
                              if f in self.failed), ""):
                state.error = state.error or error
                continue
            tol = self._tolerance(test_fmt)
            with self._timed(f"compare {ref_fmt} vs {test_fmt}",
                             f"parity: comparing {ref_fmt} vs {test_fmt}{where}"):
                _compare_into(state, captures[ref_fmt], captures[test_fmt], self.index,
                              tol=tol)

    def reports(self, inputs: str) -> list[PairReport]:
        onnx_path = self.onnx_path
        reports = []
        floors = {precision: self.index.moved_floors(
                      {name: acc.result() for name, acc in state.accumulators.items()})
                  for precision, state in self.floor_states.items()}
        for (ref_fmt, test_fmt), state in zip(self.pairs, self.states):
            ok = not state.error
            tol = self._tolerance(test_fmt)
            floored = ok and self._floored(test_fmt)
            precision = get_format(test_fmt).precision
            for acc in state.accumulators.values() if floored else ():
                acc.floor = floors[precision].get(acc.name)
            report = PairReport(
                self.manifest.model, self.manifest.weights.label, ref_fmt, test_fmt,
                precision, inputs, len(self.index.sites),
                [a.result() for a in state.accumulators.values()] if ok else [],
                state.unaligned if ok else {}, state.fused if ok else {}, error=state.error)
            report.cause = _precision_cause(report, onnx_path, self.index)
            if floored:
                report.floor = _floor_text(report, tol, self.floor_states[precision].error)
            reports.append(report)
        return reports


def _floor_text(report: PairReport, tol: TensorTolerance, error: str) -> str:
    """Which tensors pass only on the precision's rounding floor (under the flat bars), the
    lowest floor among them; or why no floor could be measured (the flat bars held)."""
    precision = report.precision
    if error:
        return f"flat bars (no {precision} rounding floor: {error})"
    lowered = [d for d in report.diffs if d.passed and d.floor_snr_db is not None
               and not (d.snr_db >= tol.min_snr_db and d.cosine >= tol.min_cosine)]
    if not lowered:
        return ""
    low = min(lowered, key=lambda d: d.floor_snr_db)
    floor = ("the ONNX graph, its weights rounded to fp16," if precision == "fp16"
             else "PyTorch in fp32, from its fp64 run,")
    return (f"{len(lowered)} tensors under the flat {tol.min_snr_db:g} dB pass on "
            f"{precision}'s own rounding ({floor} reaches {low.floor_snr_db:.1f} dB at "
            f"{low.module or low.name}; the file {low.snr_db:.1f})")


def _precision_cause(report: PairReport, onnx_path: Path, index: GraphIndex) -> str:
    """Why an fp16 file diverges at its first divergent layer, where the layer's own
    constant says it: float16 holds it only as a subnormal, to a few bits."""
    import numpy as np

    first = report.first_divergent
    if report.precision != "fp16" or first is None or first.nonfinite:
        return ""
    node = index.by_name()[first.name].node
    smallest = float(np.finfo(np.float16).smallest_subnormal)
    return "; ".join(
        f"float16 holds its constant {name.rsplit('/', 1)[-1]} (max |x| {top:.2g}) only as a "
        f"subnormal, to {int(np.log2(top / smallest)) + 1} bits"
        for name, top in subnormal_in_fp16(onnx_path, node).items())
