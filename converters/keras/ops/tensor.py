"""Axis-sensitive ops on model tensors: layouts are translated, never guessed.

ONNX axes are mapped to Keras axes through each tensor's recorded layout.
Transpose only relabels the layout; Reshape and Flatten permute first only
when the Keras axis order would change the row-major element order.
"""
from __future__ import annotations

import math

import keras
import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layers import ConstantPadding2D, Slice, Take
from converters.keras.layout import (Const, Sym, after_inserting, after_removing,
                                     after_transpose, channels_last, plan_reshape)


def shape(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    dims = x.onnx_shape[node.attr("start", 0):node.attr("end", None)]
    value = np.array([1 if d is None else d for d in dims], dtype=np.int64)
    ctx.bind(node, Const(value, np.array([d is None for d in dims])))


def identity(ctx: BuildContext, node: Node) -> None:
    ctx.bind(node, ctx.sym(node))


def cast(ctx: BuildContext, node: Node) -> None:
    from onnx import helper

    if not np.issubdtype(helper.tensor_dtype_to_np_dtype(node.attr("to")), np.floating):
        raise node.unsupported("casting a model tensor to a non-float type")
    identity(ctx, node)


def transpose(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    perm = tuple(node.attr("perm", list(reversed(range(x.rank)))))
    if perm[0] != 0:
        raise node.unsupported(f"a transpose that moves the batch axis (perm={list(perm)})")
    ctx.bind(node, Sym(x.tensor, after_transpose(x.perm, perm), x.layer))


def _reshape_to(ctx: BuildContext, node: Node, x: Sym, out_shape: tuple[int, ...]) -> None:
    try:
        plan = plan_reshape(x.onnx_shape, x.perm, out_shape)
    except ValueError as exc:
        raise node.unsupported(str(exc)) from None
    if plan.before is not None:
        x = ctx.to_layout(node, x, plan.before)
    layer = keras.layers.Reshape(plan.keras_shape, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, plan.perm)


def reshape(ctx: BuildContext, node: Node) -> None:
    x, target = ctx.sym(node), ctx.const(node, 1)
    dims, dynamic = target.ints(), list(target.mask().reshape(-1))
    if any(dynamic[1:]) or node.attr("allowzero", 0):
        raise node.unsupported("a target shape with dynamic entries other than the batch")
    in_shape = x.onnx_shape
    dims = [in_shape[i] if d == 0 else d for i, d in enumerate(dims)]
    static = math.prod(in_shape[1:])
    if dims[0] not in (None, -1) and not dynamic[0]:
        raise node.unsupported(f"a reshape to {dims} that does not keep the batch axis")
    rest = dims[1:]
    if -1 in rest:
        rest[rest.index(-1)] = static // -math.prod(rest)
    if math.prod(rest) != static:
        raise node.unsupported(f"a reshape of {in_shape} to {dims} that mixes in the batch axis")
    _reshape_to(ctx, node, x, (0, *rest))


def flatten(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    axis = node.attr("axis", 1) % x.rank
    if axis == 0:
        raise node.unsupported("Flatten(axis=0) merges the batch axis")
    shape_in = x.onnx_shape
    _reshape_to(ctx, node, x, (0, *shape_in[1:axis], math.prod(shape_in[axis:])))


def concat(ctx: BuildContext, node: Node) -> None:
    parts = [ctx.sym(node, i) for i in range(len(node.inputs))]
    perm = parts[0].perm
    parts = [ctx.to_layout(node, p, perm) for p in parts]
    axis = parts[0].keras_axis(node.attr("axis"))
    layer = keras.layers.Concatenate(axis=axis, name=ctx.layer_name(node))
    ctx.emit(node, layer, [p.tensor for p in parts], perm)


def slice_(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    starts, ends = ctx.const(node, 1).ints(), ctx.const(node, 2).ints()
    axes_c, steps_c = ctx.const(node, 3), ctx.const(node, 4)
    axes = axes_c.ints() if axes_c is not None else list(range(len(starts)))
    steps = steps_c.ints() if steps_c is not None else [1] * len(starts)
    bounds = []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        size = x.onnx_shape[axis % x.rank]
        if size is None:
            raise node.unsupported("slicing the batch axis")
        start, stop, step = slice(start, end, step).indices(size)
        bounds.append((x.keras_axis(axis), start, stop, step))
    layer = Slice(*(list(col) for col in zip(*bounds)), name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)


def gather(ctx: BuildContext, node: Node) -> None:
    x, indices = ctx.sym(node), ctx.const(node, 1)
    axis = node.attr("axis", 0) % x.rank
    if axis == 0 or indices.value.ndim > 1:
        raise node.unsupported("only constant scalar or 1-D indices along a non-batch axis")
    size = x.onnx_shape[axis]
    picked = [i % size for i in indices.ints()]
    scalar = indices.value.ndim == 0
    perm = after_removing(x.perm, [axis]) if scalar else x.perm
    layer = Take(x.keras_axis(axis), picked[0] if scalar else picked, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, perm)


def _axes(ctx: BuildContext, node: Node) -> list[int] | None:
    c = ctx.const(node, 1)
    return c.ints() if c is not None else node.attr("axes")


def unsqueeze(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    rank = x.rank + len(_axes(ctx, node))
    axes = sorted(a % rank for a in _axes(ctx, node))
    if 0 in axes:
        raise node.unsupported("a new axis in front of the batch axis")
    perm = after_inserting(x.perm, axes)
    layer = keras.layers.Reshape((*x.keras_shape[1:], *[1] * len(axes)), name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, perm)


def squeeze(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    shape_in = x.onnx_shape
    axes = _axes(ctx, node)
    axes = sorted(a % x.rank for a in axes) if axes is not None else [
        a for a, d in enumerate(shape_in) if d == 1]
    if 0 in axes or any(shape_in[a] != 1 for a in axes):
        raise node.unsupported(f"squeezing axes {axes} of a tensor of shape {shape_in}")
    keep = [k for k, a in enumerate(x.perm) if a not in axes and k > 0]
    layer = keras.layers.Reshape(tuple(x.keras_shape[k] for k in keep), name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, after_removing(x.perm, axes))


def pad(ctx: BuildContext, node: Node) -> None:
    """Constant padding of H and W (``nn.ZeroPad2d``, ``F.pad``), asymmetric pads included."""
    x = ctx.sym(node)
    if node.attr("mode", "constant") != "constant":
        raise node.unsupported(f"mode={node.attr('mode')!r} (only constant padding)")
    pads_c, value_c, axes_c = ctx.const(node, 1), ctx.const(node, 2), ctx.const(node, 3)
    pads = pads_c.ints() if pads_c is not None else node.attr("pads")
    axes = [a % x.rank for a in axes_c.ints()] if axes_c is not None else list(range(x.rank))
    width = dict(zip(axes, zip(pads[:len(axes)], pads[len(axes):])))
    if x.rank != 4 or any(p < 0 for p in pads) or any(
            width[a] != (0, 0) for a in width if a not in (2, 3)):
        raise node.unsupported(f"pads {pads} (only non-negative H/W pads of an NCHW tensor)")
    value = float(np.asarray(value_c.value).reshape(-1)[0]) if value_c is not None else 0.0
    padding = (width.get(2, (0, 0)), width.get(3, (0, 0)))
    x = ctx.to_layout(node, x, channels_last(4))
    name = ctx.layer_name(node)
    layer = (keras.layers.ZeroPadding2D(padding, name=name) if value == 0.0
             else ConstantPadding2D(padding, value, name=name))
    ctx.emit(node, layer, x.tensor, x.perm)


def split(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    axis = node.attr("axis", 0) % x.rank
    size = x.onnx_shape[axis]
    if axis == 0:
        raise node.unsupported("splitting the batch axis")
    sizes_c = ctx.const(node, 1)
    sizes = sizes_c.ints() if sizes_c is not None else node.attr("split")
    if sizes is None:
        n = len(node.outputs)
        sizes = [-(-size // n)] * (n - 1) + [size - -(-size // n) * (n - 1)]
    start = 0
    for i, length in enumerate(sizes):
        layer = Slice([x.keras_axis(axis)], [start], [start + length], [1],
                      name=ctx.layer_name(node, str(i) if i else ""))
        out = Sym(ctx.call(layer, x.tensor), x.perm, layer.name)
        ctx.layer_map.setdefault(node.name, layer.name)
        ctx.bind(node, out, output=i)
        start += length


HANDLERS = {
    "Shape": shape,
    "Identity": identity,
    "Dropout": identity,
    "Cast": cast,
    "Transpose": transpose,
    "Reshape": reshape,
    "Flatten": flatten,
    "Concat": concat,
    "Slice": slice_,
    "Gather": gather,
    "Unsqueeze": unsqueeze,
    "Squeeze": squeeze,
    "Split": split,
    "Pad": pad,
}
