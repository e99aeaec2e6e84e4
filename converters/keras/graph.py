"""The ONNX side: typed nodes, initializers and the one graph rewrite the builder needs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx


class UnsupportedOpError(ValueError):
    """ONNX nodes the Keras builder cannot express; names each op type and its first node.

    ``op_type``/``node_name`` are the first; ``missing`` maps every op type
    found missing to all its nodes (one entry when a handler refuses a node).
    """

    def __init__(self, op_type: str, node_name: str, reason: str = "",
                 missing: dict[str, list[str]] | None = None) -> None:
        self.op_type = op_type
        self.node_name = node_name
        self.missing = missing or {op_type: [node_name]}
        detail = f": {reason}" if reason else ""
        where = ", ".join(f"{op!r} at node {nodes[0]!r}"
                          + (f" (+{len(nodes) - 1} more)" if len(nodes) > 1 else "")
                          for op, nodes in self.missing.items())
        plural = "s" if len(self.missing) > 1 else ""
        super().__init__(f"unsupported ONNX op{plural} {where}{detail}")

    @classmethod
    def of(cls, missing: dict[str, list[str]], reason: str = "") -> "UnsupportedOpError":
        op, nodes = next(iter(missing.items()))
        return cls(op, nodes[0], reason, missing)


@dataclass(frozen=True)
class Node:
    """One ONNX node; absent optional inputs are ``""`` as in ONNX."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)
    # Names of further ONNX nodes folded into this one (MatMul + bias Add).
    absorbed: tuple[str, ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def unsupported(self, reason: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.op_type, self.name, reason)


@dataclass(frozen=True)
class OnnxGraph:
    nodes: tuple[Node, ...]
    initializers: dict[str, np.ndarray]
    inputs: tuple[tuple[str, tuple[int | None, ...]], ...]  # graph inputs that are not initializers
    outputs: tuple[str, ...]


def load_graph(path: Path) -> OnnxGraph:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    nodes = tuple(_node(n, i) for i, n in enumerate(proto.graph.node))
    inputs = tuple((v.name, _value_shape(v)) for v in proto.graph.input if v.name not in inits)
    outputs = tuple(v.name for v in proto.graph.output)
    return OnnxGraph(fuse_matmul_bias(nodes, inits), inits, inputs, outputs)


def _node(proto: "onnx.NodeProto", index: int) -> Node:
    from onnx import helper, numpy_helper

    attrs: dict[str, Any] = {}
    for a in proto.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif a.type == a.TENSOR:
            value = numpy_helper.to_array(value)
        attrs[a.name] = value
    name = proto.name or f"{proto.op_type}_{index}"
    return Node(name, proto.op_type, tuple(proto.input), tuple(proto.output), attrs)


def _value_shape(value: "onnx.ValueInfoProto") -> tuple[int | None, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def fuse_matmul_bias(nodes: tuple[Node, ...], inits: dict[str, np.ndarray]) -> tuple[Node, ...]:
    """``MatMul(x, W) -> Add(b)`` with initializers W, b becomes one 3-input MatMul.

    The TorchScript exporter writes ``nn.Linear`` on a >2-D input that way;
    fusing keeps one Keras Dense layer per PyTorch Linear, bias included.
    """
    consumers: dict[str, list[Node]] = {}
    for n in nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    fused: dict[str, Node] = {}
    dropped: set[str] = set()
    for n in nodes:
        if n.op_type != "MatMul" or n.inputs[1] not in inits or len(consumers.get(n.outputs[0], [])) != 1:
            continue
        add = consumers[n.outputs[0]][0]
        bias = [i for i in add.inputs if i != n.outputs[0]]
        if add.op_type != "Add" or len(bias) != 1 or bias[0] not in inits:
            continue
        if inits[bias[0]].shape != inits[n.inputs[1]].shape[-1:]:
            continue
        fused[n.name] = Node(n.name, "MatMul", (*n.inputs, bias[0]), add.outputs, n.attrs, (add.name,))
        dropped.add(add.name)
    return tuple(fused.get(n.name, n) for n in nodes if n.name not in dropped)
