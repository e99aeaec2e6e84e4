"""ONNX -> TF SavedModel + TFLite fp32/fp16 through onnx2tf, offline.

onnx2tf transposes the graph to NHWC: the SavedModel and TFLite inputs are
``(N, H, W, 3)``; the logits keep their ``(N, classes)`` shape.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from converters.onnx_io import copy_model
from converters.runners.base import NCHW_TO_NHWC
from zoo.exits import (DISK_FULL_WORDS, DiskFull, UserError, disk_full, disk_nearly_full,
                        raise_if_exhausted)

CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


TENSOR_MAP = "tf_tensor_map.json"


@dataclass(frozen=True)
class TfArtifacts:
    saved_model: Path
    tflite_fp32: Path | None  # None: not made (weights over TFLite's 2 GB, converters.tf_step)
    tflite_fp16: Path | None
    tensor_map: Path  # ONNX tensor name -> TF layer name and layout permutation
    converter: str = "onnx2tf"  # or "keras": exported from the Keras artifact
    # the fp16 file's weights kept in float32 (``converters.tflite_fp16``), one line each;
    # None: not checked (onnx2tf's file as it wrote it)
    fp32_kept: list[str] | None = None


def keep_fp32_weights(fp32: Path, fp16: Path) -> list[str]:
    """``converters.tflite_fp16.keep_fp32_where_fp16_fails``, its ValueError a
    ConversionError: the fp16 file is not the fp32 file's graph, so it cannot be checked."""
    from converters.tflite_fp16 import keep_fp32_where_fp16_fails

    try:
        return keep_fp32_where_fp16_fails(fp32, fp16)
    except ValueError as exc:
        raise ConversionError(f"{fp16.name} cannot be checked for weights float16 cannot "
                              f"hold: {exc}") from None


@contextlib.contextmanager
def _recording_tensor_map(into: dict) -> Iterator[None]:
    """Record onnx2tf's ONNX-tensor -> TF-layer table while it converts.

    onnx2tf keeps that table (with whether it transposed each tensor to NHWC)
    in a local ``tf_layers_dict`` that it hands to ``get_tf_model_outputs``
    and never returns; wrapping that function is the one place to read it.
    Per-layer parity aligns TF and TFLite tensors with this record instead of
    guessing names or permutations afterwards.
    """
    import onnx2tf.onnx2tf as core

    original = core.get_tf_model_outputs
    seen: list[dict] = []

    def spy(*, tf_layers_dict, output_names):
        seen.append(tf_layers_dict)
        return original(tf_layers_dict=tf_layers_dict, output_names=output_names)

    core.get_tf_model_outputs = spy
    try:
        yield
    finally:
        core.get_tf_model_outputs = original
    # read after convert() returns: it renames the output layers to the ONNX output names
    if seen:
        into.update(tensor_map_from_layers(seen[-1]))


def tensor_map_from_layers(tf_layers_dict: dict) -> dict[str, dict]:
    """ONNX tensor -> {tf_layer, tf_output, tf_aliases, op, permutation}.

    ``tf_layer`` outputs the tensor, as its output number ``tf_output`` where the
    layer has several (``tf.split``); ``tf_aliases`` are the other TF ops that
    onnx2tf emitted for the same ONNX node (a Conv is ``tf.nn.convolution``
    then a bias ``tf.math.add``), found by walking back from ``tf_layer`` to
    the layers of other ONNX tensors. TFLite's fused tensor names refer to them.
    """
    primary = {}
    for name, info in tf_layers_dict.items():
        history = getattr(info.get("tf_node"), "_keras_history", None)
        if history is not None:  # None: a constant folded away by onnx2tf
            primary[name] = (history, info)
    owned = {history.layer.name for history, _ in primary.values()}
    out = {}
    for name, (history, info) in primary.items():
        layer = history.layer
        rank = len(info.get("shape") or [])
        perm = list(NCHW_TO_NHWC) if info.get("nhwc") and rank == 4 else None
        # onnx2tf renames tensors that start with "/" to "wa/..."; keep the ONNX name.
        onnx_name = name[2:] if name.startswith("wa/") else name
        out[onnx_name] = {"tf_layer": layer.name, "tf_output": history.tensor_index,
                          "tf_aliases": _own_layers(layer, owned),
                          "op": info.get("optype", ""), "permutation": perm}
    return out


