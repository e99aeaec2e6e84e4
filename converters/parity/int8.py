"""Per-layer parity of int8 artifacts against the fp32 graph each was made from: ONNX
Runtime's QDQ graph (``onnx_int8``) and TFLite's integer model (``tflite_int8``).

**ONNX.** The reference is the fp32 model after ONNX Runtime's quantization
pre-processing (shape inference, BatchNormalization folded into Conv), so both graphs have
the same nodes and tensor names: a quantized tensor ``X`` reaches its consumers as
``X_DequantizeLinear_Output``, which is compared with ``X`` of the fp32 graph (dequantized
values against float values).

Capturing every tensor makes every ``DequantizeLinear`` output a graph output, which stops
ONNX Runtime fusing QDQ groups into integer kernels: the captured values are the QDQ
graph's simulated quantization (exact int8 rounding of every tensor, float arithmetic in
between). That is what locates quantization error; the artifact's own end-to-end numbers
come from its fused run (agreement, accuracy bench).

Besides the first tensor below the int8 bars, the report ranks layers by **SNR drop**: the
SNR of a node's output against the lowest SNR of its inputs. Quantization error accumulates
with depth, so an absolute bar mostly names the last layers; the drop names the layers
that add the most error themselves, which are the ones to keep in float.

**TFLite.** The reference is the float model TFLiteConverter makes from the same SavedModel
the int8 file was quantized from: the quantizer rewrites that graph op for op, so every op
of the int8 model writes a tensor of the same name (an op's output name is also what
``denylisted_nodes`` takes to keep it float). Both run with every tensor preserved, one photo
at a time; an int8 tensor is dequantized with its own scale and zero point. Unlike the ONNX
capture, these are the int8 kernels' real outputs (XNNPACK or TFLite's reference kernels),
not a simulation.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.parity.metrics import TensorDiff, diff_tensors
from converters.qdq import DQ_SUFFIX, prepare_for_quantization
from converters.tolerance import DEFAULT_POLICY, TensorTolerance
from zoo import atomic


@dataclass(frozen=True)
class LayerDrop:
    diff: TensorDiff  # the node's output, dequantized, against fp32
    node: str  # ONNX node name (what ``nodes_to_exclude`` takes)
    input_snr_db: float  # lowest SNR among its inputs (inf: graph input or weights only)

    @property
    def drop_db(self) -> float:
        if math.isinf(self.input_snr_db) and math.isinf(self.diff.snr_db):
            return 0.0
        return self.input_snr_db - self.diff.snr_db

    def to_json(self) -> dict[str, Any]:
        drop = self.drop_db
        return {"node": self.node, "input_snr_db": _finite(self.input_snr_db),
                "drop_db": _finite(drop), **self.diff.to_json()}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass
class Int8Parity:
    reference: str  # "onnx (fp32, BatchNormalization folded)"
    test: str  # "onnx_int8", "tflite_int8"
    n_images: int
    tolerance: TensorTolerance
    layers: list[LayerDrop] = field(default_factory=list)  # graph order

    @property
    def first_below(self) -> LayerDrop | None:
        return next((lay for lay in self.layers if not lay.diff.passed), None)

    def ranked(self, n: int | None = None) -> list[LayerDrop]:
        """Layers by SNR drop, largest first."""
        key = [lay for lay in self.layers if math.isfinite(lay.drop_db)]
        return sorted(key, key=lambda lay: -lay.drop_db)[:n]

    @property
    def passed(self) -> bool:
        return all(lay.diff.passed for lay in self.layers)

    def to_json(self) -> dict[str, Any]:
        first = self.first_below
        return {"reference": self.reference, "test": self.test, "n_images": self.n_images,
                "min_snr_db": self.tolerance.min_snr_db, "min_cosine": self.tolerance.min_cosine,
                "passed": self.passed,
                "first_below": first.to_json() if first else None,
                "largest_drops": [lay.to_json() for lay in self.ranked(10)],
                "layers": [lay.to_json() for lay in self.layers]}

    def summary(self, n: int = 5) -> str:
        first = self.first_below
        head = (f"{self.test} vs {self.reference}: {len(self.layers)} layers; "
                + (f"first below {self.tolerance.min_snr_db:g} dB: {_short(first.node)} "
                   f"({first.diff.snr_db:.1f} dB)" if first else "every layer clears the bars"))
        drops = "; ".join(f"{_short(lay.node)} ({lay.drop_db:+.1f} dB -> "
                          f"{lay.diff.snr_db:.1f} dB)" for lay in self.ranked(n))
        return f"{head}\n  largest SNR drops: {drops}"


def _short(node: str) -> str:
    """A TFLite tensor's name lists every TF op fused into it (``model/relu6/Relu6;model/
    add/AddV2;...``): the first is the layer's."""
    return node.split(";", 1)[0]


