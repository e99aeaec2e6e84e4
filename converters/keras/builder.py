"""ONNX -> Keras 3: one Keras layer per PyTorch layer, NHWC, weights as variables."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from converters.keras.context import BuildContext, TensorRef
from converters.keras.graph import Node, OnnxGraph, UnsupportedOpError, load_graph
from converters.keras.layout import Const, Sym, preferred
from converters.keras.naming import ModulePaths
from converters.keras.ops import FOLDERS, HANDLERS, SUPPORTED_OPS


@dataclass(frozen=True)
class KerasConversion:
    """The Keras model and how it lines up with the ONNX graph and the PyTorch modules.

    ``layer_map``: ONNX node name -> the Keras layer that computes it.
    ``tensors``: ONNX tensor name -> Keras layer output and its layout.
    ``module_outputs``: PyTorch module path -> ONNX tensor name of the module's output.
    """

    model: keras.Model
    layer_map: dict[str, str]
    tensors: dict[str, TensorRef]
    module_outputs: dict[str, str]
    input_layout: str = "NHWC"


def onnx_to_keras(onnx_path: Path, *, name: str | None = None) -> KerasConversion:
    """Build a Keras model computing the same outputs as the ONNX file, on NHWC inputs.

    Raises ``UnsupportedOpError`` naming the first node it cannot express.
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
    return KerasConversion(model, ctx.layer_map, ctx.tensors, ctx.module_outputs)


def check_supported(graph: OnnxGraph) -> None:
    supported = ", ".join(SUPPORTED_OPS)
    for node in graph.nodes:
        if node.op_type not in HANDLERS and node.op_type not in FOLDERS:
            raise UnsupportedOpError(node.op_type, node.name, f"the Keras builder supports {supported}")


def convert_node(ctx: BuildContext, node: Node) -> None:
    values = [ctx.values[i] if i else None for i in node.inputs]
    if node.op_type in FOLDERS and all(v is None or isinstance(v, Const) for v in values):
        folded = FOLDERS[node.op_type](node, values)
        weights = [v.weight for v in values if v is not None and v.weight]
        if weights:  # e.g. an Unsqueeze on a bias: the result is still that parameter
            folded = Const(folded.value, folded.dynamic, weights[0])
        ctx.bind(node, folded)
        return
    handler = HANDLERS.get(node.op_type)
    if handler is None:
        raise node.unsupported("only evaluated on values known when the model is built")
    handler(ctx, node)


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
    out = ctx.to_layout(node, value, preferred(value.rank))
    ctx.tensors[name] = TensorRef(out.layer, out.perm)
    return out.tensor


def count_weights(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) scalar counts of the model's variables."""
    count = lambda ws: int(sum(np.prod(w.shape) for w in ws))  # noqa: E731
    return count(model.trainable_weights), count(model.non_trainable_weights)
