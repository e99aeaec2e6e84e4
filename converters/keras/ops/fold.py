"""Build-time evaluation of ops whose inputs are all known (shape arithmetic, constants).

Values derived from the dynamic batch size carry a ``dynamic`` mask; the mask
follows each structural op and spreads through arithmetic, so a Reshape can
tell a batch entry from a static one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from converters.keras.graph import Node
from converters.keras.layout import Const

FoldFn = Callable[[Node, list[Const | None]], Const]


def _same(fn: Callable[[np.ndarray], np.ndarray], c: Const) -> Const:
    """Apply a structural ``fn`` to the value and its dynamic mask alike."""
    return Const(fn(c.value), fn(c.mask()) if c.dynamic is not None else None)


def _ints(c: Const | None, default: list[int] | None = None) -> list[int] | None:
    return default if c is None else c.ints()


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


def identity(_: Node, vals: list[Const | None]) -> Const:
    return vals[0]


def cast(node: Node, vals: list[Const | None]) -> Const:
    from onnx import helper

    dtype = helper.tensor_dtype_to_np_dtype(node.attr("to"))
    return Const(vals[0].value.astype(dtype), vals[0].dynamic)


def constant_of_shape(node: Node, vals: list[Const | None]) -> Const:
    fill = node.attr("value")
    fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill).reshape(-1)
    return Const(np.full(vals[0].ints(), fill[0], dtype=fill.dtype))


def shape(node: Node, vals: list[Const | None]) -> Const:
    dims = np.asarray(vals[0].value.shape, dtype=np.int64)
    return Const(dims[node.attr("start", 0):node.attr("end", None)])


def gather(node: Node, vals: list[Const | None]) -> Const:
    indices = vals[1].value.astype(np.int64)
    return _same(lambda a: np.take(a, indices, axis=node.attr("axis", 0)), vals[0])


def unsqueeze(node: Node, vals: list[Const | None]) -> Const:
    axes = _ints(vals[1] if len(vals) > 1 else None, node.attr("axes"))
    rank = vals[0].value.ndim + len(axes)
    return _same(lambda a: np.expand_dims(a, tuple(x % rank for x in axes)), vals[0])


def squeeze(node: Node, vals: list[Const | None]) -> Const:
    axes = _ints(vals[1] if len(vals) > 1 else None, node.attr("axes"))
    return _same(lambda a: np.squeeze(a, None if axes is None else tuple(axes)), vals[0])


def concat(node: Node, vals: list[Const | None]) -> Const:
    axis = node.attr("axis")
    value = np.concatenate([v.value for v in vals], axis=axis)
    if not any(v.dynamic is not None for v in vals):
        return Const(value)
    return Const(value, np.concatenate([v.mask() for v in vals], axis=axis))


def transpose(node: Node, vals: list[Const | None]) -> Const:
    return _same(lambda a: np.transpose(a, node.attr("perm")), vals[0])


def reshape(node: Node, vals: list[Const | None]) -> Const:
    target = vals[1].ints()
    src = vals[0].value.shape
    target = [src[i] if d == 0 and not node.attr("allowzero", 0) else d for i, d in enumerate(target)]
    return _same(lambda a: np.reshape(a, target), vals[0])


def slice_(node: Node, vals: list[Const | None]) -> Const:
    data = vals[0].value
    starts, ends = vals[1].ints(), vals[2].ints()
    axes = _ints(vals[3] if len(vals) > 3 else None, list(range(len(starts))))
    steps = _ints(vals[4] if len(vals) > 4 else None, [1] * len(starts))
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis] = slice(start, end, step)
    return _same(lambda a: a[tuple(index)], vals[0])


def _arith(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FoldFn:
    def fold(_: Node, vals: list[Const | None]) -> Const:
        a, b = vals
        value = fn(a.value, b.value).astype(np.result_type(a.value, b.value))
        if a.dynamic is None and b.dynamic is None:
            return Const(value)
        return Const(value, np.broadcast_to(a.mask() | b.mask(), value.shape).copy())
    return fold


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return np.trunc(a / b)  # ONNX integer division truncates
    return a / b


FOLDERS: dict[str, FoldFn] = {
    "Constant": constant,
    "Identity": identity,
    "Cast": cast,
    "ConstantOfShape": constant_of_shape,
    "Shape": shape,
    "Gather": gather,
    "Unsqueeze": unsqueeze,
    "Squeeze": squeeze,
    "Concat": concat,
    "Transpose": transpose,
    "Reshape": reshape,
    "Slice": slice_,
    "Add": _arith(np.add),
    "Sub": _arith(np.subtract),
    "Mul": _arith(np.multiply),
    "Div": _arith(_divide),
}