def fp32_reference(onnx_path: Path, out_path: Path) -> Path:
    """The fp32 graph int8 quantization starts from (``converters.quantize``)."""
    prepare_for_quantization(onnx_path, out_path)
    return out_path


def int8_parity(fp32_onnx: Path, int8_onnx: Path, x: np.ndarray, *,
                tol: TensorTolerance | None = None, prepared: Path | None = None) -> Int8Parity:
    """Every float tensor of the (pre-processed) fp32 graph against its dequantized int8
    counterpart on input ``x``; ``prepared``: the pre-processed fp32 graph, when at hand."""
    import onnx

    from converters.parity.capture import capture_onnx

    tol = tol or DEFAULT_POLICY.by_precision["int8"].tensors
    with tempfile.TemporaryDirectory(prefix="modelzoo-int8-parity-") as tmp:
        ref_path = prepared or fp32_reference(fp32_onnx, Path(tmp) / "fp32.onnx")
        ref = capture_onnx(ref_path, x).tensors
    # the int8 graph's own nodes: the quantizer drops a Relu after a Conv (uint8 clamps at
    # its zero point), so the Conv there writes the Relu's tensor; its node name is what
    # ``nodes_to_exclude`` takes
    graph = onnx.load(str(int8_onnx)).graph
    test = capture_onnx(int8_onnx, x, "onnx_int8").tensors
    snr: dict[str, float] = {}
    report = Int8Parity("onnx (fp32, BatchNormalization folded)", "onnx_int8", len(x), tol)
    for name in [i.name for i in graph.input]:
        if name in ref and (t := test.get(name + DQ_SUFFIX)) is not None:
            snr[name + DQ_SUFFIX] = diff_tensors(ref[name], t, name=name, module="", op="input",
                                                 depth=-1, tol=tol).snr_db
    nodes = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for depth, node in enumerate(nodes):
        for out in node.output:
            t = test.get(out + DQ_SUFFIX, test.get(out))
            r = ref.get(out)
            if r is None or t is None or r.shape != t.shape or not np.issubdtype(r.dtype,
                                                                                 np.floating):
                continue
            d = diff_tensors(r, t, name=out, module="", op=node.op_type, depth=depth, tol=tol,
                             labels=("fp32", "int8"))
            snr[out] = snr[out + DQ_SUFFIX] = d.snr_db
            inputs = [snr[i] for i in node.input if i in snr]
            report.layers.append(LayerDrop(d, node.name, min(inputs) if inputs else math.inf))
    return report


def tflite_int8_parity(saved_model: Path, int8_tflite: Path, x: np.ndarray, *,
                       tol: TensorTolerance | None = None) -> Int8Parity:
    """Every op output of ``int8_tflite`` (dequantized) against the same tensor of the float
    TFLite model of ``saved_model`` on input ``x`` (NCHW; run as NHWC)."""
    from converters.runners.base import to_nhwc
    from converters.tf_compat import native_stderr_silenced, preload_triton

    preload_triton()
    import tensorflow as tf

    tol = tol or DEFAULT_POLICY.by_precision["int8"].tensors
    with native_stderr_silenced():
        reference = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
    xs = to_nhwc(x)
    ref, ref_graph = _tflite_tensors(reference, xs)
    test, graph = _tflite_tensors(int8_tflite.read_bytes(), xs)
    # the logits: the int8 model's last op writes them under another name, and a DEQUANTIZE
    # (float output) or nothing (int8 output) gives them the graph output's name
    alias = dict(zip(graph.outputs_by_source, ref_graph.outputs))
    snr = {name: diff_tensors(ref[name], test[name], name=name, module="", op="input",
                              depth=-1, tol=tol).snr_db
           for name in graph.inputs if name in ref and name in test}
    report = Int8Parity("tflite (fp32, TFLiteConverter of the same SavedModel)",
                        "tflite_int8", len(x), tol)
    for depth, (op, out, inputs) in enumerate(graph.ops):
        r, t = ref.get(alias.get(out, out)), test.get(out)
        if r is None or t is None or r.shape != t.shape:
            continue
        d = diff_tensors(r, t, name=out, module="", op=op, depth=depth, tol=tol,
                         labels=("fp32", "int8"))
        snr[out] = d.snr_db
        ins = [snr[i] for i in inputs if i in snr]
        report.layers.append(LayerDrop(d, out, min(ins) if ins else math.inf))
    return report


