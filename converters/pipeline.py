"""``convert``: PyTorch -> ONNX -> SavedModel, TFLite fp32/fp16 and Keras, then agreement.

Each step is a function from one artifact to the next; this module only
sequences them, times them and records them in the manifest.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from converters.agreement import Agreement, compare_logits, exact_reference, failed_run
from converters.formats import default_formats, formats_of_step
from converters.manifest import (ArtifactRecord, Damage, Manifest, artifact_record, file_record,
                                 staged_folder, verify_artifacts)
from converters.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from converters.quantize import QuantizeOptions
from converters.runners import RunnerSpec, make_runner
from converters.terminal import Status, no_status
from converters.tolerance import DEFAULT_POLICY, TolerancePolicy
from converters.tflite_fp16 import kept_note
from converters.model_input import ModelLike, describe, resolve_model
from zoo.build import recipe_mismatch
from zoo.data import SamplePhotos, sample_photos
from zoo.entry import Preprocessing
from zoo.exits import raise_if_exhausted
from zoo.meta import input_shape, preprocessing_of
from zoo.preprocess import preprocess_images

DEFAULT_OUT = Path("artifacts")


@dataclass(frozen=True)
class ConvertOptions:
    weights: str = "imagenet"
    out_root: Path = DEFAULT_OUT
    n_images: int = 16
    formats: tuple[str, ...] = field(default_factory=default_formats)
    int8: QuantizeOptions = QuantizeOptions()  # how ``onnx_int8`` is calibrated, when asked
    tf_converter: str = "auto"  # SavedModel/TFLite by onnx2tf, else Keras (converters.tf_step)
    # onnx2tf's TFLite fp16 with the weights float16 cannot hold put back in float32
    # (converters.tflite_fp16); False only for the sweep's onnx2tf-alone baseline
    fp16_keep_fp32: bool = True
    # the caller checks per-layer parity next: a model parity cannot fit in memory is
    # refused before it is converted (converters.parity.budget)
    parity: bool = False


class _Timer:
    """Seconds per step, and the step shown to the user while it runs."""

    def __init__(self, status: Status = no_status) -> None:
        self.seconds: dict[str, float] = {}
        self.status = status

    @contextlib.contextmanager
    def step(self, name: str, text: str = "") -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            with self.status(text or name):
                yield
        except Exception as exc:
            if failed_step(exc) is None:  # the innermost step (Keras runs inside the TF step)
                with contextlib.suppress(AttributeError):  # an exception type with __slots__
                    exc.convert_step = name  # type: ignore[attr-defined]
            raise
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)


def failed_step(exc: BaseException) -> str | None:
    """The convert step an exception escaped from (its timer name: ``onnx_int8``,
    ``tflite_int8``, ``keras``, ``onnx2tf``, ...), so a caller can drop only that step's
    formats; None when it came from outside every step."""
    return getattr(exc, "convert_step", None)


_record = artifact_record


def parity_side_files(manifest: Manifest, folder: Path | None = None) -> list[str]:
    """Files beside the artifacts that readers need: the TF/TFLite and Keras tensor maps
    parity reads, and (with ``folder``, where it exists) the ONNX file's external weights."""
    from converters.keras_export import layer_map_path
    from converters.onnx_io import data_path
    from converters.tf_export import TENSOR_MAP

    paths = {a.format: a.path for a in manifest.artifacts}
    side = [TENSOR_MAP] if formats_of_step("tf", tuple(paths)) else []
    side += [str(layer_map_path(Path(paths["keras"])))] if "keras" in paths else []
    if folder is not None and "onnx" in paths and data_path(folder / paths["onnx"]).exists():
        side.append(data_path(Path(paths["onnx"])).as_posix())
    return side


