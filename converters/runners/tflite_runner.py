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
                model_path=self.spec.path, num_threads=self.spec.threads or None,
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
            it.set_tensor(detail["index"], feed[name])
        it.invoke()
        return self.named([it.get_tensor(d["index"]) for d in it.get_output_details()])
