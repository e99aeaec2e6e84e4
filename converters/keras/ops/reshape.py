"""Reshape and Flatten, including the batch-merging ones of window and multi-head attention.

A reshape that leaves the batch-dependent axis alone (same batch factor and
the same number of elements in front of it) is a Keras ``Reshape`` of the
other axes, preceded by a ``Permute`` only when the Keras axis order would
change the row-major element order. One that merges the batch with other
axes or splits it off (Swin's ``(batch * windows, 49, C)``, ViT's
``(seq, batch * heads, 64)``) is a ``BatchReshape``: transpose to ONNX order,
reshape with ``-1``, transpose so the batch-dependent axis is first again.
"""
from __future__ import annotations

import math
import keras
import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layout import Const, Sym, plan_reshape
from converters.keras.ops.registry import register
from converters.keras.tensor_layers import BatchReshape


def _static_size(shape: tuple[int | None, ...]) -> int:
    return math.prod(d for d in shape if d is not None)


def resolve_target(node: Node, x: Sym, target: Const) -> tuple[list[int], int]:
    """ONNX target dims (the batch-dependent one holding its factor) and that axis."""
    dims, dynamic = target.ints(), [bool(v) for v in target.mask().reshape(-1)]
    in_shape = x.onnx_shape
    for i, d in enumerate(dims):
        if d == 0 and node.attr("allowzero", 0):
            raise node.unsupported("allowzero=1 with a zero in the target shape")
        if d == 0:  # copy the input's dimension
            dims[i], dynamic[i] = (x.factor, True) if in_shape[i] is None else (in_shape[i], False)
    batch = [i for i, v in enumerate(dynamic) if v]
    total = _static_size(in_shape) * x.factor  # elements per sample
    if len(batch) > 1:
        raise node.unsupported(f"a target shape with {len(batch)} batch-dependent entries")
    if -1 in dims:
        free = dims.index(-1)
        axis = batch[0] if batch else free  # with no batch entry, -1 takes the batch
        known = math.prod(d for i, d in enumerate(dims) if i != free)
        if total % known:
            raise node.unsupported(f"a reshape of {in_shape} to {dims} mixing in the batch axis")
        dims[free] = total // known
        return dims, axis
    if not batch:
        raise node.unsupported(f"a reshape to the fixed shape {dims}: the batch is dynamic")
    if math.prod(dims) != total:
        raise node.unsupported(f"a reshape of {in_shape} to {dims} that mixes in the batch axis")
    return dims, batch[0]


def reshape_to(ctx: BuildContext, node: Node, x: Sym, dims: list[int], axis: int) -> None:
    """Emit the reshape of ``x`` to ``dims``; ``dims[axis]`` is the output's batch factor."""
    in_shape, src = x.onnx_shape, x.batch_axis
    if x.factor == dims[axis] and _static_size(in_shape[:src]) == math.prod(dims[:axis]):
        _keras_reshape(ctx, node, x, dims, axis)
        return
    to_keras = (axis, *(a for a in range(len(dims)) if a != axis))
    target = [-1 if a == axis else d for a, d in enumerate(dims)]
    layer = BatchReshape(list(np.argsort(x.perm)), target, list(to_keras),
                         name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, to_keras, factor=dims[axis])


def _keras_reshape(ctx: BuildContext, node: Node, x: Sym, dims: list[int], axis: int) -> None:
    """Plan with the batch-dependent axes moved first: the other axes reshape among themselves."""
    order_in = (x.batch_axis, *(a for a in range(x.rank) if a != x.batch_axis))
    order_out = (axis, *(a for a in range(len(dims)) if a != axis))
    try:
        plan = plan_reshape(tuple(x.onnx_shape[a] for a in order_in),
                            tuple(order_in.index(a) for a in x.perm),
                            (0, *(dims[a] for a in order_out[1:])))
    except ValueError as exc:
        raise node.unsupported(str(exc)) from None
    if plan.before is not None:
        x = ctx.to_layout(node, x, tuple(order_in[a] for a in plan.before))
    layer = keras.layers.Reshape(plan.keras_shape, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, tuple(order_out[a] for a in plan.perm))


@register("Reshape", note="batch axis anywhere; merging it with other axes too")
def reshape(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    dims, axis = resolve_target(node, x, ctx.const(node, 1))
    if axis == x.batch_axis and dims == [x.factor if d is None else d for d in x.onnx_shape]:
        ctx.bind(node, x)  # a no-op reshape: no layer
        return
    reshape_to(ctx, node, x, dims, axis)


@register("Flatten")
def flatten(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    split = node.attr("axis", 1) % x.rank
    shape_in = x.onnx_shape
    if x.batch_axis < split:
        dims, axis = [x.factor * _static_size(shape_in[:split]), math.prod(shape_in[split:])], 0
    else:
        dims, axis = [math.prod(shape_in[:split]), x.factor * _static_size(shape_in[split:])], 1
    reshape_to(ctx, node, x, dims, axis)
