"""Axis-sensitive ops on model tensors: layouts are translated, never guessed.

ONNX axes are mapped to Keras axes through each tensor's recorded layout.
Transpose only relabels the layout (Reshape and Flatten live in ``reshape``).
Every op refuses to act along the batch-dependent axis (Keras axis 0).
"""
from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layers import ConstantPadding2D, Slice, Take
from converters.keras.layout import (Const, Sym, after_inserting, after_removing,
                                     after_transpose, channels_last)
from converters.keras.ops.registry import register
from converters.keras.ops.reshape import reshape_to
from converters.keras.tensor_layers import Cast, PadAxes


@register("Shape")
def shape(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    dims = x.onnx_shape[node.attr("start", 0):node.attr("end", None)]
    value = np.array([x.factor if d is None else d for d in dims], dtype=np.int64)
    ctx.bind(node, Const(value, np.array([d is None for d in dims])))


@register("Identity", "Dropout")
def identity(ctx: BuildContext, node: Node) -> None:
    ctx.bind(node, ctx.sym(node))


@register("Cast")
def cast(ctx: BuildContext, node: Node) -> None:
    from onnx import helper

    x = ctx.sym(node)
    to = np.dtype(helper.tensor_dtype_to_np_dtype(node.attr("to")))
    source = np.dtype(keras.backend.standardize_dtype(x.tensor.dtype))
    if np.issubdtype(to, np.floating) and np.issubdtype(source, np.floating):
        identity(ctx, node)  # the model runs in float32 throughout
        return
    ctx.emit(node, Cast(to.name, name=ctx.layer_name(node)), x.tensor, x.perm)


@register("Transpose", note="relabels the layout")
def transpose(ctx: BuildContext, node: Node) -> None:
    """Only relabels the layout: Keras keeps the tensor, wherever the batch axis goes."""
    x = ctx.sym(node)
    perm = tuple(node.attr("perm", list(reversed(range(x.rank)))))
    ctx.bind(node, replace(x, perm=after_transpose(x.perm, perm)))


@register("Concat")
def concat(ctx: BuildContext, node: Node) -> None:
    parts = [ctx.sym(node, i) for i in range(len(node.inputs))]
    perm = parts[0].perm
    parts = [ctx.to_layout(node, p, perm) for p in parts]
    if node.attr("axis") % len(perm) == perm[0]:
        raise node.unsupported("concatenating along the batch axis")
    axis = parts[0].keras_axis(node.attr("axis"))
    layer = keras.layers.Concatenate(axis=axis, name=ctx.layer_name(node))
    ctx.emit(node, layer, [p.tensor for p in parts], perm)


@register("Slice")
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


@register("Gather", note="constant indices of any rank (nn.Unfold's are 2-D)")
def gather(ctx: BuildContext, node: Node) -> None:
    x, indices = ctx.sym(node), ctx.const(node, 1)
    axis = node.attr("axis", 0) % x.rank
    if axis == x.batch_axis:
        raise node.unsupported("indices along the batch axis")
    size = x.onnx_shape[axis]
    picked = [i % size for i in indices.ints()]
    scalar, shape = indices.value.ndim == 0, indices.value.shape
    if len(shape) > 1:  # take the flat indices, then split the axis into the indices' shape
        take = Take(x.keras_axis(axis), picked, name=ctx.layer_name(node, "take"))
        taken = ctx.helper(node, take, x.tensor, x.perm)
        dims = [x.factor if d is None else d for d in x.onnx_shape]
        dims[axis:axis + 1] = shape
        batch = x.batch_axis + (len(shape) - 1 if x.batch_axis > axis else 0)
        reshape_to(ctx, node, taken, dims, batch)
        return
    perm = after_removing(x.perm, [axis]) if scalar else x.perm
    layer = Take(x.keras_axis(axis), picked[0] if scalar else picked, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, perm)


def _axes(ctx: BuildContext, node: Node) -> list[int] | None:
    c = ctx.const(node, 1)
    return c.ints() if c is not None else node.attr("axes")


@register("Unsqueeze")
def unsqueeze(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    rank = x.rank + len(_axes(ctx, node))
    axes = sorted(a % rank for a in _axes(ctx, node))
    perm = after_inserting(x.perm, axes)  # new size-1 axes go last in Keras
    layer = keras.layers.Reshape((*x.keras_shape[1:], *[1] * len(axes)), name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, perm)


@register("Squeeze")
def squeeze(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    shape_in = x.onnx_shape
    axes = _axes(ctx, node)
    axes = sorted(a % x.rank for a in axes) if axes is not None else [
        a for a, d in enumerate(shape_in) if d == 1]
    if any(shape_in[a] != 1 for a in axes):
        raise node.unsupported(f"squeezing axes {axes} of a tensor of shape {shape_in}")
    keep = [k for k, a in enumerate(x.perm) if a not in axes and k > 0]
    layer = keras.layers.Reshape(tuple(x.keras_shape[k] for k in keep), name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, after_removing(x.perm, axes))


@register("Pad", note="constant or reflect; any axes but the batch")
def pad(ctx: BuildContext, node: Node) -> None:
    """Constant padding: ZeroPadding2D for H/W of NCHW (``nn.ZeroPad2d``), else ``PadAxes``;
    reflect padding (``nn.ReflectionPad2d``, TResNet's anti-aliasing): ``PadAxes``, which
    TFLite runs as MIRROR_PAD."""
    x = ctx.sym(node)
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect"):
        raise node.unsupported(f"mode={mode!r} (only constant or reflect padding)")
    pads_c, value_c, axes_c = ctx.const(node, 1), ctx.const(node, 2), ctx.const(node, 3)
    pads = pads_c.ints() if pads_c is not None else node.attr("pads")
    axes = [a % x.rank for a in axes_c.ints()] if axes_c is not None else list(range(x.rank))
    width = {a: w for a, w in zip(axes, zip(pads[:len(axes)], pads[len(axes):])) if w != (0, 0)}
    if any(p < 0 for p in pads) or x.batch_axis in width:
        raise node.unsupported(f"pads {pads} (only non-negative pads of non-batch axes)")
    value = float(np.asarray(value_c.value).reshape(-1)[0]) if value_c is not None else 0.0
    if not width:  # Swin pads windows only when the size needs it
        ctx.bind(node, x)
    elif mode == "constant" and x.rank == 4 and x.batch_axis == 0 and set(width) <= {2, 3}:
        _pad_2d(ctx, node, x, (width.get(2, (0, 0)), width.get(3, (0, 0))), value)
    else:
        keras_pads = [list(width.get(a, (0, 0))) for a in x.perm]
        layer = PadAxes(keras_pads, value, mode=mode, name=ctx.layer_name(node))
        ctx.emit(node, layer, x.tensor, x.perm)


def _pad_2d(ctx: BuildContext, node: Node, x: Sym, padding: tuple, value: float) -> None:
    x = ctx.to_layout(node, x, channels_last(4))
    name = ctx.layer_name(node)
    layer = (keras.layers.ZeroPadding2D(padding, name=name) if value == 0.0
             else ConstantPadding2D(padding, value, name=name))
    ctx.emit(node, layer, x.tensor, x.perm)


@register("Split")
def split(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    axis = node.attr("axis", 0) % x.rank
    size = x.onnx_shape[axis]
    if axis == x.batch_axis:
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
        out = Sym(ctx.call(layer, x.tensor), x.perm, layer.name, x.factor)
        ctx.layer_map.setdefault(node.name, layer.name)
        ctx.bind(node, out, output=i)
        start += length


