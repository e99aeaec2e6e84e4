"""Activations and binary arithmetic; all keep their input's layout."""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layers import Clip, ConstantBinary, Erf, HardSigmoid, WeightBinary
from converters.keras.layout import Const, Sym, constant_in_layout

Handler = Callable[[BuildContext, Node], None]


def _unary(ctx: BuildContext, node: Node, layer: keras.layers.Layer) -> None:
    x = ctx.sym(node)
    ctx.emit(node, layer, x.tensor, x.perm)


def relu(ctx: BuildContext, node: Node) -> None:
    _unary(ctx, node, keras.layers.ReLU(name=ctx.layer_name(node)))


def leaky_relu(ctx: BuildContext, node: Node) -> None:
    slope = float(node.attr("alpha", 0.01))
    _unary(ctx, node, keras.layers.LeakyReLU(negative_slope=slope, name=ctx.layer_name(node)))


def _activation(name: str) -> Handler:
    def handler(ctx: BuildContext, node: Node) -> None:
        _unary(ctx, node, keras.layers.Activation(name, name=ctx.layer_name(node)))
    return handler


def hard_sigmoid(ctx: BuildContext, node: Node) -> None:
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    if np.float32(alpha) == np.float32(1 / 6) and beta == 0.5:  # PyTorch's Hardsigmoid
        layer = keras.layers.Activation("hard_sigmoid", name=ctx.layer_name(node))
    else:
        layer = HardSigmoid(alpha, beta, name=ctx.layer_name(node))
    _unary(ctx, node, layer)


def erf(ctx: BuildContext, node: Node) -> None:
    _unary(ctx, node, Erf(name=ctx.layer_name(node)))


def clip(ctx: BuildContext, node: Node) -> None:
    bounds = []
    for index, key in ((1, "min"), (2, "max")):
        c = ctx.const(node, index)
        value = float(c.value) if c is not None else node.attr(key)
        bounds.append(None if value is None or abs(value) >= 3.4e38 else float(value))
    low, high = bounds
    if low == 0.0:  # ReLU / ReLU6
        layer = keras.layers.ReLU(max_value=high, name=ctx.layer_name(node))
    else:
        layer = Clip(low, high, name=ctx.layer_name(node))
    _unary(ctx, node, layer)


_MERGE = {"add": keras.layers.Add, "sub": keras.layers.Subtract, "mul": keras.layers.Multiply}


def _binary(op: str) -> Handler:
    def handler(ctx: BuildContext, node: Node) -> None:
        a, b = ctx.value(node, 0), ctx.value(node, 1)
        if isinstance(a, Sym) and isinstance(b, Sym):
            _tensor_tensor(ctx, node, op, a, b)
        elif isinstance(a, Sym) or isinstance(b, Sym):
            _tensor_const(ctx, node, op, a, b)
        else:
            raise node.unsupported("arithmetic on parameters (initializers) at build time")
    return handler


def _tensor_tensor(ctx: BuildContext, node: Node, op: str, a: Sym, b: Sym) -> None:
    if a.rank != b.rank or op not in _MERGE:
        raise node.unsupported(f"{op} of tensors of ranks {a.rank} and {b.rank}")
    out_shape = np.broadcast_shapes(*(tuple(d or 1 for d in s.onnx_shape) for s in (a, b)))
    lead = a if tuple(d or 1 for d in a.onnx_shape) == out_shape else b
    a, b = ctx.to_layout(node, a, lead.perm), ctx.to_layout(node, b, lead.perm)
    layer = _MERGE[op](name=ctx.layer_name(node))
    ctx.emit(node, layer, [a.tensor, b.tensor], lead.perm)


def _tensor_const(ctx: BuildContext, node: Node, op: str, a: Sym | Const, b: Sym | Const) -> None:
    x, c = (a, b) if isinstance(a, Sym) else (b, a)
    if c.is_dynamic or c.value.ndim > x.rank:
        raise node.unsupported(f"{op} with a constant of shape {c.value.shape}")
    value = constant_in_layout(c.value.astype(np.float32), x.perm)
    first = isinstance(a, Const)
    if c.weight is not None:  # a parameter: stays a trainable variable
        layer = WeightBinary(op, value.shape[1:], first, name=ctx.layer_name(node))
        ctx.emit(node, layer, x.tensor, x.perm, weights=[value[0]])
        return
    value = value.reshape(()) if value.size == 1 else value
    layer = ConstantBinary(op, value, first, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)


HANDLERS: dict[str, Handler] = {
    "Relu": relu,
    "LeakyRelu": leaky_relu,
    "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"),
    "HardSwish": _activation("hard_silu"),
    "HardSigmoid": hard_sigmoid,
    "Erf": erf,
    "Clip": clip,
    "Add": _binary("add"),
    "Sub": _binary("sub"),
    "Mul": _binary("mul"),
    "Div": _binary("div"),
}
