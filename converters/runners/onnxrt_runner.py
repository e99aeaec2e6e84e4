"""ONNX Runtime runner (CPU execution provider; CUDA when asked and present)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from converters.runners.base import BaseRunner, RunnerSpec


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

    def activate_impl(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        model = mark_all_outputs(self.spec.path) if self.capture else self.spec.path
        self.session = ort.InferenceSession(model, opts, providers=list(self.providers))
        self._all_names = [o.name for o in self.session.get_outputs()]

    def deactivate_impl(self) -> None:
        self.session = None

    def run_prepared(self, feed: dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        if not self.capture:
            return self.named(self.session.run(list(self.spec.output_names), feed))
        values = dict(zip(self._all_names, self.session.run(self._all_names, feed)))
        self.captured = OrderedDict((k, v) for k, v in values.items()
                                    if k not in self.spec.output_names)
        return self.named([values[n] for n in self.spec.output_names])


def mark_all_outputs(path: str) -> bytes:
    """The model at ``path`` with every node's float output added to the graph outputs."""
    import onnx

    proto = onnx.load(path)
    present = {o.name for o in proto.graph.output}
    consts = {n.output[0] for n in proto.graph.node if n.op_type == "Constant"}
    for node in proto.graph.node:
        for name in node.output:
            if name and name not in present and name not in consts:
                proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
                present.add(name)
    return proto.SerializeToString()
