"""Activations, elementwise functions and binary arithmetic; all keep their input's layout."""
from __future__ import annotations

import keras
import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layers import Clip, ConstantBinary, Erf, HardSigmoid, WeightBinary
from converters.keras.layout import Const, Sym, constant_in_layout
from converters.keras.ops.registry import Handler, register
from converters.keras.tensor_layers import Binary, Unary


def _unary(ctx: BuildContext, node: Node, layer: keras.layers.Layer) -> None:
    x = ctx.sym(node)
    ctx.emit(node, layer, x.tensor, x.perm)


@register("Relu")
def relu(ctx: BuildContext, node: Node) -> None:
    _unary(ctx, node, keras.layers.ReLU(name=ctx.layer_name(node)))


@register("LeakyRelu")
def leaky_relu(ctx: BuildContext, node: Node) -> None:
    slope = float(node.attr("alpha", 0.01))
    _unary(ctx, node, keras.layers.LeakyReLU(negative_slope=slope, name=ctx.layer_name(node)))


def _activation(name: str) -> Handler:
    def handler(ctx: BuildContext, node: Node) -> None:
        _unary(ctx, node, keras.layers.Activation(name, name=ctx.layer_name(node)))
    return handler


register("Sigmoid")(_activation("sigmoid"))
register("Tanh")(_activation("tanh"))
register("HardSwish")(_activation("hard_silu"))


@register("Gelu", note="opset 20; opset 17's exact Erf composition is fused into it")
def gelu(ctx: BuildContext, node: Node) -> None:
    if node.attr("approximate", "none") == "tanh":
        layer = Unary("gelu_tanh", name=ctx.layer_name(node))
    else:
        layer = keras.layers.Activation("gelu", name=ctx.layer_name(node))
    _unary(ctx, node, layer)


@register("HardSigmoid")
def hard_sigmoid(ctx: BuildContext, node: Node) -> None:
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    if np.float32(alpha) == np.float32(1 / 6) and beta == 0.5:  # PyTorch's Hardsigmoid
        layer = keras.layers.Activation("hard_sigmoid", name=ctx.layer_name(node))
    else:
        layer = HardSigmoid(alpha, beta, name=ctx.layer_name(node))
    _unary(ctx, node, layer)


@register("Erf")
def erf(ctx: BuildContext, node: Node) -> None:
    _unary(ctx, node, Erf(name=ctx.layer_name(node)))


def _function(op: str) -> Handler:
    def handler(ctx: BuildContext, node: Node) -> None:
        _unary(ctx, node, Unary(op, name=ctx.layer_name(node)))
    return handler


for _onnx, _op in (("Sqrt", "sqrt"), ("Exp", "exp"), ("Log", "log"), ("Abs", "abs"),
                   ("Neg", "neg"), ("Reciprocal", "reciprocal"), ("Floor", "floor"),
                   ("Ceil", "ceil"), ("Not", "not"), ("Softplus", "softplus"),
                   ("Sin", "sin"), ("Cos", "cos")):
    register(_onnx)(_function(_op))


@register("Clip")
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
        if len(node.inputs) != 2:
            raise node.unsupported(f"{len(node.inputs)} operands (two are supported)")
        a, b = ctx.value(node, 0), ctx.value(node, 1)
        if isinstance(a, Sym) and isinstance(b, Sym):
            _tensor_tensor(ctx, node, op, a, b)
        elif isinstance(a, Sym) or isinstance(b, Sym):
            _tensor_const(ctx, node, op, a, b)
        else:
            raise node.unsupported("arithmetic on parameters (initializers) at build time")
    return handler


for _onnx, _op in (("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Div", "div"),
                   ("Pow", "pow"), ("Max", "max"), ("Min", "min"), ("Equal", "equal"),
                   ("Less", "less"), ("Greater", "greater"), ("And", "and"), ("Or", "or")):
    register(_onnx)(_binary(_op))


def _tensor_tensor(ctx: BuildContext, node: Node, op: str, a: Sym, b: Sym) -> None:
    if a.rank != b.rank:
        raise node.unsupported(f"{op} of tensors of ranks {a.rank} and {b.rank}")
    out_shape = np.broadcast_shapes(*(tuple(d or 1 for d in s.onnx_shape) for s in (a, b)))
    lead = a if tuple(d or 1 for d in a.onnx_shape) == out_shape else b
    a, b = ctx.to_layout(node, a, lead.perm), ctx.to_layout(node, b, lead.perm)
    layer = _MERGE[op](name=ctx.layer_name(node)) if op in _MERGE else Binary(
        op, name=ctx.layer_name(node))
    ctx.emit(node, layer, [a.tensor, b.tensor], lead.perm)


def _tensor_const(ctx: BuildContext, node: Node, op: str, a: Sym | Const, b: Sym | Const) -> None:
    x, c = (a, b) if isinstance(a, Sym) else (b, a)
    if c.is_dynamic or c.value.ndim > x.rank:
        raise node.unsupported(f"{op} with a constant of shape {c.value.shape}")
    value = constant_in_layout(c.value, x.perm)
    if value.shape[0] != 1:  # Keras axis 0 is the batch: a constant cannot vary along it
        raise node.unsupported(f"{op} with a constant varying along the batch axis "
                               f"(shape {c.value.shape})")
    first = isinstance(a, Const)
    if c.weight is not None and np.issubdtype(value.dtype, np.floating):  # a parameter: a variable
        layer = WeightBinary(op, value.shape[1:], first, name=ctx.layer_name(node))
        ctx.emit(node, layer, x.tensor, x.perm, weights=[value[0]])
        return
    value = value.reshape(()) if value.size == 1 else value
    layer = ConstantBinary(op, value.astype(np.float32), first, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm)
