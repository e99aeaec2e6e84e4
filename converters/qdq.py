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


def readers(int8_onnx: Path) -> dict[str, list[str]]:
    """Node name -> the (non-Q/DQ) nodes that read its output, through Q/DQ pairs."""
    import onnx

    graph = onnx.load(str(int8_onnx)).graph
    nodes = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    producer = {o: n.name for n in nodes for o in n.output}
    out: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.input:
            src = producer.get(i[:-len(DQ_SUFFIX)] if i.endswith(DQ_SUFFIX) else i)
            if src and n.name not in out.setdefault(src, []):
                out[src].append(n.name)
    return out
