"""The ONNX graph as the spine of alignment: every tensor, its op, module and depth."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TensorSite:
    name: str  # ONNX tensor name (a node output)
    node: str  # ONNX node name
    op: str
    module: str  # full PyTorch module path of the node ("" for top-level functional ops)
    depth: int  # node index in topological order


@dataclass(frozen=True)
class GraphIndex:
    sites: tuple[TensorSite, ...]

    def by_name(self) -> dict[str, TensorSite]:
        return {s.name: s for s in self.sites}

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
    Constant nodes are left out: they are not activations.
    """
    import onnx

    from converters.onnx_names import ModulePaths

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    float_type = onnx.TensorProto.FLOAT
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*proto.graph.value_info, *proto.graph.output]}
    paths = ModulePaths(frozenset(t.name for t in proto.graph.initializer))
    sites = []
    for depth, node in enumerate(proto.graph.node):
        if node.op_type == "Constant":
            continue
        module = paths.of_node(node.name, tuple(node.input))
        sites.extend(TensorSite(out, node.name, node.op_type, module, depth)
                     for out in node.output if out and types.get(out) == float_type)
    return GraphIndex(tuple(sites))