def convert_model(model: ModelLike, opts: ConvertOptions = ConvertOptions(),
                  log: Callable[[str], None] = print, *, status: Status = no_status,
                  name: str | None = None, preprocessing: Preprocessing | None = None
                  ) -> Manifest:
    """Convert a model into ``opts.out_root/<entry.folder>/`` and check agreement.

    ``model``: a catalog name (anything ``zoo.registry.get_entry`` takes: ``resnet50``,
    ``timm/vit_small_patch16_224``), an entry (a user's factory:
    ``zoo.sources.user.user_entry``), or an ``nn.Module`` with its ``preprocessing``
    (default ImageNet's at 224 px) and ``name``. ``status(text)`` is entered around each
    step (``converters.progress``)."""
    timer = _Timer(status)
    with timer.step("load_pytorch", f"{describe(model)}: building the PyTorch model "
                                    f"({opts.weights} weights)"):
        built = resolve_model(model, weights=opts.weights, name=name,
                              preprocessing=preprocessing)
    entry, model, source = built.entry, built.model, built.weights
    name = entry.name
    if opts.parity:
        from converters.parity.budget import require_memory

        require_memory(name, _weight_bytes(model))
    log(f"{name}: weights = {source.label}")
    if source.eval_note:
        log(f"note: {source.eval_note}")
    shape = input_shape(entry)
    prep = preprocessing_of(entry)
    photos = sample_photos(opts.n_images)
    manifest = Manifest(
        model=name, weights=source,
        input_spec={"name": INPUT_NAME, "shape": [-1, *shape[1:]], "dtype": "float32",
                    "layout": "NCHW", "output": OUTPUT_NAME, "preprocessing": prep.__dict__,
                    "sample_photos": photos.source}, entry=entry,
        notes=[source.eval_note] if source.eval_note else [])
    with staged_folder(opts.out_root / entry.folder) as stage:
        for record in _convert_steps(stage, entry.slug, model, shape, photos, opts.formats,
                                     timer, log, prep=prep,
                                     int8=opts.int8, tf_converter=opts.tf_converter,
                                     keep_fp32=opts.fp16_keep_fp32, notes=manifest.notes):
            manifest.artifacts.append(record)
        manifest.step_seconds = timer.seconds
        with timer.step("agreement", f"agreement: every artifact vs PyTorch on "
                                     f"{len(photos.images)} photos"):
            agreement = check_agreement(stage, manifest, model, photos)
        if opts.tf_converter == "auto":
            agreement = _tf_from_keras_if_disagreeing(stage, manifest, agreement, model, photos,
                                                      timer, log)
        agreement += _tflite_int8_of_shipped(stage, manifest, opts, model, photos, timer, log)
        manifest.agreement = agreement
        for record in manifest.artifacts:
            if record.fp32_kept:
                manifest.notes.append(kept_note(record.format, record.fp32_kept))
                log(f"  {manifest.notes[-1]}")
        manifest.side_files = [file_record(stage, stage / p)
                               for p in parity_side_files(manifest, stage)
                               if (stage / p).exists()]
        manifest.write(stage)
    return manifest


def _weight_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _convert_steps(stage: Path, name: str, model, shape, photos: SamplePhotos,
                   formats: tuple[str, ...], timer: _Timer, log: Callable[[str], None],
                   *, prep: Preprocessing, int8: QuantizeOptions = QuantizeOptions(),
                   tf_converter: str = "auto", keep_fp32: bool = True,
                   notes: list[str] | None = None) -> Iterator[ArtifactRecord]:
    onnx_path = stage / f"{name}.onnx"
    with timer.step("onnx", "ONNX export (torch.onnx, opset 17)"):
        export_onnx(model, input_shape=shape, path=onnx_path)
    log(f"  onnx          {timer.seconds['onnx']:6.1f} s  {onnx_path.name}")
    yield _record(stage, "onnx", onnx_path, "torch.onnx")
    if "onnx_int8" in formats:
        yield _int8_step(stage, onnx_path, prep, int8, timer, log)
    keras = _KerasStep(stage, onnx_path, timer, log)
    if "keras" in formats:  # first: the TF step may export from it
        keras.path()
    if formats_of_step("tf", formats):
        from converters.tf_step import run_tf_step

        tf = run_tf_step(onnx_path, stage, converter=tf_converter, keras_path=keras.path,
                         calibration_images=photos.images, step=timer.step,
                         keep_fp32=keep_fp32)
        step = "onnx2tf" if tf.records[0].converter == "onnx2tf" else "keras_tf"
        log(f"  {step:13s} {timer.seconds[step]:6.1f} s  "
            + ", ".join(Path(r.path).name for r in tf.records))
        if tf.note:
            log(f"  {tf.note}")
            if notes is not None:
                notes.append(tf.note)
        yield from tf.records
    if keras.built is not None:
        yield _record(stage, "keras", keras.built, "keras")


