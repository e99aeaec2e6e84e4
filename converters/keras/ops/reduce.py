"""Reductions (ReduceMean/Sum/Max/Min/Prod/L2) and CumSum, on model tensors and at build time.

Axes come from the ``axes`` input (opset >= 18; ReduceSum from 13) or attribute and are
translated to Keras axes; a reduction over the batch axis has no per-sample meaning and
is refused. On values known at build time (shape products, index tables) they fold.
"""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layers import CumSum, Reduce, ReduceMean
from converters.keras.layout import Const, Sym, after_removing
from converters.keras.ops.fold import static
from converters.keras.ops.registry import FoldFn, folds, register

# ONNX op -> (the Reduce layer's op, numpy's reduction for folding)
REDUCTIONS: dict[str, tuple[str, Callable[..., np.ndarray]]] = {
    "ReduceMean": ("mean", np.mean),
    "ReduceSum": ("sum", np.sum),
    "ReduceMax": ("max", np.max),
    "ReduceMin": ("min", np.min),
    "ReduceProd": ("prod", np.prod),
    "ReduceL2": ("l2", lambda x, axis, keepdims: np.sqrt(np.sum(np.square(x), axis=axis,
                                                                keepdims=keepdims))),
}


def _axes(node: Node, rank: int, axes_in: Const | None) -> list[int]:
    """The reduced ONNX axes: all of them when none are given (unless noop_with_empty_axes)."""
    axes = axes_in.ints() if axes_in is not None else node.attr("axes", None)
    if not axes:
        return [] if node.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted(int(a) % rank for a in axes)


def _reduce_handler(onnx_op: str) -> None:
    op = REDUCTIONS[onnx_op][0]

    @register(onnx_op)
    def handler(ctx: BuildContext, node: Node) -> None:
        x = ctx.sym(node)
        axes = _axes(node, x.rank, ctx.const(node, 1))
        keepdims = bool(node.attr("keepdims", 1))
        if x.batch_axis in axes:
            raise node.unsupported(f"a {op} over the batch axis")
        if not axes:  # noop_with_empty_axes
            raise node.unsupported("a reduction over no axes (noop_with_empty_axes)")
        keras_axes = sorted(x.keras_axis(a) for a in axes)
        perm = x.perm if keepdims else after_removing(x.perm, axes)
        name = ctx.layer_name(node)
        if op == "mean" and x.rank == 4 and keras_axes == [1, 2]:
            layer = keras.layers.GlobalAveragePooling2D(keepdims=keepdims, name=name)
        elif op == "mean":
            layer = ReduceMean(keras_axes, keepdims, name=name)
        else:
            layer = Reduce(op, keras_axes, keepdims, name=name)
        ctx.emit(node, layer, x.tensor, perm)


def _reduce_folder(onnx_op: str) -> FoldFn:
    fn = REDUCTIONS[onnx_op][1]

    def fold(node: Node, vals: list[Const | None]) -> Const:
        x = vals[0]
        static(node, x)
        axes = _axes(node, x.value.ndim, vals[1] if len(vals) > 1 else None)
        keepdims = bool(node.attr("keepdims", 1))
        if not axes:
            return x
        out = fn(x.value, axis=tuple(axes), keepdims=keepdims)
        return Const(np.asarray(out).astype(x.value.dtype))
    return fold


for _op in REDUCTIONS:
    _reduce_handler(_op)
    folds(_op)(_reduce_folder(_op))


def _cumsum_axis(node: Node, axis: Const | None, rank: int) -> int:
    if axis is None or axis.is_dynamic:
        raise node.unsupported("a CumSum axis not known at build time")
    return int(np.asarray(axis.value).reshape(-1)[0]) % rank


@register("CumSum")
def cumsum(ctx: BuildContext, node: Node) -> None:
    x: Sym = ctx.sym(node)
    axis = _cumsum_axis(node, ctx.const(node, 1), x.rank)
    if axis == x.batch_axis:
        raise node.unsupported("a running sum over the batch axis")
    layer = CumSum(x.keras_axis(axis), bool(node.attr("exclusive", 0)),
                   bool(node.attr("reverse", 0)), name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)


@folds("CumSum")
def cumsum_fold(node: Node, vals: list[Const | None]) -> Const:
    x, axis_in = vals
    static(node, x)
    axis = _cumsum_axis(node, axis_in, x.value.ndim)
    v = np.flip(x.value, axis) if node.attr("reverse", 0) else x.value
    out = np.cumsum(v, axis=axis, dtype=v.dtype)
    if node.attr("exclusive", 0):
        out = out - v
    return Const(np.flip(out, axis) if node.attr("reverse", 0) else out)
