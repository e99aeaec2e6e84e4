"""Custom Keras layers for transformers: batch-merging reshapes, batched matmul, einsum, select.

Registered under the ``modelzoo`` package like ``converters.keras.layers``.
Axis 0 of every tensor here may hold ``factor * batch`` entries (Swin's
windows, ViT's heads), so these layers reshape with ``-1`` there and never
assume it is the plain batch.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from converters.keras.layers import BINARY

_register = keras.saving.register_keras_serializable(package="modelzoo")


def _ints(values: Any) -> list[int]:
    return [int(v) for v in values]


@_register
class BatchReshape(keras.layers.Layer):
    """An ONNX Reshape that merges the batch with other axes or splits it off.

    Transposes the tensor into ONNX axis order (``to_onnx``), reshapes with
    ``-1`` at the batch-dependent axis, and transposes into the Keras layout
    (``to_keras``), which again puts the batch-dependent axis first.
    """

    def __init__(self, to_onnx: list[int], target: list[int], to_keras: list[int],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to_onnx, self.target, self.to_keras = _ints(to_onnx), _ints(target), _ints(to_keras)

    def call(self, x: Any) -> Any:
        if self.to_onnx != sorted(self.to_onnx):
            x = ops.transpose(x, self.to_onnx)
        x = ops.reshape(x, self.target)
        if self.to_keras != sorted(self.to_keras):
            x = ops.transpose(x, self.to_keras)
        return x

    def compute_output_shape(self, shape: tuple) -> tuple:
        dims = [None if d == -1 else d for d in self.target]
        return tuple(dims[a] for a in self.to_keras)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "to_onnx": self.to_onnx, "target": self.target,
                "to_keras": self.to_keras}


@_register
class MatMul(keras.layers.Layer):
    """``a @ b`` over the last two axes of two model tensors (attention scores and values)."""

    def call(self, inputs: list[Any]) -> Any:
        return ops.matmul(inputs[0], inputs[1])


@_register
class Einsum(keras.layers.Layer):
    """``einsum`` on model tensors; the equation is already written in Keras axis order."""

    def __init__(self, equation: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.equation = str(equation)

    def call(self, inputs: list[Any]) -> Any:
        return ops.einsum(self.equation, *inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "equation": self.equation}


@_register
class Binary(keras.layers.Layer):
    """Elementwise ``a <op> b`` of two model tensors that no Keras merge layer does (Div, Equal)."""

    def __init__(self, op: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op = str(op)

    def call(self, inputs: list[Any]) -> Any:
        return BINARY[self.op](inputs[0], inputs[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "op": self.op}


_UNARY = {"sqrt": ops.sqrt, "exp": ops.exp, "log": ops.log, "abs": ops.abs, "neg": ops.negative,
          "reciprocal": lambda x: 1.0 / x, "floor": ops.floor, "ceil": ops.ceil,
          "not": ops.logical_not, "softplus": ops.softplus, "sin": ops.sin, "cos": ops.cos,
          "gelu_tanh": lambda x: keras.activations.gelu(x, approximate=True)}


@_register
class Unary(keras.layers.Layer):
    """An elementwise function with no Keras layer of its own (Sqrt, Exp, Not, ...)."""

    def __init__(self, op: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op = str(op)

    def call(self, x: Any) -> Any:
        return _UNARY[self.op](x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "op": self.op}


@_register
class BroadcastTo(keras.layers.Layer):
    """Broadcast to ``shape`` (every Keras axis but 0, which keeps its size)."""

    def __init__(self, shape: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shape = [int(d) for d in shape]

    def call(self, x: Any) -> Any:
        return ops.broadcast_to(x, (ops.shape(x)[0], *self.shape))

    def compute_output_shape(self, shape: tuple) -> tuple:
        return (shape[0], *self.shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "shape": self.shape}


@_register
class Tile(keras.layers.Layer):
    """Repeat every Keras axis but 0 ``repeats`` times (ONNX Tile of a model tensor)."""

    def __init__(self, repeats: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.repeats = [int(r) for r in repeats]

    def call(self, x: Any) -> Any:
        return ops.tile(x, [1, *self.repeats])

    def compute_output_shape(self, shape: tuple) -> tuple:
        return (shape[0], *(None if d is None else d * r for d, r in zip(shape[1:], self.repeats)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "repeats": self.repeats}


def _dtype_name(dtype: Any) -> str:
    return np.dtype(dtype).name if not isinstance(dtype, str) else dtype


@_register
class Where(keras.layers.Layer):
    """ONNX Where: ``cond ? x : y``; each operand a model tensor or a constant in Keras layout.

    ``constants`` holds the known operands by position (0 cond, 1 x, 2 y);
    the layer's inputs are the others, in position order.
    """

    def __init__(self, constants: dict[str, Any], dtypes: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dtypes = {str(k): str(v) for k, v in dtypes.items()}
        self.constants = {str(k): np.asarray(v, dtype=self.dtypes[str(k)])
                          for k, v in constants.items()}

    def call(self, inputs: Any) -> Any:
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        args = [ops.convert_to_tensor(self.constants[str(i)]) if str(i) in self.constants
                else tensors.pop(0) for i in range(3)]
        return ops.where(ops.cast(args[0], "bool"), args[1], args[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dtypes": self.dtypes,
                "constants": {k: v.tolist() for k, v in self.constants.items()}}


@_register
class Cast(keras.layers.Layer):
    """A dtype change of a model tensor (a boolean mask to float)."""

    def __init__(self, to: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to = str(to)

    def call(self, x: Any) -> Any:
        return ops.cast(x, self.to)

    def compute_output_spec(self, x: Any) -> Any:
        return keras.KerasTensor(x.shape, dtype=self.to)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "to": self.to}


@_register
class BatchBroadcast(keras.layers.Layer):
    """A value repeated over the batch (ViT's class token, ``zeros(batch, ...)``).

    ``shape`` is the value's shape with the batch-dependent axis first and of
    size 1; the output has ``factor`` times the reference tensor's batch
    there. A model parameter is a trainable weight, anything else a constant.
    """

    def __init__(self, shape: list[int], factor: int = 1, trainable_value: bool = True,
                 constant: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value_shape, self.factor = _ints(shape), int(factor)
        self.trainable_value = bool(trainable_value)
        self.constant = None if constant is None else np.asarray(constant, dtype=np.float32)

    def build(self, input_shape: tuple) -> None:
        if self.constant is None:
            self.value = self.add_weight(name="value", shape=tuple(self.value_shape),
                                         initializer="zeros", trainable=self.trainable_value)

    def call(self, reference: Any) -> Any:
        value = self.value if self.constant is None else ops.convert_to_tensor(self.constant)
        batch = ops.shape(reference)[0] * self.factor
        return ops.broadcast_to(ops.cast(value, reference.dtype), (batch, *self.value_shape[1:]))

    def compute_output_shape(self, shape: tuple) -> tuple:
        return (None, *self.value_shape[1:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "shape": self.value_shape, "factor": self.factor,
                "trainable_value": self.trainable_value,
                "constant": None if self.constant is None else self.constant.tolist()}


@_register
class PadAxes(keras.layers.Layer):
    """Padding of any Keras axes but the first (``F.pad`` on channels-last tokens): with
    ``value`` (``mode="constant"``), or mirrored without the edge (``"reflect"``)."""

    def __init__(self, pads: list[list[int]], value: float = 0.0, mode: str = "constant",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pads = [_ints(p) for p in pads]
        self.value = float(value)
        self.mode = mode

    def call(self, x: Any) -> Any:
        if self.mode == "reflect":
            return ops.pad(x, self.pads, mode="reflect")
        return ops.pad(x, self.pads, constant_values=self.value)

    def compute_output_shape(self, shape: tuple) -> tuple:
        return tuple(None if d is None else d + lo + hi for d, (lo, hi) in zip(shape, self.pads))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pads": self.pads, "value": self.value,
                "mode": self.mode}


TENSOR_LAYERS = (BatchReshape, MatMul, Binary, Einsum, Unary, BroadcastTo, Tile, Where, Cast,
                 BatchBroadcast, PadAxes)