def _own_layers(layer, owned: set[str]) -> list[str]:
    """Layers feeding ``layer`` up to (not into) layers that compute other ONNX tensors."""
    found, stack = [], [layer]
    while stack:
        for node in getattr(stack.pop(), "_inbound_nodes", [])[:1]:
            inbound = node.inbound_layers
            for parent in inbound if isinstance(inbound, (list, tuple)) else [inbound]:
                if parent.name not in owned and parent.name not in found:
                    found.append(parent.name)
                    stack.append(parent)
    return found


def write_calibration_file(images: Sequence[np.ndarray], folder: Path) -> Path:
    """onnx2tf's calibration sample (20 x 128 x 128 x 3, RGB in [0, 1]) from real photos.

    onnx2tf downloads this file unless it is in the working directory.
    """
    from PIL import Image

    if not images:
        raise ValueError("no images to build the onnx2tf calibration file from")
    batch = []
    for i in range(20):
        img = Image.fromarray(images[i % len(images)]).convert("RGB").resize((128, 128))
        batch.append(np.asarray(img, dtype=np.float32) / 255.0)
    path = folder / CALIBRATION_FILE
    np.save(path, np.stack(batch))
    return path


@contextlib.contextmanager
def _cwd_and_log(path: Path, log_file: Path) -> Iterator[None]:
    """Run in ``path`` with stdout/stderr (Python and C++) going to ``log_file``.

    onnx2tf prints every variable of the SavedModel; the log keeps it for errors.
    """
    import sys

    old = os.getcwd()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_file.open("w") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        os.chdir(path)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.chdir(old)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class ConversionError(UserError, RuntimeError):
    """A converter step failed; the message says which and where its log is."""


def _run_onnx2tf(onnx_path: Path, work: Path, calibration_images: Sequence[np.ndarray], *,
                 save: bool) -> tuple[object, dict[str, dict]]:
    """One onnx2tf call in ``work`` (offline); returns its tf_keras model and tensor map."""
    from converters.tf_compat import preload_triton

    preload_triton()
    import onnx2tf

    work = work.resolve()  # onnx2tf runs with ``work`` as its cwd
    work.mkdir(parents=True, exist_ok=True)
    write_calibration_file(calibration_images, work)
    # onnx2tf rewrites its input file (shape inference); keep the ONNX artifact untouched.
    private = copy_model(onnx_path, work / onnx_path.name)
    edge_padded = _edge_pad_max_pools(private)
    log_file = work.parent / "onnx2tf.log"
    tensor_map: dict[str, dict] = {}
    try:
        with _cwd_and_log(work, log_file), _recording_tensor_map(tensor_map):
            model = onnx2tf.convert(
                input_onnx_file_path=str(private),
                output_folder_path=str(work),
                copy_onnx_input_output_names_to_tflite=True,
                output_signaturedefs=True,
                not_use_onnxsim=True,  # our graph is already folded; onnxsim would fuse BN away
                disable_model_save=not save,
                non_verbose=True,
            )
    except (Exception, SystemExit) as exc:  # onnx2tf calls sys.exit on unsupported ops
        _stop_if_out_of_disk(exc, log_file)
        raise ConversionError(f"onnx2tf failed on {onnx_path.name}: {_last_error(log_file, exc)}"
                              ) from None
    for name in edge_padded:  # not an ONNX tensor of the artifact
        tensor_map.pop(name, None)
    return model, tensor_map


