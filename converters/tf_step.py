"""The SavedModel/TFLite step: onnx2tf first, the Keras model's own export where onnx2tf
fails or makes artifacts that do not run or agree.

``--tf-converter auto`` (the default) does that; ``onnx2tf`` and ``keras`` force one path.
Every record says which converter made it (``ArtifactRecord.converter``), and parity
captures whichever was shipped.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, Sequence

from converters.agreement import top1_text
from converters.formats import TF_CONVERTERS, formats_of_step, get_format
from converters.manifest import artifact_record
from converters.tf_export import TENSOR_MAP, ConversionError, TfArtifacts
from zoo.exits import first_line, raise_if_exhausted

if TYPE_CHECKING:
    import numpy as np

    from converters.agreement import Agreement
    from converters.manifest import ArtifactRecord, Manifest

KERAS_STAGE = ".keras_tf"  # inside the staging folder: the own path's artifacts on trial


@dataclass(frozen=True)
class TfStep:
    records: list["ArtifactRecord"]
    note: str = ""  # why onnx2tf's artifacts are not the ones shipped ("" when they are)


def records_of(folder: Path, tf: TfArtifacts) -> list["ArtifactRecord"]:
    paths = {"tf_savedmodel": tf.saved_model, "tflite_fp32": tf.tflite_fp32,
             "tflite_fp16": tf.tflite_fp16}
    return [artifact_record(folder, fmt, paths[fmt], tf.converter,
                            fp32_kept=tf.fp32_kept if fmt == "tflite_fp16" else None)
            for fmt in formats_of_step("tf") if paths[fmt] is not None]


# A TFLite file is one FlatBuffer, whose offsets are 32-bit signed: 2 GB at most.
TFLITE_MAX_BYTES = 2**31 - 1


def tflite_refusal(onnx_path: Path) -> str:
    """Why no TFLite file can be made of this model ("" when one can): its weights alone
    exceed the FlatBuffer limit (the fp16 file is checked against the fp32 one, which
    cannot exist)."""
    from converters.onnx_io import load_structure, weight_bytes

    size = weight_bytes(load_structure(onnx_path))
    if size <= TFLITE_MAX_BYTES:
        return ""
    return (f"TFLite not made: the weights take {size / 1e9:.2f} GB, over TFLite's 2 GB "
            "FlatBuffer limit (SavedModel, Keras and ONNX hold them)")


Step = Callable[[str, str], ContextManager[None]]  # (timer key, text shown) around a step


def run_tf_step(onnx_path: Path, stage: Path, *, converter: str, keras_path: Callable[[], Path],
                calibration_images: Sequence["np.ndarray"], step: Step,
                keep_fp32: bool = True) -> TfStep:
    """SavedModel + TFLite fp32/fp16 in ``stage`` by ``converter`` (``auto``: onnx2tf, and
    the Keras model's export when onnx2tf raises). ``keras_path()`` builds the ``.keras``
    artifact when it is not there yet. ``keep_fp32``: onnx2tf's fp16 file gets the weights
    float16 cannot hold back in float32 (``converters.tflite_fp16``; the Keras export's
    always does)."""
    from converters.tf_export import convert_onnx_to_tf

    check_converter(converter)
    note = "forced (--tf-converter keras)"
    if refusal := tflite_refusal(onnx_path):  # onnx2tf writes TFLite files: the Keras path
        if converter == "onnx2tf":
            raise ConversionError(f"--tf-converter onnx2tf: {refusal}")
        return TfStep(keras_step(keras_path(), stage, onnx_path.stem, step, tflite=False),
                      refusal)
    if converter != "keras":
        try:
            with step("onnx2tf", "onnx2tf: SavedModel, TFLite fp32/fp16"):
                tf = convert_onnx_to_tf(onnx_path, stage, calibration_images=calibration_images,
                                        keep_fp32=keep_fp32)
            return TfStep(records_of(stage, tf))
        except ConversionError as exc:
            if converter == "onnx2tf":
                raise
            remove_tf_outputs(stage, onnx_path.stem)
            note = (f"{first_line(exc, 200)} (log: onnx2tf.log): SavedModel/TFLite from the "
                    "Keras model")
            try:
                return TfStep(keras_step(keras_path(), stage, onnx_path.stem, step), note)
            except Exception as keras_exc:  # noqa: BLE001  say why both paths failed
                raise_if_exhausted(keras_exc)
                from converters.errors import error_line

                raise ConversionError(f"{exc}; the Keras export failed too: "
                                      f"{error_line(keras_exc)}") from None
    return TfStep(keras_step(keras_path(), stage, onnx_path.stem, step), note)


def remove_tf_outputs(stage: Path, stem: str) -> None:
    """What a failed onnx2tf run may have left in ``stage``: its working folder, files it
    had moved into place and the tensor map. Its log stays: the note points at it."""
    shutil.rmtree(stage / "onnx2tf", ignore_errors=True)
    for fmt in formats_of_step("tf"):
        target = stage / get_format(fmt).path_for(stem)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
    (stage / TENSOR_MAP).unlink(missing_ok=True)


def keras_step(keras_path: Path, folder: Path, stem: str, step: Step, *, tflite: bool = True
               ) -> list["ArtifactRecord"]:
    from converters.keras_tf_export import export_tf_from_keras

    what = "SavedModel, TFLite fp32/fp16" if tflite else "SavedModel"
    with step("keras_tf", f"Keras export: {what}"):
        tf = export_tf_from_keras(keras_path, folder, stem=stem, tflite=tflite)
    return records_of(folder, tf)


def check_converter(converter: str) -> None:
    if converter not in TF_CONVERTERS:
        raise ValueError(f"--tf-converter must be one of {', '.join(TF_CONVERTERS)}, "
                         f"not {converter!r}")


def _passed(agreement: list["Agreement"], formats: Sequence[str]) -> int:
    return sum(a.passed for a in agreement if a.artifact in formats)


def replace_if_disagreeing(stage: Path, manifest: "Manifest", agreement: list["Agreement"], *,
                           check: Callable[[Path, "Manifest"], list["Agreement"]], step: Step
                           ) -> tuple[list["Agreement"], str]:
    """When onnx2tf's SavedModel/TFLite fail agreement (or do not run), export them from the
    Keras model instead, and ship those if more of them pass. Updates ``manifest.artifacts``;
    returns the agreement of what is shipped and a note ("" when nothing changed)."""
    tf_formats = [a.format for a in manifest.artifacts
                  if a.format in formats_of_step("tf") and a.converter == "onnx2tf"]
    failed = [a for a in agreement if a.artifact in tf_formats and not a.passed]
    if not failed:
        return agreement, ""
    what = "onnx2tf's " + ", ".join(f"{a.artifact} ({_why(a)})" for a in failed)
    trial = stage / KERAS_STAGE
    trial.mkdir()
    try:
        stem = Path(manifest.artifact("onnx").path).stem
        try:
            keras_path = _keras_model(stage, manifest, trial, stem, step)
        except Exception as exc:  # noqa: BLE001  an op the builder lacks: onnx2tf's kept, said why
            raise_if_exhausted(exc)
            from converters.errors import error_line

            return agreement, f"{what}; no Keras model to export instead ({error_line(exc)})"
        try:
            trial_records = keras_step(keras_path, trial, stem, step)
        except ConversionError as exc:
            return agreement, f"{what}; the Keras export failed too ({exc})"
        trial_records = [r for r in trial_records if r.format in tf_formats]
        ours = check(trial, dataclasses.replace(manifest, artifacts=trial_records))
        if _passed(ours, tf_formats) <= _passed(agreement, tf_formats):
            return agreement, f"{what}; the Keras export does no better: onnx2tf's kept"
        records = _move_in(trial, stage, trial_records, stem)
    finally:
        shutil.rmtree(trial, ignore_errors=True)
    manifest.artifacts = [records.get(a.format, a) for a in manifest.artifacts]
    by_format = {a.artifact: a for a in ours}
    merged = [by_format.get(a.artifact, a) for a in agreement]
    return merged, f"{what}: SavedModel/TFLite from the Keras model"


def _keras_model(stage: Path, manifest: "Manifest", trial: Path, stem: str, step: Step) -> Path:
    """The ``.keras`` artifact when it was converted; otherwise one built in ``trial`` only to
    export SavedModel/TFLite from (not shipped: the formats asked for stay those asked for)."""
    if "keras" in {a.format for a in manifest.artifacts}:
        return stage / manifest.artifact("keras").path
    from converters.keras_export import export_keras

    with step("keras", "Keras 3 model, to export SavedModel/TFLite from"):
        return export_keras(stage / manifest.artifact("onnx").path, trial / f"{stem}.keras")


def _why(a: "Agreement") -> str:
    """Why an artifact failed agreement, in a few words."""
    if a.error:
        return f"does not run: {a.error[:120]}"
    return f"max |err| {a.checked_err:.2e} > {a.tolerance:.1e}, top-1 {top1_text(a)}"


def _move_in(trial: Path, stage: Path, records: Sequence["ArtifactRecord"], stem: str
             ) -> dict[str, "ArtifactRecord"]:
    """Move the trial's files over onnx2tf's; their records, relative to ``stage``."""
    moved = {}
    for record in records:
        fmt = record.format
        name = get_format(fmt).path_for(stem)
        target = stage / name
        if target.is_dir():
            shutil.rmtree(target)
        shutil.move(str(trial / name), str(target))
        moved[fmt] = artifact_record(stage, fmt, target, "keras", fp32_kept=record.fp32_kept)
    shutil.move(str(trial / TENSOR_MAP), str(stage / TENSOR_MAP))
    return moved
