"""PyTorch -> ONNX with readable names.

Uses the TorchScript exporter because its node names keep the PyTorch module
path (``/features/features.0/features.0.0/Conv``) and ``TrainingMode.PRESERVE``
on an eval-mode model keeps BatchNormalization as its own node, so per-layer
parity and the Keras builder both see every PyTorch layer. Initializers carry
the state-dict names (``features.0.1.running_var``).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx
    import torch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


def export_onnx(model: "torch.nn.Module", *, input_shape: tuple[int, ...], path: Path,
                opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` (eval mode) to ``path``; batch axis dynamic; checked by onnx.checker.

    Weights over protobuf's 2 GB go to one external data file beside it
    (``converters.onnx_io.data_path``)."""
    import shutil

    import onnx
    import torch

    from converters.onnx_io import check_onnx, save_onnx

    model = _export_friendly(model.eval())
    example = torch.zeros(input_shape, dtype=torch.float32)
    # The exporter writes a model over 2 GB as one file per weight beside its output:
    # a folder of its own keeps those out of the artifact folder.
    work = path.parent / f".{path.stem}.export"
    work.mkdir(exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model, (example,), str(work / path.name), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
            )
        proto = onnx.load(str(work / path.name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _name_shared_initializers(proto)
    save_onnx(proto, path)
    del proto
    check_onnx(path)
    return path


def _name_shared_initializers(proto: "onnx.ModelProto") -> None:
    """Give every parameter its own initializer under its state-dict name.

    The exporter deduplicates equal tensors (e.g. all-ones BN scales of a
    randomly initialised model) and reaches the duplicates through Identity
    nodes; that would make one parameter's edit change another's.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    keep = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            array = numpy_helper.to_array(inits[node.input[0]])
            proto.graph.initializer.append(numpy_helper.from_array(np.array(array), node.output[0]))
        else:
            keep.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)



def _export_friendly(model: "torch.nn.Module") -> "torch.nn.Module":
    """Rewrite known forward code into an equivalent that converters handle.

    Inception v3's ``transform_input`` slices the three channels, scales and
    shifts each, and concatenates them (Gather/Unsqueeze/Mul/Concat with a
    dynamic batch), which onnx2tf 1.28 cannot convert ("Output tensors of a
    Functional model must be the output of a TensorFlow Layer" at the Mul).
    The same per-channel ``x * scale + shift`` on a (1, 3, 1, 1) constant does
    the identical float operations per element, so the outputs are bitwise equal.
    """
    import types

    import torch

    if getattr(model, "transform_input", False) and hasattr(model, "_transform_input"):
        scale = torch.tensor([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5]).view(1, 3, 1, 1)
        shift = torch.tensor([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5,
                              (0.406 - 0.5) / 0.5]).view(1, 3, 1, 1)

        def channel_affine(self, x: torch.Tensor) -> torch.Tensor:
            return x * scale + shift

        model._transform_input = types.MethodType(channel_affine, model)
    return model
