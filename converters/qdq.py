"""What the int8 modules share about ONNX Runtime's QDQ graphs: the fp32 graph quantization
starts from, and how a quantized tensor is named where its consumers read it."""
from __future__ import annotations

from pathlib import Path

# a quantized tensor ``X`` reaches its consumers as ``X_DequantizeLinear_Output``
DQ_SUFFIX = "_DequantizeLinear_Output"


def prepare_for_quantization(onnx_path: Path, out_path: Path) -> None:
    """ORT's pre-processing: shape inference and graph optimisation. The export keeps
    BatchNormalization as its own node (parity needs it); folded into the Conv here, its
    scale lands in the Conv's per-channel int8 weights instead of a float op between
    quantized tensors."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(onnx_path), str(out_path))
