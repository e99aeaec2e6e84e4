"""ONNX -> Keras 3: one Keras layer per PyTorch layer, NHWC, weights as variables."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from converters.keras.context import BuildContext, TensorRef
from converters.keras.graph import Node, OnnxGraph, UnsupportedOpError, load_graph
from converters.keras.layout import Const, Sym, preferred
from converters.keras.naming import ModulePaths
from converters.keras.ops import FOLDERS, HANDLERS, SUPPORTED_OPS

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class KerasConversion:
    """The Keras model and how it lines up with the ONNX graph and the PyTorch modules.

    ``layer_map``: ONNX node name -> the Keras layer that computes it.
    ``tensors``: ONNX tensor name -> Keras layer output and its layout.
    ``module_outputs``: PyTorch module path -> ONNX tensor name of the module's output.
    ``module_inputs``: PyTorch module path -> ONNX tensor name of the module's (first) input.
    """

    model: keras.Model
    layer_map: dict[str, str]
    tensors: dict[str, TensorRef]
    module_outputs: dict[str, str]
    input_layout: str = "NHWC"
    module_inputs: dict[str, str] = field(default_factory=dict)


def onnx_to_keras(onnx_path: Path, *, name: str | None = None) -> KerasConversion:
    """Build a Keras model computing the same outputs as the ONNX file, on NHWC inputs.

    Raises ``UnsupportedOpError`` naming every op it has no handler for (before
    building anything), or the first node a handler cannot express.
    """
    graph = load_graph(Path(onnx_path))
    check_supported(graph)
    ctx = BuildContext(graph, ModulePaths(frozenset(graph.initializers)))
    for init_name, value in graph.initializers.items():
        ctx.values[init_name] = Const(value, weight=init_name)
    inputs = [_input(ctx, input_name, shape) for input_name, shape in graph.inputs]
    for node in graph.nodes:
        convert_node(ctx, node)
    outputs = [_output(ctx, output_name) for output_name in graph.outputs]
    model = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                        outputs[0] if len(outputs) == 1 else outputs,
                        name=name or Path(onnx_path).stem)
    return KerasConversion(model, ctx.layer_map, ctx.tensors, ctx.module_outputs,
                           module_inputs=ctx.module_inputs)


def find_unsupported(onnx_model: "onnx.ModelProto | OnnxGraph | Path | str"
                     ) -> dict[str, list[str]]:
    """Every ONNX op type with no handler or folder -> its node names, in graph order."""
    if isinstance(onnx_model, OnnxGraph):
        named = [(n.op_type, n.name) for n in onnx_model.nodes]
    elif isinstance(onnx_model, (str, Path)):
        return find_unsupported(load_graph(Path(onnx_model)))
    else:
        named = [(n.op_type, n.name or f"{n.op_type}_{i}")
                 for i, n in enumerate(onnx_model.graph.node)]
    missing: dict[str, list[str]] = {}
    for op_type, node_name in named:
        if op_type not in HANDLERS and op_type not in FOLDERS:
            missing.setdefault(op_type, []).append(node_name)
    return missing


def check_supported(graph: OnnxGraph) -> None:
    """Raise one ``UnsupportedOpError`` naming every missing op, before any layer is built."""
    missing = find_unsupported(graph)
    if missing:
        supported = ", ".join(SUPPORTED_OPS)
        raise UnsupportedOpError.of(missing, f"the Keras builder supports {supported}")


def convert_node(ctx: BuildContext, node: Node) -> None:
    values = [ctx.values[i] if i else None for i in node.inputs]
    if node.op_type in FOLDERS and all(v is None or isinstance(v, Const) for v in values):
        folded = FOLDERS[node.op_type](node, values)
        if folded is not None:
            ctx.bind(node, _keep_weight(folded, values))
            return
    handler = HANDLERS.get(node.op_type)
    ctx.note_module_input(node)
    if handler is None:
        raise node.unsupported("only evaluated on values known when the model is built")
    handler(ctx, node)


def _keep_weight(folded: Const, inputs: list[Sym | Const | None]) -> Const:
    """A parameter reshaped or gathered at build time is still that parameter (a variable)."""
    weights = [v.weight for v in inputs if v is not None and v.weight]
    if weights and np.issubdtype(folded.value.dtype, np.floating):
        return Const(folded.value, folded.dynamic, weights[0])
    return folded


def _input(ctx: BuildContext, name: str, shape: tuple[int | None, ...]) -> keras.KerasTensor:
    if any(d is None for d in shape[1:]):
        raise UnsupportedOpError("Input", name, f"non-batch dimensions must be static, got {shape}")
    perm = preferred(len(shape))
    layer_name = ctx.namer.name("", name)
    tensor = keras.Input(shape=tuple(shape[a] for a in perm[1:]), name=layer_name)
    ctx.values[name] = Sym(tensor, perm, layer_name)
    ctx.tensors[name] = TensorRef(layer_name, perm)
    return tensor


def _output(ctx: BuildContext, name: str) -> keras.KerasTensor:
    value = ctx.values[name]
    if not isinstance(value, Sym):
        raise UnsupportedOpError("Output", name, "the graph output is a constant")
    node = Node(f"/{name}", "Output", (name,), (name,))
    if value.batch_axis != 0 or value.factor != 1:
        raise node.unsupported(f"the output's batch axis is ONNX axis {value.batch_axis} "
                               f"with {value.factor} entries per sample")
    out = ctx.to_layout(node, value, preferred(value.rank))
    ctx.tensors[name] = TensorRef(out.layer, out.perm)
    return out.tensor


def count_weights(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) scalar counts of the model's variables."""
    count = lambda ws: int(sum(np.prod(w.shape) for w in ws))  # noqa: E731
    return count(model.trainable_weights), count(model.non_trainable_weights)
