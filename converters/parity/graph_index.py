"""The ONNX graph as the spine of alignment: every tensor, its op, module and depth."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TensorSite:
    name: str  # ONNX tensor name (a node output)
    node: str  # ONNX node name
    op: str
    module: str  # full PyTorch module path of the node ("" for top-level functional ops)
    depth: int  # node index in topological order
    inputs: tuple[str, ...] = ()  # the node's inputs (tensors, weights, constants)


# ops whose output holds only their inputs' values, moved or joined
MOVES = frozenset({"Concat", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                   "Identity", "Slice", "Split"})


@dataclass(frozen=True)
class GraphIndex:
    sites: tuple[TensorSite, ...]
    # float32 bytes of every site for one image, what a capture holds per image; 0 where
    # shape inference leaves a dimension unknown (Swin's computed Pad)
    bytes_per_image: int = 0

    def by_name(self) -> dict[str, TensorSite]:
        return {s.name: s for s in self.sites}

    def moved_floors(self, floors: dict[str, Any]) -> dict[str, Any]:
        """``floors`` (tensor -> its rounding floor) with a floor for each tensor that only
        moves its inputs' values (``MOVES``) and has none of its own: its float inputs'
        lowest, when each has one. A ``torch.cat`` outside any module (selecsls60's
        ``features.8``) has no PyTorch capture, so no fp32 floor of its own, while the
        tensors it joins have theirs: a concatenation is no rounder than the worst of them."""
        out = dict(floors)
        names = self.by_name()
        for site in self.sites:  # in topological order: a move's inputs are done first
            if site.name in out or site.op not in MOVES:
                continue
            joined = [i for i in site.inputs if i in names]
            if joined and all(i in out for i in joined):
                out[site.name] = min((out[i] for i in joined),
                                     key=lambda d: (not d.nonfinite, d.snr_db))
        return out

    def module_outputs(self, leaf_modules: set[str]) -> dict[str, str]:
        """Leaf module path -> ONNX tensor holding that module's output.

        A module's output is the last tensor computed inside its scope (the
        exporter emits nodes in topological order).
        """
        out: dict[str, str] = {}
        for site in self.sites:
            if site.module in leaf_modules:
                out[site.module] = site.name
        return out


def index_graph(onnx_path: Path) -> GraphIndex:
    """Float node outputs of the ONNX model in order, with their PyTorch module paths.

    Integer tensors (shape arithmetic, e.g. shufflenet's channel shuffle) and
    Constant nodes are left out: they are not activations. Shapes are inferred once, with
    the batch fixed to 1 (types do not depend on it) and ``data_prop`` resolving the shapes
    that Shape/Gather/Concat compute for a Reshape, so the same pass gives the bytes per
    image (``GraphIndex.bytes_per_image``).
    """
    import onnx

    from converters.onnx_io import load_structure
    from converters.onnx_names import ModulePaths

    model = load_structure(onnx_path)  # shapes need no weights, and stay under 2 GB
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    try:
        proto = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - types still come from plain inference
        proto = onnx.shape_inference.infer_shapes(model)
    float_type = onnx.TensorProto.FLOAT
    values = [*proto.graph.value_info, *proto.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    paths = ModulePaths(frozenset(t.name for t in proto.graph.initializer))
    sites = []
    for depth, node in enumerate(proto.graph.node):
        if node.op_type == "Constant":
            continue
        module = paths.of_node(node.name, tuple(node.input))
        sites.extend(TensorSite(out, node.name, node.op_type, module, depth,
                                tuple(i for i in node.input if i))
                     for out in node.output if out and types.get(out) == float_type)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    return GraphIndex(tuple(sites), _bytes_per_image(shapes, [s.name for s in sites]))


def _bytes_per_image(shapes: dict[str, list[int]], names: list[str]) -> int:
    """float32 bytes of the tensors ``names`` at batch 1; 0 when a dimension is unknown
    (Swin's Pad by computed amounts leaves 2037 of swin_s's 2041 tensors so: counted as 1,
    they read as 119 MiB an image)."""
    import numpy as np

    if any(name not in shapes or not all(shapes[name]) for name in names):
        return 0
    return sum(4 * int(np.prod(shapes[name], dtype=np.int64)) for name in names)


def subnormal_in_fp16(onnx_path: Path, node_name: str) -> dict[str, float]:
    """The constant inputs of ONNX node ``node_name`` that float16 can hold only as
    subnormals (every nonzero value below its smallest normal, 6.1e-5): name -> max |x|.
    A layer scale at timm's initial 1e-6 is one; fp16 keeps it to 5 bits (a TFLite fp16 file
    whose converter folded it into the Conv before keeps that Conv's weights in float32
    instead: ``converters.tflite_fp16``; an fp16 file made otherwise may not)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    constants = {i.name: i for i in graph.initializer}
    constants |= {n.output[0]: a.t for n in graph.node if n.op_type == "Constant"
                  for a in n.attribute if a.name == "value"}
    node = next((n for n in graph.node if n.name == node_name), None)
    found = {}
    for name in node.input if node is not None else ():
        if name in constants:
            values = np.abs(numpy_helper.to_array(constants[name]).astype(np.float64))
            top = float(values.max(initial=0))
            if 0 < top < np.finfo(np.float16).tiny:
                found[name] = top
    return found
