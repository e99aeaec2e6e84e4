"""ONNX files of any size: protobuf serializes at most 2 GB, so a model whose weights
exceed it keeps them in one external data file beside it (``<name>.onnx.data``), and
every reader here works by path.

``save_onnx`` decides; ``check_onnx`` runs ``onnx.checker`` by path (it cannot take an
in-memory proto over 2 GB); ``load_structure`` reads the graph without the weights;
``scratch_model`` writes a modified graph (every output marked, for a capture) where ONNX
Runtime finds the original weights without copying them.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import onnx

# protobuf's limit on one serialized message, less room for the graph itself
PROTO_LIMIT = 2**31 - 1
EXTERNAL_DATA_ABOVE = PROTO_LIMIT - (64 << 20)
DATA_SUFFIX = ".data"


def data_path(onnx_path: Path) -> Path:
    """The external data file of ``onnx_path``: ``<name>.onnx.data`` beside it."""
    return onnx_path.with_name(onnx_path.name + DATA_SUFFIX)


def weight_bytes(proto: "onnx.ModelProto") -> int:
    """Bytes of the initializers' data, held in the proto or outside it."""
    from onnx import external_data_helper

    total = 0
    for t in proto.graph.initializer:
        if external_data_helper.uses_external_data(t):
            info = {e.key: e.value for e in t.external_data}
            total += int(info.get("length", 0))
        else:
            total += len(t.raw_data) or t.ByteSize()
    return total


def needs_external_data(proto: "onnx.ModelProto") -> bool:
    return weight_bytes(proto) > EXTERNAL_DATA_ABOVE


def save_onnx(proto: "onnx.ModelProto", path: Path) -> list[Path]:
    """Write ``proto`` to ``path`` (its weights to ``data_path(path)`` when they would not
    fit in one protobuf); the files written."""
    import onnx

    path = Path(path)
    data = data_path(path)
    data.unlink(missing_ok=True)  # save_model appends to an existing data file
    if not needs_external_data(proto):
        onnx.save(proto, str(path))
        return [path]
    onnx.save_model(proto, str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=data.name, size_threshold=1024)
    return [path, data]


def external_files(path: Path) -> list[Path]:
    """The external data files ``path`` refers to (none for a self-contained model)."""
    from onnx import external_data_helper

    proto = load_structure(path)
    names = {e.value for t in external_data_helper._get_all_tensors(proto)
             if external_data_helper.uses_external_data(t)
             for e in t.external_data if e.key == "location"}
    return [path.parent / n for n in sorted(names)]


def load_structure(path: Path) -> "onnx.ModelProto":
    """The model without its external weights (their references kept): the graph, the
    shapes and the small tensors held inline."""
    import onnx

    return onnx.load(str(path), load_external_data=False)


def check_onnx(path: Path) -> None:
    """``onnx.checker.check_model`` (full check) by path, so a model over 2 GB is checked."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def infer_shapes(proto: "onnx.ModelProto", **kwargs) -> "onnx.ModelProto":
    """Shape inference of a model read with ``load_structure`` (its weights left out, so
    the proto stays under 2 GB whatever the model's size)."""
    import onnx

    return onnx.shape_inference.infer_shapes(proto, **kwargs)


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(src, dest)


def copy_model(path: Path, dest: Path) -> Path:
    """``path`` and its external data as ``dest`` (data hard-linked where possible)."""
    shutil.copyfile(path, dest)
    for data in external_files(path):
        target = dest.parent / data.name
        if not target.exists():
            _link_or_copy(data, target)
    return dest


@contextlib.contextmanager
def scratch_model(proto: "onnx.ModelProto", beside: Path) -> Iterator[str | bytes]:
    """What ``onnxruntime.InferenceSession`` takes for ``proto``, a modified graph of the
    model at ``beside`` read with ``load_structure``: its bytes, or for a model with
    external data a file in a private folder next to ``beside`` with the data linked in."""
    from onnx import external_data_helper

    if not any(external_data_helper.uses_external_data(t) for t in proto.graph.initializer):
        yield proto.SerializeToString()
        return
    folder = beside.parent / f".{beside.stem}.scratch-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    try:
        for data in external_files(beside):
            _link_or_copy(data, folder / data.name)
        import onnx

        target = folder / beside.name
        onnx.save(proto, str(target))
        yield str(target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
