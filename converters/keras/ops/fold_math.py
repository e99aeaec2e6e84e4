"""Build-time arithmetic, comparisons and selection (Swin's window mask, ViT's Expand shape).

Batch-dependent entries hold the batch's coefficient, so only operations
linear in the batch may touch them: scaling, exact division, shifts by zero.
Anything else would fold a value true for one batch size only, so it is refused.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from converters.keras.graph import Node
from converters.keras.layout import Const
from converters.keras.ops.fold import static
from converters.keras.ops.registry import FoldFn, folds


def _masked(value: np.ndarray, *vals: Const) -> Const:
    if all(v.dynamic is None for v in vals):
        return Const(value)
    mask = np.zeros(value.shape, bool)
    for v in vals:
        mask |= np.broadcast_to(v.mask(), value.shape)
    return Const(value, mask)


def _arith(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], *, product: bool = False) -> FoldFn:
    def fold(node: Node, vals: list[Const | None]) -> Const:
        a, b = vals
        value = np.asarray(fn(a.value, b.value)).astype(np.result_type(a.value, b.value))
        if product and a.is_dynamic and b.is_dynamic:
            raise node.unsupported("a product of two batch-dependent values")
        if not product and _shifted(a, b, value.shape):
            raise node.unsupported("a batch-dependent size shifted by a constant")
        return _masked(value, a, b)
    return fold


def _shifted(a: Const, b: Const, shape: tuple[int, ...]) -> bool:
    """Whether a batch entry meets a non-zero static one (``batch * f + c``: no multiple)."""
    for x, y in ((a, b), (b, a)):
        lone = np.broadcast_to(x.mask(), shape) & ~np.broadcast_to(y.mask(), shape)
        if (lone & (np.broadcast_to(y.value, shape) != 0)).any():
            return True
    return False


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return np.trunc(a / b)  # ONNX integer division truncates
    return a / b


folds("Add")(_arith(np.add))
folds("Sub")(_arith(np.subtract))
folds("Mul")(_arith(np.multiply, product=True))


@folds("Div")
def divide(node: Node, vals: list[Const | None]) -> Const:
    """A batch entry over a static number stays one (when the number divides it); over
    another batch entry the batch cancels (GC ViT's windows per image,
    ``(batch * windows) // batch``) and the quotient is static."""
    a, b = vals
    shape = np.broadcast_shapes(a.value.shape, b.value.shape)
    top, bottom = np.broadcast_to(a.mask(), shape), np.broadcast_to(b.mask(), shape)
    if (bottom & ~top).any():
        raise node.unsupported("a number divided by a batch-dependent size")
    value = np.asarray(_divide(a.value, b.value)).astype(np.result_type(a.value, b.value))
    scaled = top & ~bottom
    if np.issubdtype(value.dtype, np.integer) and (scaled & (np.mod(a.value, b.value) != 0)).any():
        # (batch * f) // d is a multiple of the batch only when d divides f
        raise node.unsupported("a batch-dependent size divided by a number not dividing it")
    return Const(value, scaled) if scaled.any() else Const(value)


def _static_binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FoldFn:
    def fold(node: Node, vals: list[Const | None]) -> Const:
        static(node, *vals)
        return Const(np.asarray(fn(vals[0].value, vals[1].value)))
    return fold


folds("Pow")(_static_binary(lambda a, b: np.power(a, b).astype(a.dtype)))
folds("Less")(_static_binary(np.less))
folds("LessOrEqual")(_static_binary(np.less_equal))
folds("Greater")(_static_binary(np.greater))
folds("GreaterOrEqual")(_static_binary(np.greater_equal))
folds("And")(_static_binary(np.logical_and))
folds("Or")(_static_binary(np.logical_or))
folds("Xor")(_static_binary(np.logical_xor))


@folds("Mod")
def mod(node: Node, vals: list[Const | None]) -> Const:
    static(node, *vals)
    fn = np.fmod if node.attr("fmod", 0) else np.mod  # fmod=0: the divisor's sign, as Python's %
    return Const(np.asarray(fn(vals[0].value, vals[1].value)))


@folds("Equal")
def equal(node: Node, vals: list[Const | None]) -> Const:
    a, b = vals
    value = np.asarray(np.equal(a.value, b.value))
    dynamic = np.broadcast_to(a.mask(), value.shape) | np.broadcast_to(b.mask(), value.shape)
    other = np.where(np.broadcast_to(a.mask(), value.shape), np.broadcast_to(b.value, value.shape),
                     np.broadcast_to(a.value, value.shape))
    if (dynamic & (other > 0)).any():  # a size equals a positive number for one batch size only
        raise node.unsupported("comparing a batch-dependent size with a positive number")
    return Const(value & ~dynamic)  # a size is never zero or negative: ViT's Expand(-1) test


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> FoldFn:
    def fold(node: Node, vals: list[Const | None]) -> Const:
        static(node, vals[0])
        return Const(np.asarray(fn(vals[0].value)).astype(
            vals[0].value.dtype if vals[0].value.dtype != bool else bool))
    return fold


folds("Not")(_unary(np.logical_not))
folds("Neg")(_unary(np.negative))
folds("Abs")(_unary(np.abs))
folds("Sqrt")(_unary(np.sqrt))
folds("Exp")(_unary(np.exp))
folds("Log")(_unary(np.log))
folds("Reciprocal")(_unary(np.reciprocal))
folds("Floor")(_unary(np.floor))
folds("Ceil")(_unary(np.ceil))
folds("Sin")(_unary(np.sin))
folds("Cos")(_unary(np.cos))
# activations of a parameter (ConViT's gate, EfficientViM's): the value the layer would see
folds("Sigmoid")(_unary(lambda x: 1 / (1 + np.exp(-x))))
folds("Tanh")(_unary(np.tanh))
folds("Relu")(_unary(lambda x: np.maximum(x, 0)))
folds("Softplus")(_unary(lambda x: np.logaddexp(0, x)))
_erf = np.vectorize(math.erf, otypes=[np.float64])
folds("Erf")(_unary(_erf))


@folds("Gelu")
def gelu(node: Node, vals: list[Const | None]) -> Const:
    static(node, vals[0])
    x = vals[0].value.astype(np.float64)
    if node.attr("approximate", "none") == "tanh":
        out = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    else:
        out = 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    return Const(out.astype(vals[0].value.dtype))


@folds("MatMul")
def matmul(node: Node, vals: list[Const | None]) -> Const:
    """Of known values (MaxViT-rmlp's relative-position MLP runs on a coordinate table);
    a third input is the bias Add fused into the node (``fuse_matmul_bias``)."""
    static(node, *vals)
    out = np.matmul(vals[0].value, vals[1].value)
    return Const(out + vals[2].value if len(vals) > 2 and vals[2] is not None else out)


@folds("Gemm")
def gemm(node: Node, vals: list[Const | None]) -> Const:
    static(node, *vals)
    a, b = vals[0].value, vals[1].value
    a, b = (a.T if node.attr("transA", 0) else a), (b.T if node.attr("transB", 0) else b)
    out = float(node.attr("alpha", 1.0)) * (a @ b)
    if len(vals) > 2 and vals[2] is not None:
        out = out + float(node.attr("beta", 1.0)) * vals[2].value
    return Const(out.astype(a.dtype))


@folds("Clip")
def clip(node: Node, vals: list[Const | None]) -> Const:
    """Of a known value (NesT's pooling pads clamp a constant index)."""
    static(node, *vals)
    x = vals[0].value
    low = vals[1].value if len(vals) > 1 and vals[1] is not None else node.attr("min")
    high = vals[2].value if len(vals) > 2 and vals[2] is not None else node.attr("max")
    return Const(np.clip(x, low, high).astype(x.dtype))


@folds("OneHot")
def one_hot(node: Node, vals: list[Const | None]) -> Const:
    """Of known indices (GCViT's relative-position lookup)."""
    static(node, *vals)
    indices, depth, values = vals
    depth_n = int(np.asarray(depth.value).reshape(-1)[0])
    idx = indices.value.astype(np.int64)
    idx = np.where(idx < 0, idx + depth_n, idx)
    off, on = values.value.reshape(-1)[:2]
    out = np.where(np.arange(depth_n) == idx[..., None], on, off).astype(values.value.dtype)
    axis = int(node.attr("axis", -1))
    return Const(np.moveaxis(out, -1, axis if axis >= 0 else out.ndim + axis))


@folds("Where")
def where(node: Node, vals: list[Const | None]) -> Const:
    cond, x, y = vals
    static(node, cond)
    value = np.where(cond.value, x.value, y.value)
    if x.dynamic is None and y.dynamic is None:
        return Const(value)
    mask = np.where(cond.value, x.mask(), y.mask())
    return Const(value, np.broadcast_to(mask, value.shape).copy())


def _variadic(fn: Callable[..., np.ndarray]) -> FoldFn:
    def fold(node: Node, vals: list[Const | None]) -> Const:
        static(node, *vals)
        out = vals[0].value
        for v in vals[1:]:
            out = fn(out, v.value)
        return Const(np.asarray(out))
    return fold


folds("Min")(_variadic(np.minimum))
folds("Max")(_variadic(np.maximum))
