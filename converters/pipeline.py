"""``convert``: PyTorch -> ONNX -> SavedModel, TFLite fp32/fp16 and Keras, then agreement.

Each step is a function from one artifact to the next; this module only
sequences them, times them and records them in the manifest.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from converters.agreement import Agreement, compare_logits, failed_run, torch_rounding_gap
from converters.manifest import (ArtifactRecord, Damage, Manifest, file_record, staged_folder,
                                 verify_artifacts)
from converters.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from converters.runners import NCHW_TO_NHWC, RunnerSpec, make_runner
from converters.terminal import Status, no_status
from converters.tolerance import DEFAULT_POLICY, TolerancePolicy
from zoo.build import build_model
from zoo.data import SamplePhotos, sample_photos
from zoo.meta import input_shape, published_meta
from zoo.preprocess import preprocess_images
from zoo.registry import get_entry

DEFAULT_OUT = Path("artifacts")


@dataclass(frozen=True)
class ConvertOptions:
    weights: str = "imagenet"
    out_root: Path = DEFAULT_OUT
    n_images: int = 16
    formats: tuple[str, ...] = ("onnx", "tf_savedmodel", "tflite_fp32", "tflite_fp16", "keras")


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
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)


def _record(folder: Path, fmt: str, path: Path, layout: str, precision: str) -> ArtifactRecord:
    f = file_record(folder, path)
    perm = list(NCHW_TO_NHWC) if layout == "NHWC" else None
    return ArtifactRecord(fmt, f.path, layout, precision, perm, f.size_bytes, f.sha256,
                          f.mtime_ns)


def parity_side_files(manifest: Manifest) -> list[str]:
    """Files beside the artifacts that parity reads (the TF/TFLite and Keras tensor maps)."""
    from converters.keras_export import layer_map_path
    from converters.tf_export import TENSOR_MAP

    paths = {a.format: a.path for a in manifest.artifacts}
    side = [TENSOR_MAP] if {"tf_savedmodel", "tflite_fp32", "tflite_fp16"} & set(paths) else []
    return side + ([str(layer_map_path(Path(paths["keras"])))] if "keras" in paths else [])


def convert_model(name: str, opts: ConvertOptions = ConvertOptions(),
                  log: Callable[[str], None] = print, *, status: Status = no_status
                  ) -> Manifest:
    """Convert one catalog model into ``opts.out_root/<name>/`` and check agreement.

    ``status(text)`` is entered around each step (``converters.progress``)."""
    entry = get_entry(name)
    timer = _Timer(status)
    with timer.step("load_pytorch", f"{name}: building the PyTorch model ({opts.weights} weights)"):
        model, source = build_model(entry, weights=opts.weights)
    log(f"{name}: weights = {source.label}")
    shape = input_shape(entry)
    prep = published_meta(entry).preprocessing
    photos = sample_photos(opts.n_images)
    manifest = Manifest(
        model=name, weights=source,
        input_spec={"name": INPUT_NAME, "shape": [-1, *shape[1:]], "dtype": "float32",
                    "layout": "NCHW", "output": OUTPUT_NAME, "preprocessing": prep.__dict__,
                    "sample_photos": photos.source})
    with staged_folder(opts.out_root / name) as stage:
        for record in _convert_steps(stage, name, model, shape, photos, opts.formats, timer, log):
            manifest.artifacts.append(record)
        manifest.step_seconds = timer.seconds
        with timer.step("agreement", f"agreement: every artifact vs PyTorch on "
                                     f"{len(photos.images)} photos"):
            agreement = check_agreement(stage, manifest, model, photos)
        manifest.agreement = agreement
        manifest.side_files = [file_record(stage, stage / p) for p in parity_side_files(manifest)
                               if (stage / p).exists()]
        manifest.write(stage)
    return manifest


def _convert_steps(stage: Path, name: str, model, shape, photos: SamplePhotos,
                   formats: tuple[str, ...], timer: _Timer, log: Callable[[str], None]
                   ) -> Iterator[ArtifactRecord]:
    onnx_path = stage / f"{name}.onnx"
    with timer.step("onnx", "ONNX export (torch.onnx, opset 17)"):
        export_onnx(model, input_shape=shape, path=onnx_path)
    log(f"  onnx          {timer.seconds['onnx']:6.1f} s  {onnx_path.name}")
    yield _record(stage, "onnx", onnx_path, "NCHW", "fp32")
    if {"tf_savedmodel", "tflite_fp32", "tflite_fp16"} & set(formats):
        from converters.tf_export import convert_onnx_to_tf

        with timer.step("onnx2tf", "onnx2tf: SavedModel, TFLite fp32/fp16"):
            tf = convert_onnx_to_tf(onnx_path, stage, calibration_images=photos.images)
        log(f"  onnx2tf       {timer.seconds['onnx2tf']:6.1f} s  saved_model/, "
            f"{tf.tflite_fp32.name}, {tf.tflite_fp16.name}")
        yield _record(stage, "tf_savedmodel", tf.saved_model, "NHWC", "fp32")
        yield _record(stage, "tflite_fp32", tf.tflite_fp32, "NHWC", "fp32")
        yield _record(stage, "tflite_fp16", tf.tflite_fp16, "NHWC", "fp16")
    if "keras" in formats:
        from converters.keras_export import export_keras

        with timer.step("keras", "Keras 3 model (modelzoo's ONNX -> Keras builder)"):
            keras_path = export_keras(onnx_path, stage / f"{onnx_path.stem}.keras")
        log(f"  keras         {timer.seconds['keras']:6.1f} s  {keras_path.name}")
        yield _record(stage, "keras", keras_path, "NHWC", "fp32")


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
    except FileNotFoundError:  # never converted: nothing is damaged
        return Existing(False, [])
    except ValueError:  # manifest.json itself is corrupt: nothing in the folder can be trusted
        return Existing(False, [unreadable_manifest(folder)])
    listed = {a.format for a in manifest.artifacts}
    if manifest.weights.spec != weights_spec or not set(ConvertOptions().formats) <= listed:
        return Existing(False, [])
    return Existing(True, verify_artifacts(folder, manifest, required=parity_side_files(manifest),
                                           full=full))


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
    """Logits of every artifact vs PyTorch on the sample photos, held to ``policy``."""
    import torch

    prep = published_meta(get_entry(manifest.model)).preprocessing
    x = preprocess_images(photos.images, prep)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    gap = torch_rounding_gap(model, x)
    results = []
    for record in manifest.artifacts:
        try:
            with make_runner(runner_spec(folder, record)) as runner:
                logits = runner.infer({INPUT_NAME: x})[OUTPUT_NAME]
        except Exception as exc:  # a converted artifact that cannot run is a failed check
            results.append(failed_run(record.format, record.precision, len(x), exc))
            continue
        tol = policy.for_(manifest.model, record.precision).logits
        results.append(compare_logits(record.format, record.precision, logits, ref,
                                      torch_gap=gap, tol=tol))
    return results
