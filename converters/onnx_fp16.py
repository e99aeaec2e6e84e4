"""An fp16 copy of an fp32 ONNX model, for ONNX Runtime on GPU (CUDA / TensorRT EPs).

Weights and activations become fp16; the graph's input and output stay fp32
(``keep_io_types``), so the runner feeds the same arrays as for the fp32 model. The
converter is ONNX Runtime's own (``onnxruntime.transformers.float16``), else
onnxconverter-common's; ``converter_problem`` says in one line when neither is installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import onnx

_CONVERTERS = ("onnxruntime.transformers.float16", "onnxconverter_common.float16")


def _converter() -> Callable[..., Any] | None:
    import importlib

    for name in _CONVERTERS:
        try:
            return importlib.import_module(name).convert_float_to_float16
        except (ImportError, AttributeError):
            continue
    return None


def converter_problem() -> str:
    """"" when an fp16 converter is importable, else why not (one line)."""
    if _converter() is not None:
        return ""
    return ("no fp16 ONNX converter: neither onnxruntime.transformers.float16 nor "
            "onnxconverter-common is importable")


def to_fp16(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A copy of ``model`` with fp16 weights and arithmetic, fp32 input and output (the
    converters change the model they are given: ``model`` itself is left as it was)."""
    import onnx

    convert = _converter()
    if convert is None:
        raise RuntimeError(converter_problem())
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    # disable_shape_infer: the exporter's shapes are already there, and ONNX's shape
    # inference rejects some valid opset-17 graphs it would re-infer.
    return convert(copy, keep_io_types=True, disable_shape_infer=True)


def write_fp16(src: Path, dest: Path) -> Path:
    """Convert the ONNX file ``src`` and save the fp16 model to ``dest``."""
    import onnx

    from converters.onnx_io import save_onnx

    dest.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(to_fp16(onnx.load(str(src))), dest)
    return dest


def round_weights_to_fp16(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A copy of ``model`` whose every float32 initializer and Constant is rounded to fp16
    and kept float32: fp16 storage, fp32 arithmetic, what an fp16 TFLite file (weights
    stored as fp16, dequantized at load) computes on a CPU. Parity's fp16 rounding floor."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)

    def rounded(tensor: "onnx.TensorProto") -> "onnx.TensorProto":
        values = numpy_helper.to_array(tensor)
        return numpy_helper.from_array(values.astype(np.float16).astype(np.float32),
                                       tensor.name)

    graphs = [copy.graph]
    while graphs:  # subgraphs (If, Loop, Scan) hold weights of their own
        graph = graphs.pop()
        for i, init in enumerate(graph.initializer):
            if init.data_type == onnx.TensorProto.FLOAT:
                graph.initializer[i].CopyFrom(rounded(init))
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and \
                        attr.t.data_type == onnx.TensorProto.FLOAT:
                    attr.t.CopyFrom(rounded(attr.t))
                graphs.extend([attr.g] if attr.type == onnx.AttributeProto.GRAPH
                              else list(attr.graphs))
    return copy
