"""Small Keras layers for the ONNX ops no stock Keras layer expresses exactly.

Registered under the ``modelzoo`` package, so a saved ``.keras`` file loads
in any process that has imported ``converters.keras``. Every layer takes
channels-last (Keras) axes; the builder translates ONNX axes before making one.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

_register = keras.saving.register_keras_serializable(package="modelzoo")
Pads2D = tuple[tuple[int, int], tuple[int, int]]


def _pads(padding: Any) -> Pads2D:
    (t, b), (l, r) = padding
    return (int(t), int(b)), (int(l), int(r))


@_register
class ConstantPadding2D(keras.layers.Layer):
    """Pads H and W of an NHWC tensor with ``value``.

    In front of max pooling the value is float32's lowest: padding then never
    wins a window, as in PyTorch, and the config stays valid JSON.
    """

    def __init__(self, padding: Pads2D, value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = _pads(padding)
        self.value = float(value)

    def call(self, x: Any) -> Any:
        (t, b), (l, r) = self.padding
        return ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=self.value)

    def compute_output_shape(self, shape: tuple) -> tuple:
        (t, b), (l, r) = self.padding
        grow = lambda d, p: None if d is None else d + p  # noqa: E731
        return (shape[0], grow(shape[1], t + b), grow(shape[2], l + r), shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "value": self.value}


def window_counts(size: int, kernel: int, stride: int, pad_lo: int, counted: tuple[int, int],
                  out: int) -> np.ndarray:
    """Elements each pooling window averages over, along one axis.

    Window ``i`` covers ``[i * stride - pad_lo, ... + kernel)`` of the input;
    what lies in ``[-counted[0], size + counted[1])`` counts.
    """
    starts = np.arange(out) * stride - pad_lo
    return np.minimum(starts + kernel, size + counted[1]) - np.maximum(starts, -counted[0])


@_register
class ExactAveragePooling2D(keras.layers.Layer):
    """PyTorch/ONNX average pooling with explicit padding and a per-window divisor.

    Covers what ``AveragePooling2D`` cannot: ``count_include_pad=0`` with
    padding, and ``ceil_mode`` windows that run past the padded input.
    ``padding`` is what is added around the input; ``counted`` is the part of
    it that counts towards a window's divisor (the declared pads when padding
    is counted, else none).
    """

    def __init__(self, pool_size: tuple[int, int], strides: tuple[int, int], padding: Pads2D,
                 counted: Pads2D, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_size = tuple(int(k) for k in pool_size)
        self.strides = tuple(int(s) for s in strides)
        self.padding = _pads(padding)
        self.counted = _pads(counted)

    def call(self, x: Any) -> Any:
        (t, b), (l, r) = self.padding
        x = ops.pad(x, [[0, 0], [t, b], [l, r], [0, 0]])
        kh, kw = self.pool_size
        pooled = ops.average_pool(x, self.pool_size, self.strides, "valid", "channels_last")
        rows, cols = (window_counts(int(x.shape[1 + d]) - sum(self.padding[d]), self.pool_size[d],
                                    self.strides[d], self.padding[d][0], self.counted[d],
                                    int(pooled.shape[1 + d])) for d in (0, 1))
        scale = (kh * kw) / np.outer(rows, cols)
        return pooled * ops.convert_to_tensor(scale[None, :, :, None].astype(np.float32))

    def compute_output_shape(self, shape: tuple) -> tuple:
        (t, b), (l, r) = self.padding
        out = lambda d, p, k, s: None if d is None else (d + p - k) // s + 1  # noqa: E731
        return (shape[0], out(shape[1], t + b, self.pool_size[0], self.strides[0]),
                out(shape[2], l + r, self.pool_size[1], self.strides[1]), shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "counted": self.counted}


@_register
class HardSigmoid(keras.layers.Layer):
    """ONNX HardSigmoid: ``clip(alpha * x + beta, 0, 1)``."""

    def __init__(self, alpha: float = 0.2, beta: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha, self.beta = float(alpha), float(beta)

    def call(self, x: Any) -> Any:
        return ops.clip(x * self.alpha + self.beta, 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


@_register
class Clip(keras.layers.Layer):
    """ONNX Clip with either bound optional."""

    def __init__(self, min_value: float | None = None, max_value: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_value = None if min_value is None else float(min_value)
        self.max_value = None if max_value is None else float(max_value)

    def call(self, x: Any) -> Any:
        if self.min_value is not None:
            x = ops.maximum(x, self.min_value)
        if self.max_value is not None:
            x = ops.minimum(x, self.max_value)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "min_value": self.min_value, "max_value": self.max_value}


@_register
class Erf(keras.layers.Layer):
    """The Gauss error function (the exact GELU is built from it)."""

    def call(self, x: Any) -> Any:
        return ops.erf(x)


BINARY = {"add": ops.add, "sub": ops.subtract, "mul": ops.multiply, "div": ops.divide,
          "pow": ops.power, "max": ops.maximum, "min": ops.minimum, "equal": ops.equal,
          "less": ops.less, "greater": ops.greater, "and": ops.logical_and,
          "or": ops.logical_or}


@_register
class ConstantBinary(keras.layers.Layer):
    """``x <op> c`` (or ``c <op> x``) with a constant ``c`` already in Keras layout."""

    def __init__(self, op: str, constant: Any, constant_first: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op = op
        self.constant = np.asarray(constant, dtype=np.float32)
        self.constant_first = bool(constant_first)

    def call(self, x: Any) -> Any:
        c = ops.convert_to_tensor(self.constant, dtype=x.dtype)
        return BINARY[self.op](c, x) if self.constant_first else BINARY[self.op](x, c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "op": self.op, "constant": self.constant.tolist(),
                "constant_first": self.constant_first}


@_register
class WeightBinary(keras.layers.Layer):
    """``x <op> w`` with a trainable weight ``w`` (ConvNeXt's layer scale)."""

    def __init__(self, op: str, shape: tuple[int, ...], weight_first: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op = op
        self.weight_shape = tuple(int(d) for d in shape)
        self.weight_first = bool(weight_first)

    def build(self, input_shape: tuple) -> None:
        self.weight = self.add_weight(name="weight", shape=self.weight_shape, initializer="zeros")

    def call(self, x: Any) -> Any:
        w = ops.cast(self.weight, x.dtype)
        return BINARY[self.op](w, x) if self.weight_first else BINARY[self.op](x, w)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "op": self.op, "shape": self.weight_shape,
                "weight_first": self.weight_first}


@_register
class Slice(keras.layers.Layer):
    """Strided slices along Keras ``axes``.

    Bounds come resolved by ``slice.indices``: non-negative, except a stop of
    -1 with a negative step, which means "through index 0".
    """

    def __init__(self, axes: list[int], starts: list[int], stops: list[int], steps: list[int],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axes, self.starts = [int(a) for a in axes], [int(s) for s in starts]
        self.stops, self.steps = [int(s) for s in stops], [int(s) for s in steps]

    def call(self, x: Any) -> Any:
        index = [slice(None)] * len(x.shape)
        for axis, start, stop, step in zip(self.axes, self.starts, self.stops, self.steps):
            index[axis] = slice(start, None if stop < 0 else stop, step)
        return x[tuple(index)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": self.axes, "starts": self.starts,
                "stops": self.stops, "steps": self.steps}


@_register
class Take(keras.layers.Layer):
    """ONNX Gather with constant indices along one Keras axis."""

    def __init__(self, axis: int, indices: int | list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.indices = indices if isinstance(indices, int) else [int(i) for i in indices]

    def call(self, x: Any) -> Any:
        return ops.take(x, self.indices, axis=self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "indices": self.indices}


@_register
class ReduceMean(keras.layers.Layer):
    """Mean over Keras ``axes`` (spatial means use GlobalAveragePooling2D instead)."""

    def __init__(self, axes: list[int], keepdims: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axes, self.keepdims = [int(a) for a in axes], bool(keepdims)

    def call(self, x: Any) -> Any:
        return ops.mean(x, axis=tuple(self.axes), keepdims=self.keepdims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": self.axes, "keepdims": self.keepdims}


_REDUCE = {"sum": ops.sum, "max": ops.max, "min": ops.min, "prod": ops.prod,
           "l2": lambda x, axis, keepdims: ops.sqrt(ops.sum(ops.square(x), axis, keepdims))}


@_register
class Reduce(keras.layers.Layer):
    """ReduceSum/Max/Min/Prod/L2 over Keras ``axes`` (means are :class:`ReduceMean`)."""

    def __init__(self, op: str, axes: list[int], keepdims: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op, self.axes, self.keepdims = str(op), [int(a) for a in axes], bool(keepdims)

    def call(self, x: Any) -> Any:
        return _REDUCE[self.op](x, axis=tuple(self.axes), keepdims=self.keepdims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "op": self.op, "axes": self.axes,
                "keepdims": self.keepdims}


@_register
class CumSum(keras.layers.Layer):
    """ONNX CumSum along one Keras axis: ``exclusive`` leaves each element out of its own
    sum, ``reverse`` sums from the end (timm's Fourier position encodings)."""

    def __init__(self, axis: int, exclusive: bool = False, reverse: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis, self.exclusive, self.reverse = int(axis), bool(exclusive), bool(reverse)

    def call(self, x: Any) -> Any:
        v = ops.flip(x, axis=self.axis) if self.reverse else x
        out = ops.cumsum(v, axis=self.axis)
        if self.exclusive:
            out = out - v
        return ops.flip(out, axis=self.axis) if self.reverse else out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "exclusive": self.exclusive,
                "reverse": self.reverse}


def interpolation_matrix(size: int, out: int, mode: str, coords: str,
                         cubic_a: float = -0.75) -> np.ndarray:
    """(out, size) weights of ONNX Resize along one axis, as ONNX Runtime and PyTorch
    compute it: taps outside the input clamped to its edge (``exclude_outside=0``), a linear
    source coordinate clamped to the input, a cubic one not."""
    x = np.arange(out, dtype=np.float64)
    scale = out / size
    if coords == "align_corners":
        src = x * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    elif coords == "asymmetric":
        src = x / scale
    elif coords == "pytorch_half_pixel" and out == 1:
        src = np.zeros(out)
    else:  # half_pixel, pytorch_half_pixel
        src = (x + 0.5) / scale - 0.5
    m = np.zeros((out, size))
    rows = np.arange(out)
    if mode == "linear":
        src = np.clip(src, 0, size - 1)
        x0 = np.floor(src).astype(int)
        t = src - x0
        np.add.at(m, (rows, x0), 1 - t)
        np.add.at(m, (rows, np.minimum(x0 + 1, size - 1)), t)
        return m
    a = cubic_a
    x0 = np.floor(src).astype(int)
    t = src - x0
    for offset in (-1, 0, 1, 2):
        d = np.abs(t - offset)
        w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                     np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))
        np.add.at(m, (rows, np.clip(x0 + offset, 0, size - 1)), w)
    return m


@_register
class ResizeMatrix(keras.layers.Layer):
    """Resize of NHWC maps as two matrix products, one per spatial axis, with the weights
    ONNX Resize uses (``interpolation_matrix``): bicubic, bilinear with align_corners, any
    size; the weights are rebuilt from the config, not stored."""

    def __init__(self, size: list[int], out: list[int], mode: str, coords: str,
                 cubic_a: float = -0.75, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size, self.out = [int(v) for v in size], [int(v) for v in out]
        self.mode, self.coords, self.cubic_a = str(mode), str(coords), float(cubic_a)
        self._mh, self._mw = (interpolation_matrix(i, o, self.mode, self.coords, self.cubic_a)
                              .astype(np.float32) for i, o in zip(self.size, self.out))

    def call(self, x: Any) -> Any:
        # two broadcast matrix products on reshaped maps, no transposes (TFLite's BATCH_MATMUL;
        # an einsum lowered there overflowed its buffer size for CrossViT)
        (h, w), (oh, ow), c = self.size, self.out, x.shape[3]
        y = ops.matmul(ops.convert_to_tensor(self._mh), ops.reshape(x, (-1, h, w * c)))
        y = ops.matmul(ops.convert_to_tensor(self._mw), ops.reshape(y, (-1, w, c)))
        return ops.reshape(y, (-1, oh, ow, c))

    def compute_output_shape(self, shape: tuple) -> tuple:
        return (shape[0], *self.out, shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "out": self.out, "mode": self.mode,
                "coords": self.coords, "cubic_a": self.cubic_a}


@_register
class ZeroInsert2D(keras.layers.Layer):
    """``stride - 1`` zeros between neighbouring pixels of NHWC maps, along H and W: the
    input a transposed convolution convolves (``(H - 1) * sh + 1`` rows out). Two 4-D
    reshape-pad-reshape steps, which TFLite's PAD takes."""

    def __init__(self, strides: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strides = [int(s) for s in strides]

    def call(self, x: Any) -> Any:
        (sh, sw), (_, h, w, c) = self.strides, x.shape
        y = ops.pad(ops.reshape(x, (-1, h, 1, w * c)), [[0, 0], [0, 0], [0, sh - 1], [0, 0]])
        y = ops.pad(ops.reshape(y, (-1, w, 1, c)), [[0, 0], [0, 0], [0, sw - 1], [0, 0]])
        y = ops.reshape(y, (-1, h * sh, w * sw, c))
        return y[:, :(h - 1) * sh + 1, :(w - 1) * sw + 1, :]

    def compute_output_shape(self, shape: tuple) -> tuple:
        (sh, sw), (n, h, w, c) = self.strides, shape
        return (n, (h - 1) * sh + 1, (w - 1) * sw + 1, c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "strides": self.strides}


CUSTOM_LAYERS = (ConstantPadding2D, ExactAveragePooling2D, HardSigmoid, Clip, Erf,
                 ConstantBinary, WeightBinary, Slice, Take, ReduceMean, Reduce, CumSum,
                 ResizeMatrix, ZeroInsert2D)
