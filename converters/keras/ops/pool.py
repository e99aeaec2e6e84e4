"""Pooling: MaxPool, AveragePool (PyTorch padding and ceil_mode) and the global pools.

Keras' "same" padding puts the odd pixel at the end and ``ceil_mode`` has no
Keras counterpart, so pads are made explicit: the exact output size is
computed as PyTorch does and the input padded to give it with "valid" pooling.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layers import ConstantPadding2D, ExactAveragePooling2D, window_counts
from converters.keras.layout import Sym, after_removing, channels_last
from converters.keras.ops.registry import register
from converters.pool_pads import OpView, nonnegative, pool_axis as _axis


@dataclass(frozen=True)
class PoolGeometry:
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]  # what to add to get PyTorch's output size
    declared: tuple[tuple[int, int], tuple[int, int]]  # the node's pads
    out: tuple[int, int]
    size: tuple[int, int]

    @property
    def padded(self) -> bool:
        return any(p for pads in self.padding for p in pads)


def geometry(node: Node, x: Sym) -> PoolGeometry:
    if node.attr("auto_pad", "NOTSET") != "NOTSET":
        raise node.unsupported(f"auto_pad={node.attr('auto_pad')}")
    if any(d != 1 for d in node.attr("dilations", [1, 1])):
        raise node.unsupported("dilated pooling")
    kernel = tuple(node.attr("kernel_shape"))
    if len(kernel) != 2:
        raise node.unsupported(f"only 2-D pooling, got kernel {kernel}")
    strides = tuple(node.attr("strides", [1, 1]))
    t, l, b, r = node.attr("pads", [0, 0, 0, 0])
    size = (int(x.keras_shape[1]), int(x.keras_shape[2]))
    ceil = bool(node.attr("ceil_mode", 0))
    (out_h, hi_h), (out_w, hi_w) = (_axis(size[0], kernel[0], strides[0], t, b, ceil),
                                    _axis(size[1], kernel[1], strides[1], l, r, ceil))
    return PoolGeometry(kernel, strides, ((t, hi_h), (l, hi_w)), ((t, b), (l, r)),
                        (out_h, out_w), size)


def _nhwc(ctx: BuildContext, node: Node) -> Sym:
    x = ctx.sym(node)
    if x.rank != 4:
        raise node.unsupported(f"only 2-D pooling on rank-4 NCHW tensors, got rank {x.rank}")
    return ctx.to_layout(node, x, channels_last(4))


@register("MaxPool")
def max_pool(ctx: BuildContext, node: Node) -> None:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise node.unsupported("the Indices output")
    x = _nhwc(ctx, node)
    g = geometry(node, x)
    if g.padded and _nonnegative(ctx, node.inputs[0]):  # zeros never win: exact, and int8
        pad = keras.layers.ZeroPadding2D(g.padding, name=ctx.layer_name(node, "pad"))
        x = ctx.helper(node, pad, x.tensor, x.perm)
    elif g.padded:  # padding never wins a window, as in PyTorch (int8: converters.pool_pads)
        pad = ConstantPadding2D(g.padding, float(np.finfo(np.float32).min),
                                name=ctx.layer_name(node, "pad"))
        x = ctx.helper(node, pad, x.tensor, x.perm)
    layer = keras.layers.MaxPooling2D(g.kernel, g.strides, "valid", name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)


def _nonnegative(ctx: BuildContext, tensor: str) -> bool:
    """Whether ``tensor`` cannot be negative (a Relu's output, ...): then zero padding is
    exact, and TFLite int8 keeps its range, which float32's lowest value would ruin."""
    producer = {o: OpView(n.op_type, n.inputs, n.attrs) for n in ctx.graph.nodes
                for o in n.outputs}
    return nonnegative(tensor, producer)


@register("AveragePool", note="ceil_mode, count_include_pad, asymmetric pads")
def average_pool(ctx: BuildContext, node: Node) -> None:
    x = _nhwc(ctx, node)
    g = geometry(node, x)
    counted = g.declared if node.attr("count_include_pad", 0) else ((0, 0), (0, 0))
    counts = [window_counts(g.size[d], g.kernel[d], g.strides[d], g.padding[d][0], counted[d],
                            g.out[d]) for d in (0, 1)]
    if not all((c == g.kernel[d]).all() for d, c in enumerate(counts)):
        layer = ExactAveragePooling2D(g.kernel, g.strides, g.padding, counted,
                                      name=ctx.layer_name(node))
        ctx.emit(node, layer, x.tensor, x.perm)
        return
    if g.padded:  # every window divides by the full kernel: zeros are what PyTorch averages
        pad = keras.layers.ZeroPadding2D(g.padding, name=ctx.layer_name(node, "pad"))
        x = ctx.helper(node, pad, x.tensor, x.perm)
    layer = keras.layers.AveragePooling2D(g.kernel, g.strides, "valid", name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)


@register("GlobalAveragePool")
def global_average_pool(ctx: BuildContext, node: Node) -> None:
    x = _nhwc(ctx, node)
    layer = keras.layers.GlobalAveragePooling2D(keepdims=True, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)


@register("GlobalMaxPool")
def global_max_pool(ctx: BuildContext, node: Node) -> None:
    x = _nhwc(ctx, node)
    layer = keras.layers.GlobalMaxPooling2D(keepdims=True, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)
