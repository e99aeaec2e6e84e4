"""Attention: Softmax, batched MatMul and Einsum of two model tensors.

Both operands of a batched product carry the batch on the same ONNX axis
(Keras axis 0); the others are brought into ONNX order around it, so the
contraction runs over the last two axes as in ONNX.
"""
from __future__ import annotations

import keras

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layout import Sym
from converters.keras.ops.registry import register
from converters.keras.tensor_layers import Einsum, MatMul


@register("Softmax", note="one axis, opset 13+")
def softmax(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    axis = node.attr("axis", -1) % x.rank
    if axis == x.batch_axis:
        raise node.unsupported("a softmax over the batch axis")
    layer = keras.layers.Softmax(axis=x.keras_axis(axis), name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)


def _same_batch(node: Node, operands: list[Sym]) -> None:
    first = operands[0]
    for x in operands[1:]:
        if x.factor != first.factor:
            raise node.unsupported(f"operands with {first.factor} and {x.factor} batch entries "
                                   "per sample")


def batched_matmul(ctx: BuildContext, node: Node) -> None:
    """``a @ b`` of two model tensors of equal rank, e.g. ``softmax(q @ k^T) @ v``."""
    a, b = ctx.sym(node, 0), ctx.sym(node, 1)
    rank = a.rank
    if b.rank != rank or rank < 3:
        raise node.unsupported(f"a product of tensors of ranks {a.rank} and {b.rank} "
                               "(equal ranks of at least 3 are supported)")
    if a.batch_axis != b.batch_axis or a.batch_axis >= rank - 2:
        raise node.unsupported("operands whose batch axes differ or are contracted")
    _same_batch(node, [a, b])
    lead = a.batch_axis
    perm = (lead, *(i for i in range(rank - 2) if i != lead), rank - 2, rank - 1)
    a, b = ctx.to_layout(node, a, perm), ctx.to_layout(node, b, perm)
    ctx.emit(node, MatMul(name=ctx.layer_name(node)), [a.tensor, b.tensor], perm)


def _parse(node: Node, count: int) -> tuple[list[str], str]:
    equation = node.attr("equation", "").replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if not arrow or "." in equation or len(terms) != count:
        raise node.unsupported(f"equation {equation!r} (explicit output, no ellipsis)")
    return terms, output


@register("Einsum", note="explicit output, no ellipsis, batch letter kept")
def einsum(ctx: BuildContext, node: Node) -> None:
    """Rewrites the equation in each operand's Keras axis order: no transposes are added."""
    operands = [ctx.sym(node, i) for i in range(len(node.inputs))]
    terms, output = _parse(node, len(operands))
    batch = {term[x.batch_axis] for term, x in zip(terms, operands) if len(term) == x.rank}
    if any(len(t) != x.rank for t, x in zip(terms, operands)) or len(batch) != 1 \
            or next(iter(batch)) not in output:
        raise node.unsupported("operands must share one batch subscript that the output keeps")
    _same_batch(node, operands)
    keras_terms = ["".join(term[a] for a in x.perm) for term, x in zip(terms, operands)]
    first = output.index(next(iter(batch)))
    perm = (first, *(i for i in range(len(output)) if i != first))
    equation = f"{','.join(keras_terms)}->{''.join(output[a] for a in perm)}"
    layer = Einsum(equation, name=ctx.layer_name(node))
    ctx.emit(node, layer, [x.tensor for x in operands], perm)