class _KerasStep:
    """The ``.keras`` artifact, built once: when asked for, or when the TF step needs it."""

    def __init__(self, stage: Path, onnx_path: Path, timer: _Timer,
                 log: Callable[[str], None]) -> None:
        self.stage, self.onnx_path, self.timer, self.log = stage, onnx_path, timer, log
        self.built: Path | None = None

    def path(self) -> Path:
        if self.built is None:
            from converters.keras_export import export_keras

            with self.timer.step("keras", "Keras 3 model (modelzoo's ONNX -> Keras builder)"):
                self.built = export_keras(self.onnx_path,
                                          self.stage / f"{self.onnx_path.stem}.keras")
            self.log(f"  keras         {self.timer.seconds['keras']:6.1f} s  {self.built.name}")
        return self.built


def _tf_from_keras_if_disagreeing(stage: Path, manifest: Manifest, agreement: list[Agreement],
                                  model, photos: SamplePhotos, timer: _Timer,
                                  log: Callable[[str], None]) -> list[Agreement]:
    """onnx2tf's SavedModel/TFLite replaced by the Keras model's where they disagree and the
    Keras model's export agrees better (``converters.tf_step``)."""
    from converters.tf_step import replace_if_disagreeing

    agreement, note = replace_if_disagreeing(
        stage, manifest, agreement, step=timer.step,
        check=lambda folder, trial: check_agreement(folder, trial, model, photos))
    if note:
        log(f"  {note}")
        manifest.notes.append(note)
    return agreement


def _tflite_int8_of_shipped(stage: Path, manifest: Manifest, opts: ConvertOptions, model,
                            photos: SamplePhotos, timer: _Timer, log: Callable[[str], None]
                            ) -> list[Agreement]:
    """TFLite int8 quantized from the SavedModel that ships (onnx2tf's, or the Keras model's
    where that replaced it: onnx2tf's may not run), added to the manifest; their agreement."""
    import dataclasses

    if not ({"tflite_int8", "tflite_int8_io"} & set(opts.formats)
            and "tf_savedmodel" in {a.format for a in manifest.artifacts}):
        return []
    try:
        records = list(_tflite_int8_step(stage, manifest.model_entry().slug,
                                         manifest.artifacts, manifest.preprocessing(),
                                         opts.int8, timer, log))
    except ValueError as exc:  # an op with no int8 kernel, an unusable scale: the model's
        # other artifacts stand; the note says why these are missing (convert exits 3)
        from converters.errors import error_line

        note = f"TFLite int8 not made: {error_line(exc)}"
        log(f"  {note}")
        manifest.notes.append(note)
        return []
    manifest.artifacts.extend(records)
    with timer.step("agreement_int8", "agreement: TFLite int8 vs PyTorch"):
        return check_agreement(stage, dataclasses.replace(manifest, artifacts=records), model,
                               photos)


def _int8_step(stage: Path, onnx_path: Path, prep: Preprocessing, opts: QuantizeOptions,
               timer: _Timer, log: Callable[[str], None]) -> ArtifactRecord:
    """``<name>_int8.onnx``: ONNX Runtime static QDQ int8, calibrated on real photos; its
    record carries how (``Quantization``: method, calibration photos and their hash)."""
    import dataclasses

    from converters.quantize import TOOL, make_int8

    with timer.step("onnx_int8", f"int8: ONNX Runtime static quantization ({opts.method} "
                                 "calibration)"):
        path, quant = make_int8(onnx_path, prep, opts, log=log)
    log(f"  onnx_int8     {timer.seconds['onnx_int8']:6.1f} s  {path.name} ({quant.label})")
    return dataclasses.replace(_record(stage, "onnx_int8", path, TOOL), quantization=quant)


def _tflite_int8_step(stage: Path, name: str, tf_records: list[ArtifactRecord],
                     prep: Preprocessing, opts: QuantizeOptions, timer: _Timer,
                     log: Callable[[str], None]) -> Iterator[ArtifactRecord]:
    """TFLite int8 (float and int8 I/O) from the SavedModel, calibrated on the same photos
    as ``onnx_int8``; full integer, or with ``--int8-target`` the layers int8 hurts most in
    float (``converters.mixed_precision``)."""
    import dataclasses

    from converters.tflite_int8 import make_tflite_int8

    saved = next(stage / r.path for r in tf_records if r.format == "tf_savedmodel")
    with timer.step("tflite_int8", "int8: TFLite quantization"):
        fio, iio, quant = make_tflite_int8(saved, stage, name, prep, calib=opts.calib,
                                           target=opts.target, float_budget=opts.float_budget,
                                           float_step=opts.float_step, log=log)
    log(f"  tflite_int8   {timer.seconds['tflite_int8']:6.1f} s  {fio.name}, {iio.name} "
        f"({quant.label})")
    for fmt, path in (("tflite_int8", fio), ("tflite_int8_io", iio)):
        yield dataclasses.replace(_record(stage, fmt, path, quant.tool), quantization=quant)


