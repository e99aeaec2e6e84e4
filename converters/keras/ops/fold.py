"""Build-time evaluation of structural ops whose inputs are all known (shape arithmetic).

Values derived from the dynamic batch size carry a ``dynamic`` mask; there
the value is the batch's coefficient (``Shape`` of a ``(batch * 64, 49, C)``
tensor gives 64), so products and exact divisions stay right. The mask
follows each structural op and spreads through arithmetic, so a Reshape can
tell a batch entry from a static one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from converters.keras.graph import Node
from converters.keras.layout import Const
from converters.keras.ops.registry import folds


def _same(fn: Callable[[np.ndarray], np.ndarray], c: Const) -> Const:
    """Apply a structural ``fn`` to the value and its dynamic mask alike."""
    return Const(fn(c.value), fn(c.mask()) if c.dynamic is not None else None)


def _ints(c: Const | None, default: list[int] | None = None) -> list[int] | None:
    return default if c is None else c.ints()


def static(node: Node, *vals: Const | None) -> None:
    """Refuse values that depend on the batch where the op is not linear in it."""
    if any(v is not None and v.is_dynamic for v in vals):
        raise node.unsupported("an operand depends on the batch size")


@folds("Constant")
def constant(node: Node, _: list[Const | None]) -> Const:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            value = np.asarray(node.attrs[key])
            if key.startswith("value_float"):
                value = value.astype(np.float32)
            elif key.startswith("value_int"):
                value = value.astype(np.int64)
            return Const(value)
    raise node.unsupported(f"Constant without a numeric value ({', '.join(node.attrs)})")


@folds("Identity", "Dropout")
def identity(_: Node, vals: list[Const | None]) -> Const:
    return vals[0]


@folds("Cast")
def cast(node: Node, vals: list[Const | None]) -> Const:
    from onnx import helper

    dtype = helper.tensor_dtype_to_np_dtype(node.attr("to"))
    return Const(vals[0].value.astype(dtype), vals[0].dynamic)


@folds("ConstantOfShape")
def constant_of_shape(node: Node, vals: list[Const | None]) -> Const | None:
    if vals[0].is_dynamic:
        return None  # a batch-sized constant: made by the handler
    fill = node.attr("value")
    fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill).reshape(-1)
    return Const(np.full(vals[0].ints(), fill[0], dtype=fill.dtype))


@folds("Shape")
def shape(node: Node, vals: list[Const | None]) -> Const:
    dims = np.asarray(vals[0].value.shape, dtype=np.int64)
    return Const(dims[node.attr("start", 0):node.attr("end", None)])


@folds("Size")
def size(_: Node, vals: list[Const | None]) -> Const:
    return Const(np.asarray(vals[0].value.size, dtype=np.int64))


@folds("Gather")
def gather(node: Node, vals: list[Const | None]) -> Const:
    static(node, vals[1])
    indices = vals[1].value.astype(np.int64)
    return _same(lambda a: np.take(a, indices, axis=node.attr("axis", 0)), vals[0])


@folds("Unsqueeze")
def unsqueeze(node: Node, vals: list[Const | None]) -> Const:
    axes = _ints(vals[1] if len(vals) > 1 else None, node.attr("axes"))
    rank = vals[0].value.ndim + len(axes)
    return _same(lambda a: np.expand_dims(a, tuple(x % rank for x in axes)), vals[0])


@folds("Squeeze")
def squeeze(node: Node, vals: list[Const | None]) -> Const:
    axes = _ints(vals[1] if len(vals) > 1 else None, node.attr("axes"))
    return _same(lambda a: np.squeeze(a, None if axes is None else tuple(axes)), vals[0])


@folds("Concat")
def concat(node: Node, vals: list[Const | None]) -> Const:
    axis = node.attr("axis")
    value = np.concatenate([v.value for v in vals], axis=axis)
    if not any(v.dynamic is not None for v in vals):
        return Const(value)
    return Const(value, np.concatenate([v.mask() for v in vals], axis=axis))


@folds("Transpose")
def transpose(node: Node, vals: list[Const | None]) -> Const:
    return _same(lambda a: np.transpose(a, node.attr("perm")), vals[0])


@folds("Reshape")
def reshape(node: Node, vals: list[Const | None]) -> Const:
    static(node, vals[1])
    target = vals[1].ints()
    src = vals[0].value.shape
    target = [src[i] if d == 0 and not node.attr("allowzero", 0) else d for i, d in enumerate(target)]
    return _same(lambda a: np.reshape(a, target), vals[0])


@folds("Flatten")
def flatten(node: Node, vals: list[Const | None]) -> Const:
    axis = node.attr("axis", 1) % max(vals[0].value.ndim, 1)
    shape_in = vals[0].value.shape
    return _same(lambda a: a.reshape(int(np.prod(shape_in[:axis])), -1), vals[0])


@folds("Slice")
def slice_(node: Node, vals: list[Const | None]) -> Const:
    static(node, *vals[1:])
    data = vals[0].value
    starts, ends = vals[1].ints(), vals[2].ints()
    axes = _ints(vals[3] if len(vals) > 3 else None, list(range(len(starts))))
    steps = _ints(vals[4] if len(vals) > 4 else None, [1] * len(starts))
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis] = slice(start, end, step)
    return _same(lambda a: a[tuple(index)], vals[0])


@folds("Expand", note="of a model tensor along static axes; of a constant or parameter; "
       "to the batch: a BatchBroadcast layer")
def expand(node: Node, vals: list[Const | None]) -> Const | None:
    if vals[1].is_dynamic:
        return None  # a class token broadcast over the batch: made by the handler
    static(node, vals[0])
    out = np.broadcast_shapes(vals[0].value.shape, tuple(vals[1].ints()))
    return Const(np.broadcast_to(vals[0].value, out).copy())


@folds("Tile")
def tile(node: Node, vals: list[Const | None]) -> Const:
    static(node, *vals)
    return Const(np.tile(vals[0].value, vals[1].ints()))


@folds("Range")
def range_(node: Node, vals: list[Const | None]) -> Const:
    static(node, *vals)
    start, limit, delta = (np.asarray(v.value).reshape(()) for v in vals)
    return Const(np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta)))


@folds("ScatterND")
def scatter_nd(node: Node, vals: list[Const | None]) -> Const:
    static(node, *vals)
    data, indices, updates = (v.value for v in vals)
    out = data.copy()
    index = tuple(indices.reshape(-1, indices.shape[-1]).T)
    flat = updates.reshape(-1, *data.shape[indices.shape[-1]:])
    reduction = node.attr("reduction", "none")
    if reduction == "none":
        out[index] = flat
    elif reduction in ("add", "mul", "max", "min"):
        getattr(np, {"add": "add", "mul": "multiply", "max": "maximum", "min": "minimum"}[reduction]
                ).at(out, index, flat)
    else:
        raise node.unsupported(f"reduction={reduction!r}")
    return Const(out)