def _stop_if_out_of_disk(exc: BaseException, log_file: Path) -> None:
    """Raise ``DiskFull`` (or ``OutOfMemory``) when that is why onnx2tf failed: its log, or
    the file system left with almost nothing free, says so even where onnx2tf turned the
    OS error into its own exit. Never a converter failure to fall back from."""
    tail = log_file.read_text(errors="replace")[-20000:] if log_file.exists() else ""
    if (disk_full(exc) or any(w in tail for w in DISK_FULL_WORDS)
            or disk_nearly_full(log_file.parent)):
        raise DiskFull(f"no space left on device under {log_file.parent.parent} while onnx2tf "
                       "wrote its files: free some space or write elsewhere (--out)") from exc
    raise_if_exhausted(exc)


def _edge_pad_max_pools(path: Path) -> list[str]:
    """MaxPool pads as edge padding in the ONNX file onnx2tf reads (``converters.pool_pads``:
    exact, and int8-quantizable where onnx2tf's -inf constant is not); the tensors added."""
    import onnx

    from converters.onnx_io import load_structure
    from converters.pool_pads import edge_pad_max_pools

    model = load_structure(path)  # external weights stay referenced, in the same folder
    added = edge_pad_max_pools(model)
    if added:
        onnx.save(model, str(path))
    return added


def convert_onnx_to_tf(onnx_path: Path, out_dir: Path, *, calibration_images: Sequence[np.ndarray],
                       keep_fp32: bool = True) -> TfArtifacts:
    """Write ``saved_model/``, ``<stem>_float32.tflite`` and ``<stem>_float16.tflite`` to
    ``out_dir``; ``keep_fp32``: with the weights float16 cannot hold back in float32."""
    work = out_dir / "onnx2tf"
    _, tensor_map = _run_onnx2tf(onnx_path, work, calibration_images, save=True)
    stem = onnx_path.stem
    saved_model = out_dir / "saved_model"
    for name in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
        if (work / name).exists():
            saved_model.mkdir(exist_ok=True)
            shutil.move(str(work / name), str(saved_model / name))
    fp32 = out_dir / f"{stem}_float32.tflite"
    fp16 = out_dir / f"{stem}_float16.tflite"
    shutil.move(str(work / fp32.name), str(fp32))
    shutil.move(str(work / fp16.name), str(fp16))
    shutil.rmtree(work)
    kept = keep_fp32_weights(fp32, fp16) if keep_fp32 else None
    map_path = out_dir / TENSOR_MAP
    map_path.write_text(json.dumps(tensor_map, indent=1) + "\n")
    return TfArtifacts(saved_model, fp32, fp16, map_path, fp32_kept=kept)


def build_tf_keras_graph(onnx_path: Path, work: Path, calibration_images: Sequence[np.ndarray]
                         ) -> tuple[object, dict[str, dict]]:
    """onnx2tf's in-memory tf_keras graph (what its SavedModel is saved from) and tensor map.

    Layer names are numbered per Keras session, so the map is taken from this
    same call rather than from the one recorded at conversion.
    """
    from converters.tf_compat import preload_triton

    preload_triton()  # TensorFlow loaded quietly before tf_keras loads it
    import tf_keras

    tf_keras.backend.clear_session()
    return _run_onnx2tf(onnx_path, work, calibration_images, save=False)


def _last_error(log_file: Path, exc: BaseException) -> str:
    """onnx2tf's own ERROR lines (they name the op and node), else the exception."""
    import re

    text = log_file.read_text(errors="replace") if log_file.exists() else ""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in text.splitlines()]
    errors = [ln.removeprefix("ERROR:").strip() for ln in lines if ln.startswith("ERROR:")
              and "trace log" not in ln and "input_onnx_file_path" not in ln]  # our temp copy
    return "; ".join(errors[:3]) if errors else f"{exc.__class__.__name__}: {exc}"