@dataclass(frozen=True)
class _TfliteGraph:
    ops: list[tuple[str, str, list[str]]]  # (op, output tensor, source input tensors) in order
    inputs: list[str]  # the model's input tensors
    outputs: list[str]  # the model's output tensors
    outputs_by_source: list[str]  # the ops' tensors that become them (through (DE)QUANTIZE)


def _tflite_tensors(model: bytes, xs: np.ndarray) -> tuple[dict[str, np.ndarray], _TfliteGraph]:
    """Every op's output tensor (float, dequantized where int8) over the images of ``xs``
    (NHWC), one at a time, by name; and the op graph, QUANTIZE and DEQUANTIZE ops looked
    through (they only change a tensor's type)."""
    from ai_edge_litert.interpreter import Interpreter

    from converters.runners.tflite_runner import _to_tensor
    from converters.tf_compat import native_stderr_silenced
    from converters.tflite_int8 import CASTS, cast_source

    with native_stderr_silenced():
        it = Interpreter(model_content=model, experimental_preserve_all_tensors=True)
    # the op graph (as tflite_int8.tflite_readers), read before a delegate adds its own nodes
    ops = it._get_ops_details()  # noqa: SLF001
    it.allocate_tensors()
    details = {t["index"]: t for t in it.get_tensor_details()}
    source = cast_source(ops)
    kept = [op for op in ops if op["op_name"] not in CASTS and len(op["outputs"])]
    inp = it.get_input_details()[0]
    # the input as the first layers read it: its QUANTIZE's output (float input), or itself;
    # kept under the input's name, so its quantization error is the first layers' input SNR
    read = next((op["outputs"][0] for op in ops
                 if op["op_name"] == "QUANTIZE" and op["inputs"][0] == inp["index"]),
                inp["index"])
    wanted = [read, *(op["outputs"][0] for op in kept)]
    batches: dict[int, list[np.ndarray]] = {i: [] for i in wanted}
    for image in xs:
        it.set_tensor(inp["index"], _to_tensor(image[None].astype(np.float32), inp))
        it.invoke()
        for i in wanted:
            batches[i].append(_dequantized(it.get_tensor(i), details[i]))
    names = {i: d["name"] for i, d in details.items()}
    names[read] = inp["name"]
    graph = _TfliteGraph(
        [(op["op_name"], names[op["outputs"][0]],
          [names[source(t)] for t in op["inputs"] if t >= 0]) for op in kept],
        [inp["name"]],
        [d["name"] for d in it.get_output_details()],
        [names[source(d["index"])] for d in it.get_output_details()])
    return {names[i]: np.concatenate(v) for i, v in batches.items()}, graph


def _dequantized(t: np.ndarray, detail: dict) -> np.ndarray:
    if t.dtype == np.float32:
        return t.copy()
    q = detail["quantization_parameters"]
    scales, zeros = q["scales"], q["zero_points"]
    if len(scales) != 1:  # per-channel: weights, never an op's output
        raise ValueError(f"{detail['name']}: per-channel scales on an activation")
    return ((t.astype(np.float32) - zeros[0]) * scales[0]).astype(np.float32)


PARITY_FILES = {"onnx_int8": "onnx_vs_onnx_int8.json",
                "tflite_int8": "tflite_fp32_vs_tflite_int8.json"}


def int8_parity_of(folder: Path, *, n_photos: int = 4) -> list[Int8Parity]:
    """The int8 parity of a converted model's ``onnx_int8`` and ``tflite_int8`` artifacts
    (those it has), on real photos only: random images lie outside the calibrated ranges by
    construction. Writes ``parity/<PARITY_FILES[format]>`` beside the other parity reports."""
    from converters.manifest import load_manifest
    from converters.parity.run import parity_inputs

    manifest = load_manifest(folder)
    have = {a.format for a in manifest.artifacts}
    if not have & set(PARITY_FILES):
        return []
    x = parity_inputs(manifest, n_photos=n_photos, n_random=0).x
    reports = []
    if "onnx_int8" in have:
        reports.append(int8_parity(folder / manifest.artifact("onnx").path,
                                   folder / manifest.artifact("onnx_int8").path, x))
    if "tflite_int8" in have:
        reports.append(tflite_int8_parity(folder / manifest.artifact("tf_savedmodel").path,
                                          folder / manifest.artifact("tflite_int8").path, x))
    (folder / "parity").mkdir(exist_ok=True)
    for report in reports:
        atomic.write_json(folder / "parity" / PARITY_FILES[report.test],
                          {"model": manifest.model, "weights": manifest.weights.label,
                           **report.to_json()}, indent=1)
    return reports