@dataclass(frozen=True)
class Existing:
    """What an artifact folder holds for the requested weights."""

    complete: bool  # every format, for these weights, listed in a readable manifest
    damage: list[Damage]  # what of it no longer matches the manifest (checked when complete)

    @property
    def reusable(self) -> bool:
        return self.complete and not self.damage


def check_existing(folder: Path, weights_spec: str, *, full: bool = False) -> Existing:
    """Whether ``folder`` holds every format for these weights, verified against its manifest.

    Damage is only looked for in a folder that would otherwise be reused: one with other
    weights or missing formats is converted again anyway.
    """
    from converters.manifest import load_manifest, unreadable_manifest

    try:
        manifest = load_manifest(folder)
    except FileNotFoundError:  # never converted, or files whose manifest is gone
        from converters.manifest import missing_manifest

        return Existing(False, [d] if (d := missing_manifest(folder)) else [])
    except ValueError:  # manifest.json itself is corrupt: nothing in the folder can be trusted
        return Existing(False, [unreadable_manifest(folder)])
    listed = {a.format for a in manifest.artifacts}
    if (manifest.weights.spec != weights_spec or recipe_mismatch(manifest.weights)
            or not set(_makeable(folder, manifest)) <= listed or _fp16_unchecked(manifest)):
        return Existing(False, [])
    return Existing(True, verify_artifacts(folder, manifest, required=parity_side_files(manifest),
                                           full=full))


def _makeable(folder: Path, manifest: Manifest) -> tuple[str, ...]:
    """The default formats a conversion of this model can make: all, but TFLite for a model
    whose weights exceed its 2 GB (``converters.tf_step.tflite_refusal``)."""
    from converters.tf_step import tflite_refusal

    formats = default_formats()
    onnx = next((a.path for a in manifest.artifacts if a.format == "onnx"), None)
    if onnx is None or not (folder / onnx).is_file() or not tflite_refusal(folder / onnx):
        return formats
    from converters.formats import get_format

    return tuple(f for f in formats if get_format(f).runner != "tflite")


def _fp16_unchecked(manifest: Manifest) -> bool:
    """A TFLite fp16 file made before its weights were checked against what float16 can
    hold (``converters.tflite_fp16``): it may have lost some; converted again."""
    return any(a.format == "tflite_fp16" and a.fp32_kept is None for a in manifest.artifacts)


def is_complete(folder: Path, weights_spec: str) -> bool:
    """Whether ``folder`` holds every format, undamaged, with the tensor maps parity needs,
    for these weights."""
    return check_existing(folder, weights_spec).reusable


def runner_spec(folder: Path, record: ArtifactRecord, threads: int | None = None) -> RunnerSpec:
    perm = tuple(record.input_permutation) if record.input_permutation else None
    return RunnerSpec(record.format, str(folder / record.path), input_permutation=perm,
                      threads=threads)


def check_agreement(folder: Path, manifest: Manifest, model, photos: SamplePhotos, *,
                    policy: TolerancePolicy = DEFAULT_POLICY) -> list[Agreement]:
    """Logits of every artifact vs PyTorch on the sample photos, held to ``policy``: the
    distance from PyTorch's exact (fp64) logits, bounded by PyTorch's own at the artifact's
    precision times a margin (``converters.tolerance.LogitTolerance``)."""
    import torch

    x = preprocess_images(photos.images, manifest.preprocessing())
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    exact = exact_reference(model, x, ref, {r.precision for r in manifest.artifacts})
    results = []
    for record in manifest.artifacts:
        try:
            with make_runner(runner_spec(folder, record)) as runner:
                logits = runner.infer({INPUT_NAME: x})[OUTPUT_NAME]
        except Exception as exc:  # a converted artifact that cannot run is a failed check
            raise_if_exhausted(exc)
            results.append(failed_run(record.format, record.precision, len(x), exc))
            continue
        tol = policy.for_(manifest.model, record.precision).logits
        results.append(compare_logits(record.format, record.precision, logits, ref,
                                      exact=exact, tol=tol))
    return results
