"""Values while building and the layout algebra between ONNX and Keras axes.

Every ONNX tensor becomes either a ``Sym`` (a Keras tensor plus its layout:
Keras axis ``j`` holds ONNX axis ``perm[j]``) or a ``Const`` (a value folded
at build time). The layout is recorded as tensors are made, never guessed:
an ONNX ``Transpose`` only relabels the layout, and a Keras ``Permute`` is
inserted only where an op needs a particular axis order.

Keras axis 0 always holds the one ONNX axis whose size depends on the batch
(``perm[0]``; ONNX axis 0 at the input, but attention moves it: ViT's
``(seq, batch, dim)``, timm's ``(3, batch, heads, seq, dim)``). Its size is
``factor`` times the batch where the batch merges with other axes: Swin's
``(batch * windows, 49, C)``, ViT's ``(seq, batch * heads, 64)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Perm = tuple[int, ...]


@dataclass(frozen=True)
class Sym:
    """A Keras tensor standing for an ONNX tensor."""

    tensor: Any  # keras.KerasTensor
    perm: Perm
    layer: str  # name of the Keras layer that produced ``tensor``
    factor: int = 1  # Keras axis 0 holds ``factor * batch`` entries

    @property
    def batch_axis(self) -> int:
        """The ONNX axis whose size depends on the batch."""
        return self.perm[0]

    @property
    def rank(self) -> int:
        return len(self.perm)

    @property
    def keras_shape(self) -> tuple[int | None, ...]:
        return tuple(self.tensor.shape)

    @property
    def onnx_shape(self) -> tuple[int | None, ...]:
        shape: list[int | None] = [None] * self.rank
        for keras_axis, onnx_axis in enumerate(self.perm):
            shape[onnx_axis] = self.keras_shape[keras_axis]
        return tuple(shape)

    def keras_axis(self, onnx_axis: int) -> int:
        return self.perm.index(onnx_axis % self.rank)


@dataclass(frozen=True)
class Const:
    """A tensor known at build time.

    ``dynamic`` marks entries that depend on the batch size (from ``Shape`` of
    a batched tensor); their ``value`` is a placeholder. ``weight`` names the
    initializer when the value is a model parameter, which must stay a
    variable and is never folded.
    """

    value: np.ndarray
    dynamic: np.ndarray | None = None
    weight: str | None = None

    @property
    def is_dynamic(self) -> bool:
        return self.dynamic is not None and bool(self.dynamic.any())

    def mask(self) -> np.ndarray:
        return self.dynamic if self.dynamic is not None else np.zeros(self.value.shape, bool)

    def ints(self) -> list[int]:
        return [int(v) for v in np.asarray(self.value).reshape(-1)]


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def channels_last(rank: int) -> Perm:
    """The Keras layout of an ONNX channels-first tensor: N, spatial..., C."""
    return (0, *range(2, rank), 1) if rank >= 3 else identity(rank)


def preferred(rank: int) -> Perm:
    """Layout new rank-4 tensors get when free to choose: what Conv2D wants."""
    return channels_last(rank) if rank == 4 else identity(rank)


def inverse(perm: Perm) -> Perm:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def after_transpose(perm: Perm, onnx_perm: Perm) -> Perm:
    """Layout of ``Transpose(x, onnx_perm)`` when the Keras tensor is kept as is."""
    inv = inverse(onnx_perm)
    return tuple(inv[a] for a in perm)


def after_removing(perm: Perm, axes: list[int]) -> Perm:
    """Layout once ONNX ``axes`` are dropped (Squeeze, reductions, scalar Gather)."""
    return tuple(a - sum(r < a for r in axes) for a in perm if a not in axes)


def after_inserting(perm: Perm, axes: list[int]) -> Perm:
    """Layout once size-1 ONNX ``axes`` (output numbering) are inserted; they go last in Keras."""
    rank = len(perm) + len(axes)
    kept = [a for a in range(rank) if a not in axes]
    return (*(kept[a] for a in perm), *sorted(axes))


def permute_dims(src: Perm, dst: Perm) -> tuple[int, ...]:
    """``keras.layers.Permute`` dims taking a tensor in layout ``src`` to ``dst``."""
    if src[0] != dst[0]:
        raise ValueError(f"the batch axis must stay first in Keras ({src} -> {dst})")
    return tuple(src.index(a) for a in dst[1:])


def constant_in_layout(value: np.ndarray, perm: Perm) -> np.ndarray:
    """An ONNX-broadcastable constant rearranged to broadcast against a Keras tensor in ``perm``."""
    value = np.asarray(value)
    if value.ndim > len(perm):
        raise ValueError(f"constant of rank {value.ndim} against a rank-{len(perm)} tensor")
    full = value.reshape((1,) * (len(perm) - value.ndim) + value.shape)
    return np.transpose(full, perm)


@dataclass(frozen=True)
class ReshapePlan:
    """How to do an ONNX Reshape on a Keras tensor in a given layout."""

    before: Perm | None  # layout to permute the input into first (None: as it is)
    keras_shape: tuple[int, ...]  # target of keras.layers.Reshape, batch excluded
    perm: Perm  # layout of the result


def plan_reshape(in_shape: tuple[int | None, ...], perm: Perm,
                 out_shape: tuple[int, ...]) -> ReshapePlan:
    """Plan a batch-preserving reshape of an ONNX tensor held in layout ``perm``.

    Splits the reshape into groups of ONNX axes that merge or split into each
    other. A row-major reshape of the Keras tensor is right when every group's
    axes sit together and in ONNX order in Keras; only otherwise is the input
    permuted first. Size-1 axes carry no data and go wherever is convenient.
    Both shapes hold the batch at axis 0; ``out_shape[0]`` is ignored.
    """
    groups = _groups(in_shape, out_shape)
    group_of = {a: g for g, (ins, _) in enumerate(groups) for a in ins}
    order: list[int] = []
    for a in perm:
        if a in group_of and group_of[a] not in order:
            order.append(group_of[a])
    needed = [0, *(a for g in order for a in groups[g][0])]
    current = [a for a in perm if a == 0 or a in group_of]
    before = None
    if current != needed:
        before = (*needed, *(a for a in perm if a != 0 and a not in group_of))
    out_order = [0, *(a for g in order for a in groups[g][1])]
    out_perm = _place_size_one_axes(out_order, out_shape)
    return ReshapePlan(before, tuple(int(out_shape[a]) for a in out_perm[1:]), out_perm)


def _groups(in_shape: tuple[int | None, ...], out_shape: tuple[int, ...]
            ) -> list[tuple[list[int], list[int]]]:
    a = [(i, d) for i, d in enumerate(in_shape) if i > 0 and d != 1]
    b = [(i, d) for i, d in enumerate(out_shape) if i > 0 and d != 1]
    if math.prod(d for _, d in a) != math.prod(d for _, d in b):
        raise ValueError(f"cannot reshape {in_shape} to {out_shape} keeping the batch axis")
    groups = []
    i = j = 0
    while i < len(a):
        ins, size_in, i = [a[i][0]], a[i][1], i + 1
        outs, size_out, j = [b[j][0]], b[j][1], j + 1
        while size_in != size_out:
            if size_in < size_out:
                ins.append(a[i][0])
                size_in, i = size_in * a[i][1], i + 1
            else:
                outs.append(b[j][0])
                size_out, j = size_out * b[j][1], j + 1
        groups.append((ins, outs))
    return groups


def _place_size_one_axes(order: list[int], out_shape: tuple[int, ...]) -> Perm:
    rank = len(out_shape)
    pref = preferred(rank)
    if [a for a in pref if a in order] == order:
        return pref
    return (*order, *(a for a in range(rank) if a not in order))
