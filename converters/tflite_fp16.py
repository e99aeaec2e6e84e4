"""TFLite fp16 files with the weights float16 cannot hold put back in float32.

TFLite's float16 post-training quantization stores every float constant as float16, after
the converter has folded constants into each other. A layer scale of 1e-6 (timm's and
torchvision's initial value) folded into the 1x1 convolution before it gives weights near
1e-7, far under float16's smallest normal number (6.1e-5): stored as subnormals of one or
two bits, they lose the residual branch (random convnext_zepto_rms: SNR 2.7 dB, cosine 0.78
at the layer-scale Mul; fastvit, efficientformer, swiftformer and inception_next alike).

``keep_fp32_where_fp16_fails`` reads the fp32 and fp16 files of one conversion (the same
graph, but for the fp16 file's DEQUANTIZE ops), and for every float16 constant whose
rounding misses its float32 values by more than ``MAX_REL_ERR`` (relative RMS; float16's own
rounding of normal numbers is about 1.5e-4) or overflows, removes its DEQUANTIZE op and makes
the op's output the float32 constant from the fp32 file. The file grows by two bytes a weight
kept; the manifest lists each one (``ArtifactRecord.fp32_kept``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from zoo.atomic import atomic_path

if TYPE_CHECKING:
    from tensorflow.lite.python import schema_py_generated as schema

MAX_REL_ERR = 1e-3


def keep_fp32_where_fp16_fails(fp32: Path, fp16: Path) -> list[str]:
    """Rewrite ``fp16`` (in place, atomically) with the weights float16 cannot hold taken in
    float32 from ``fp32``; one line per weight kept ([] when none, the file untouched).
    Raises ``ValueError`` when the two files are not one graph."""
    from tensorflow.lite.tools import flatbuffer_utils

    ref = flatbuffer_utils.read_model(str(fp32))
    model = flatbuffer_utils.read_model(str(fp16))
    if len(ref.subgraphs) != len(model.subgraphs):
        raise ValueError(f"{fp16.name} has {len(model.subgraphs)} subgraphs, {fp32.name} "
                         f"{len(ref.subgraphs)}")
    kept: list[tuple[int, str]] = []
    for ref_graph, graph in zip(ref.subgraphs, model.subgraphs):
        kept += _keep_in_subgraph(ref, ref_graph, model, graph, fp32.name)
    if kept:
        _drop_unused_buffers(model)
        with atomic_path(fp16) as tmp:
            flatbuffer_utils.write_model(model, str(tmp))
    return [line for _, line in sorted(kept, key=lambda k: -k[0])]  # the largest first


def _keep_in_subgraph(ref: "schema.ModelT", ref_graph: "schema.SubGraphT",
                      model: "schema.ModelT", graph: "schema.SubGraphT", ref_name: str
                      ) -> list[tuple[int, str]]:
    """Keep one subgraph's float16 weights that fail in float32; (size, line saying which)
    for each."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools.flatbuffer_utils import opcode_to_name

    dequantized = {op.outputs[0]: op for op in graph.operators
                   if opcode_to_name(model, op.opcodeIndex) == "DEQUANTIZE"
                   and graph.tensors[op.inputs[0]].type == schema.TensorType.FLOAT16
                   and model.buffers[graph.tensors[op.inputs[0]].buffer].data is not None}
    ops = [op for op in graph.operators if op.outputs[0] not in dequantized]
    names = [opcode_to_name(model, op.opcodeIndex) for op in ops]
    if names != [opcode_to_name(ref, op.opcodeIndex) for op in ref_graph.operators]:
        raise ValueError(f"its ops, but for DEQUANTIZE, are not those of {ref_name}")
    kept: dict[int, tuple[int, str]] = {}
    checked: set[int] = set()  # a weight several ops read is checked once
    for op, ref_op in zip(ops, ref_graph.operators):
        for t, ref_t in zip(op.inputs, ref_op.inputs):
            if t not in dequantized or t in checked:
                continue
            checked.add(t)
            weights = _constant(ref, ref_graph.tensors[ref_t])
            if weights is None or weights.size != np.prod(graph.tensors[t].shape):
                raise ValueError(f"{ref_name} has no float32 constant of that size where "
                                 f"{_name(graph.tensors[t])} is")
            if why := _fp16_fails(weights):
                buffer = schema.BufferT()
                buffer.data = np.frombuffer(weights.astype("<f4").tobytes(), np.uint8)
                model.buffers.append(buffer)
                graph.tensors[t].buffer = len(model.buffers) - 1
                shape = "x".join(str(int(d)) for d in graph.tensors[t].shape) or "scalar"
                kept[t] = weights.size, f"{_name(graph.tensors[t])} ({shape}): {why}"
    graph.operators = [op for op in graph.operators if op.outputs[0] not in kept]
    return list(kept.values())


def kept_note(fmt: str, kept: list[str]) -> str:
    """One line for the notes: how many weights ``fmt`` keeps in float32, and the first."""
    more = f"; {len(kept) - 1} more in manifest.json" if len(kept) > 1 else ""
    return (f"{fmt} keeps {len(kept)} weight tensor(s) in float32, as float16 cannot hold "
            f"them: {kept[0]}{more}")


def _fp16_fails(weights: np.ndarray) -> str:
    """Why float16 cannot hold ``weights`` ("" when it can)."""
    with np.errstate(over="ignore"):
        rounded = weights.astype(np.float16).astype(np.float32)
    top = float(np.abs(weights).max(initial=0.0))
    if not np.isfinite(rounded).all():
        return f"overflows float16 (max |w| {top:.3g})"
    norm = float(np.linalg.norm(weights))
    err = float(np.linalg.norm(rounded - weights)) / norm if norm else 0.0
    if err <= MAX_REL_ERR:
        return ""
    return f"float16 misses it by {err:.2g} (relative RMS; max |w| {top:.2g}, subnormal)"


def _constant(model: "schema.ModelT", tensor: "schema.TensorT") -> np.ndarray | None:
    from tensorflow.lite.python import schema_py_generated as schema

    data = model.buffers[tensor.buffer].data
    if data is None or tensor.type != schema.TensorType.FLOAT32:
        return None
    return np.frombuffer(bytes(data), "<f4")


def _drop_unused_buffers(model: "schema.ModelT") -> None:
    """Empty the buffers no op reads any more (the float16 copies of the weights kept)."""
    used = {graph.tensors[t].buffer for graph in model.subgraphs
            for op in graph.operators for t in op.inputs if t >= 0}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            if tensor.buffer not in used:
                tensor.buffer = 0
    for i, buffer in enumerate(model.buffers):
        if i and i not in used:
            buffer.data = None


def _name(tensor: "schema.TensorT") -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)
