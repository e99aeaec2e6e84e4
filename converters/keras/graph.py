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
    return OnnxGraph(fuse_gelu(fuse_matmul_bias(nodes, inits), inits), inits, inputs, outputs)


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


def _consumers(nodes: tuple[Node, ...]) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {}
    for n in nodes:
        for i in n.inputs:
            out.setdefault(i, []).append(n)
    return out


def _scalar_consts(nodes: tuple[Node, ...], inits: dict[str, np.ndarray]) -> dict[str, float]:
    """Tensor name -> value, for the one-element constants (initializers and Constant nodes)."""
    found = {n.outputs[0]: n.attr("value") for n in nodes if n.op_type == "Constant"}
    found.update(inits)
    return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in found.items()
            if v is not None and np.asarray(v).size == 1}


def fuse_gelu(nodes: tuple[Node, ...], inits: dict[str, np.ndarray]) -> tuple[Node, ...]:
    """The exact GELU that opset 17 spells out, ``x * 0.5 * (1 + Erf(x / sqrt 2))`` (either
    order of the two products; ``x * (1 / sqrt 2)`` too), becomes one ``Gelu`` node.

    The Keras model then holds one GELU activation layer, which TensorFlow Lite converts to
    its GELU builtin: ``Erf`` alone is no TFLite builtin, so the composition would not
    convert at all. The absorbed nodes' tensors are computed inside that layer.
    """
    consumers, consts = _consumers(nodes), _scalar_consts(nodes, inits)
    producer = {o: n for n in nodes for o in n.outputs}
    replace: dict[str, Node] = {}
    dropped: set[str] = set()
    for erf in nodes:
        match = erf.op_type == "Erf" and _match_gelu(erf, producer, consumers, consts)
        if not match:
            continue
        x, chain = match
        last = chain[-1]
        name = erf.name[:-3] + "Gelu" if erf.name.endswith("Erf") else f"{erf.name}/Gelu"
        replace[last.name] = Node(name, "Gelu", (x,), last.outputs, {"approximate": "none"},
                                  tuple(n.name for n in chain))
        dropped.update(n.name for n in chain[:-1])
    return tuple(replace.get(n.name, n) for n in nodes if n.name not in dropped)


def _only_consumer(name: str, consumers: dict[str, list[Node]], op_type: str) -> Node | None:
    found = consumers.get(name, [])
    return found[0] if len(found) == 1 and found[0].op_type == op_type else None


def _other(node: Node, name: str) -> str:
    rest = [i for i in node.inputs if i != name]
    return rest[0] if len(rest) == 1 else ""


def _match_gelu(erf: Node, producer: dict[str, Node], consumers: dict[str, list[Node]],
                consts: dict[str, float]) -> tuple[str, list[Node]] | None:
    """(x, the nodes from the scaling of x to the output) of an exact GELU around ``erf``."""
    scale = producer.get(erf.inputs[0])
    if scale is None or len(consumers.get(scale.outputs[0], [])) != 1:
        return None
    x = next((i for i in scale.inputs if i not in consts), "")
    c = consts.get(_other(scale, x), 0.0)
    if not x or not ((scale.op_type == "Div" and scale.inputs[0] == x and abs(c - 2**0.5) < 1e-6)
                     or (scale.op_type == "Mul" and abs(c - 2**-0.5) < 1e-6)):
        return None
    add = _only_consumer(erf.outputs[0], consumers, "Add")
    if add is None or consts.get(_other(add, erf.outputs[0])) != 1.0:
        return None
    mul = _only_consumer(add.outputs[0], consumers, "Mul")
    if mul is None:
        return None
    other = _other(mul, add.outputs[0])
    if other == x:  # (x * (1 + erf)) * 0.5
        half = _only_consumer(mul.outputs[0], consumers, "Mul")
        if half is None or consts.get(_other(half, mul.outputs[0])) != 0.5:
            return None
        return x, [scale, erf, add, mul, half]
    half = producer.get(other)  # (x * 0.5) * (1 + erf)
    if (half is None or half.op_type != "Mul" or x not in half.inputs
            or consts.get(_other(half, x)) != 0.5 or len(consumers.get(other, [])) != 1):
        return None
    return x, [scale, erf, add, half, mul]
