"""Masks and broadcasts: Where on model tensors, Expand and Tile of a tensor, Expand or
ConstantOfShape to the batch.

ViT expands its class token to ``(batch, 1, 768)``: a ``BatchBroadcast``
layer holds the token as a trainable weight and repeats it over the batch of
the model input, so the parameter stays one variable of PyTorch's shape.
"""
from __future__ import annotations

import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layout import Const, Sym, constant_in_layout, preferred
from converters.keras.ops.registry import register
from converters.keras.tensor_layers import BatchBroadcast, BroadcastTo, Tile, Where


@register("Where")
def where(ctx: BuildContext, node: Node) -> None:
    vals = [ctx.value(node, i) for i in range(3)]
    syms = [v for v in vals if isinstance(v, Sym)]
    shapes = [tuple(d or 1 for d in v.onnx_shape) if isinstance(v, Sym) else v.value.shape
              for v in vals]
    out = np.broadcast_shapes(*shapes)
    lead = next((s for s in syms if tuple(d or 1 for d in s.onnx_shape) == out), None)
    if lead is None or any(s.rank != lead.rank for s in syms):
        raise node.unsupported("operands that do not broadcast to one model tensor's shape")
    constants, dtypes, tensors = {}, {}, []
    for i, v in enumerate(vals):
        if isinstance(v, Sym):
            tensors.append(ctx.to_layout(node, v, lead.perm).tensor)
            continue
        value = constant_in_layout(v.value, lead.perm)
        if v.is_dynamic or value.shape[0] != 1:
            raise node.unsupported(f"operand {i} varies along the batch axis")
        dtype = "bool" if i == 0 else ("float32" if np.issubdtype(value.dtype, np.floating)
                                       else value.dtype.name)
        constants[str(i)], dtypes[str(i)] = value.astype(dtype), dtype
    layer = Where(constants, dtypes, name=ctx.layer_name(node))
    ctx.emit(node, layer, tensors if len(tensors) > 1 else tensors[0], lead.perm)


@register("Expand")
def expand(ctx: BuildContext, node: Node) -> None:
    x, target = ctx.value(node, 0), ctx.const(node, 1)
    if isinstance(x, Sym):
        expand_tensor(ctx, node, x, target)
    else:
        batch_constant(ctx, node, x, target)


def expand_tensor(ctx: BuildContext, node: Node, x: Sym, target: Const) -> None:
    """A model tensor broadcast along its static axes (``F.normalize``'s ``expand_as``);
    its batch axis stays as it is (the target's entry there is 1 or the same batch)."""
    dims, mask = target.ints(), [bool(m) for m in target.mask().reshape(-1)]
    if len(dims) != x.rank:
        raise node.unsupported(f"expanding a rank-{x.rank} tensor to rank {len(dims)}")
    out = list(x.onnx_shape)
    for axis, (dim, dynamic) in enumerate(zip(dims, mask)):
        if axis == x.batch_axis:
            if not (dim == 1 and not dynamic) and not (dynamic and dim == x.factor):
                raise node.unsupported("expanding along the batch axis")
        elif dynamic:
            raise node.unsupported("a batch-dependent size on a static axis")
        elif out[axis] not in (1, dim) and dim != 1:
            raise node.unsupported(f"expanding size {out[axis]} to {dim}")
        else:
            out[axis] = max(out[axis], dim)
    shape = [out[a] for a in x.perm[1:]]
    ctx.emit(node, BroadcastTo(shape, name=ctx.layer_name(node)), x.tensor, x.perm)


@register("Tile", note="of a model tensor along static axes (repeat_interleave's)")
def tile(ctx: BuildContext, node: Node) -> None:
    x, repeats = ctx.sym(node), ctx.const(node, 1)
    if repeats.is_dynamic or len(repeats.ints()) != x.rank:
        raise node.unsupported("repeats that depend on the batch or do not match the rank")
    if repeats.ints()[x.batch_axis] != 1:
        raise node.unsupported("repeating along the batch axis")
    keras_repeats = [repeats.ints()[a] for a in x.perm[1:]]
    ctx.emit(node, Tile(keras_repeats, name=ctx.layer_name(node)), x.tensor, x.perm)


@register("ConstantOfShape")
def constant_of_shape(ctx: BuildContext, node: Node) -> None:
    fill = node.attr("value")
    fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill).reshape(-1)
    batch_constant(ctx, node, Const(fill.reshape(())), ctx.const(node, 0))


def batch_constant(ctx: BuildContext, node: Node, value: Const, target: Const) -> None:
    """``value`` broadcast to ``target``, whose one batch-dependent entry holds the factor."""
    dims, mask = target.ints(), [bool(m) for m in target.mask().reshape(-1)]
    rank = max(len(dims), value.value.ndim)
    dims, mask = [1] * (rank - len(dims)) + dims, [False] * (rank - len(mask)) + mask
    if mask.count(True) != 1 or value.is_dynamic:
        raise node.unsupported("a target shape with other than one batch-dependent entry")
    axis = mask.index(True)
    array = value.value.reshape((1,) * (rank - value.value.ndim) + value.value.shape)
    if array.shape[axis] != 1:
        raise node.unsupported("a constant that varies along the batch axis")
    factor, dims[axis] = dims[axis], 1
    perm = preferred(rank) if axis == 0 else (axis, *(a for a in range(rank) if a != axis))
    full = constant_in_layout(np.broadcast_to(array, np.broadcast_shapes(array.shape, dims)), perm)
    ref = ctx.values[ctx.graph.inputs[0][0]]  # the model input: factor 1, batch first
    name = ctx.layer_name(node)
    if value.weight is not None and np.issubdtype(full.dtype, np.floating):
        layer = BatchBroadcast(list(full.shape), factor, name=name)
        ctx.emit(node, layer, ref.tensor, perm, weights=[full], factor=factor)
    else:
        layer = BatchBroadcast(list(full.shape), factor, constant=full, name=name)
        ctx.emit(node, layer, ref.tensor, perm, factor=factor)
