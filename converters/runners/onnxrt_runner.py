"""ONNX Runtime runner (CPU execution provider; CUDA when asked and present)."""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from converters.runners.base import BaseRunner, RunnerSpec

if TYPE_CHECKING:
    import onnx


class OnnxrtRunner(BaseRunner):
    """With ``capture=True`` every node output is a graph output too (Polygraphy's
    MARK_ALL) and lands in ``self.captured`` keyed by its ONNX tensor name."""

    def __init__(self, spec: RunnerSpec, *, providers: tuple[str, ...] = ("CPUExecutionProvider",),
                 capture: bool = False) -> None:
        super().__init__(spec)
        self.providers = providers
        self.capture = capture
        self.session = None
        self.captured: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._scratch = contextlib.ExitStack()

    def activate_impl(self) -> None:
        import onnxruntime as ort

        from converters.onnx_io import scratch_model

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        model = self.spec.path
        if self.capture:
            model = self._scratch.enter_context(
                scratch_model(mark_all_outputs(self.spec.path), Path(self.spec.path)))
        self.session = ort.InferenceSession(model, opts, providers=list(self.providers))
        self._all_names = [o.name for o in self.session.get_outputs()]

    def deactivate_impl(self) -> None:
        self.session = None
        self._scratch.close()

    def run_prepared(self, feed: dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        if not self.capture:
            return self.named(self.session.run(list(self.spec.output_names), feed))
        values = dict(zip(self._all_names, self.session.run(self._all_names, feed)))
        self.captured = OrderedDict((k, v) for k, v in values.items()
                                    if k not in self.spec.output_names)
        return self.named([values[n] for n in self.spec.output_names])


def mark_all_outputs(path: str) -> "onnx.ModelProto":
    """The model at ``path`` with every node's output added to the graph outputs (its
    external weights, if any, left where they are: ``converters.onnx_io.scratch_model``)."""
    import onnx

    from converters.onnx_io import load_structure

    proto = load_structure(Path(path))
    present = {o.name for o in proto.graph.output}
    consts = {n.output[0] for n in proto.graph.node if n.op_type == "Constant"}
    for node in proto.graph.node:
        for name in node.output:
            if name and name not in present and name not in consts:
                proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
                present.add(name)
    return proto
