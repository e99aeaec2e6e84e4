"""TFLite runner (LiteRT interpreter, XNNPACK on CPU, fixed thread count)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from converters.runners.base import BaseRunner, RunnerSpec


class TfliteRunner(BaseRunner):
    def __init__(self, spec: RunnerSpec, *, preserve_all_tensors: bool = False) -> None:
        super().__init__(spec)
        self.preserve_all_tensors = preserve_all_tensors
        self.interpreter = None
        self._shapes: dict[str, tuple[int, ...]] = {}

    def activate_impl(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from converters.tf_compat import native_stderr_silenced

        with native_stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate" per model
            self.interpreter = Interpreter(
                model_path=self.spec.path, num_threads=self.threads or None,
                experimental_preserve_all_tensors=self.preserve_all_tensors)
            self.interpreter.allocate_tensors()
        self._shapes = {}

    def deactivate_impl(self) -> None:
        self.interpreter = None

    def _resize(self, feed: dict[str, np.ndarray]) -> None:
        shapes = {n: feed[n].shape for n in self.spec.input_names}
        if shapes == self._shapes:
            return
        for detail, name in zip(self.interpreter.get_input_details(), self.spec.input_names):
            self.interpreter.resize_tensor_input(detail["index"], list(shapes[name]))
        self.interpreter.allocate_tensors()
        self._shapes = shapes

    def run_prepared(self, feed: dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        self._resize(feed)
        it = self.interpreter
        for detail, name in zip(it.get_input_details(), self.spec.input_names):
            it.set_tensor(detail["index"], _to_tensor(feed[name], detail))
        it.invoke()
        return self.named([_from_tensor(it.get_tensor(d["index"]), d)
                           for d in it.get_output_details()])


def _to_tensor(x: np.ndarray, detail: dict) -> np.ndarray:
    """A float feed for an integer input (full-integer int8 models): quantized with the
    input's own scale and zero point, as a caller of such a model must."""
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer) or np.issubdtype(x.dtype, np.integer):
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _from_tensor(y: np.ndarray, detail: dict) -> np.ndarray:
    """An integer output back to float (scale * (q - zero point)); float outputs as they are."""
    if not np.issubdtype(y.dtype, np.integer):
        return y
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
