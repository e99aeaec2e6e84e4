"""Per-layer parity of an int8 (QDQ) ONNX artifact against the fp32 graph it was made from.

The reference is the fp32 model after ONNX Runtime's quantization pre-processing (shape
inference, BatchNormalization folded into Conv), so both graphs have the same nodes and
tensor names: a quantized tensor ``X`` reaches its consumers as ``X_DequantizeLinear_Output``,
which is compared with ``X`` of the fp32 graph (dequantized values against float values).

Capturing every tensor makes every ``DequantizeLinear`` output a graph output, which stops
ONNX Runtime fusing QDQ groups into integer kernels: the captured values are the QDQ
graph's simulated quantization (exact int8 rounding of every tensor, float arithmetic in
between). That is what locates quantization error; the artifact's own end-to-end numbers
come from its fused run (agreement, accuracy bench).

Besides the first tensor below the int8 bars, the report ranks layers by **SNR drop**: the
SNR of a node's output against the lowest SNR of its inputs. Quantization error accumulates
with depth, so an absolute bar mostly names the last layers; the drop names the layers
that add the most error themselves, which are the ones to keep in float.
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
    test: str  # "onnx_int8"
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
                + (f"first below {self.tolerance.min_snr_db:g} dB: {first.node} "
                   f"({first.diff.snr_db:.1f} dB)" if first else "every layer clears the bars"))
        drops = "; ".join(f"{lay.node} ({lay.drop_db:+.1f} dB -> {lay.diff.snr_db:.1f} dB)"
                          for lay in self.ranked(n))
        return f"{head}\n  largest SNR drops: {drops}"


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


def int8_parity_of(folder: Path, *, n_photos: int = 4) -> Int8Parity | None:
    """The int8 parity of a converted model's ``onnx_int8`` artifact (None without one), on
    real photos only: random images lie outside the calibrated ranges by construction.
    Writes ``parity/onnx_vs_onnx_int8.json`` beside the other parity reports."""
    import json

    from converters.manifest import load_manifest
    from converters.parity.run import parity_inputs

    manifest = load_manifest(folder)
    if "onnx_int8" not in {a.format for a in manifest.artifacts}:
        return None
    x = parity_inputs(manifest, n_photos=n_photos, n_random=0).x
    report = int8_parity(folder / manifest.artifact("onnx").path,
                         folder / manifest.artifact("onnx_int8").path, x)
    (folder / "parity").mkdir(exist_ok=True)
    (folder / "parity" / "onnx_vs_onnx_int8.json").write_text(
        json.dumps({"model": manifest.model, "weights": manifest.weights.label,
                    **report.to_json()}, indent=1) + "\n")
    return report
