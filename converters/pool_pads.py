"""MaxPool padding that int8 can quantize: edge padding instead of a -inf constant.

onnx2tf pads a MaxPool with explicit pads (or ``ceil_mode``) by a ``tf.pad`` of float32's
lowest value, then pools "valid". TFLite's int8 quantizer gives a PADV2 one scale for its
input, constant and output, so that constant stretches the tensor's range to
[-3.4e38, max]: a scale of 1.3e36, every activation quantizes to the zero point, and the
model computes nothing. XNNPACK then refuses the graph ("failed to create XNNPACK runtime",
requantization scales out of range) and the reference kernels can abort (resnet18's ADD).

Repeating the edge instead is exact: a PyTorch pooling window always holds at least one
input pixel, a window is an interval along each axis, so the nearest input pixel of every
padded pixel (what edge padding copies) is in the same window, and the max is unchanged. It
adds no value outside the tensor's range, so calibration sees the real one. The ONNX graph
given to onnx2tf gets ``Pad`` + an unpadded, floor-mode MaxPool (``edge_pad_max_pools``).
Where the input cannot be negative (a Relu's output, say, as in resnet18 and squeezenet)
zeros are as exact and cheaper: a PAD, which XNNPACK runs, where onnx2tf lowers an edge pad
to SYMMETRIC pads of one pixel (MIRROR_PAD, which XNNPACK leaves to the reference kernel).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


def pool_axis(size: int, k: int, s: int, lo: int, hi: int, ceil: bool) -> tuple[int, int]:
    """PyTorch's output size along one axis, and the end padding that yields it with
    "valid" (floor) pooling."""
    span = size + lo + hi - k
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + lo:  # the last window must start inside the input
        out -= 1
    return out, max((out - 1) * s + k - size - lo, 0)


def edge_pad_max_pools(model: Any) -> list[str]:
    """Rewrite, in place, every 2-D MaxPool of ``model`` (an ``onnx.ModelProto``) with pads or
    ``ceil_mode`` into a ``Pad`` (zeros after a Relu, else the edge) + MaxPool without either;
    the names of the padded tensors added. A pool it cannot rewrite exactly (auto_pad,
    dilation, the Indices output, ``ceil_mode`` on an input of unknown size, pads as wide as
    the kernel) stays as it is, and so does a graph older than opset 11 (pads an attribute)."""
    import onnx
    from onnx import helper, numpy_helper

    if next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0) < 11:
        return []
    sizes = _spatial_sizes(model)
    names = {o for n in model.graph.node for o in n.output} | {
        i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
    producer = _views(model)
    nodes, added = [], []
    for node in model.graph.node:
        pads = _edge_pads(node, sizes.get(node.input[0]) if node.input else None)
        if pads is None:
            nodes.append(node)
            continue
        # zeros when the input cannot be negative: as exact, and a PAD XNNPACK runs
        mode = "constant" if nonnegative(node.input[0], producer) else "edge"
        padded = _fresh(f"{node.output[0]}_pool_pad", names)
        widths = _fresh(f"{node.output[0]}_pool_pads", names)
        model.graph.initializer.append(numpy_helper.from_array(
            np.array([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], np.int64), widths))
        nodes.append(helper.make_node("Pad", [node.input[0], widths], [padded], mode=mode,
                                      name=_fresh(f"{node.name or padded}_pool_pad", names)))
        kept = [a for a in node.attribute if a.name not in ("pads", "ceil_mode")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.input[0] = padded
        nodes.append(node)
        added.append(padded)
    if added:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.checker.check_model(model)
    return added


def _edge_pads(node: Any, size: tuple[int, int] | None) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) edge padding for ``node``, or None to leave it."""
    from onnx import helper

    if node.op_type != "MaxPool" or (len(node.output) > 1 and node.output[1]):
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    kernel = list(attrs.get("kernel_shape", []))
    if (auto_pad not in (b"NOTSET", "NOTSET") or len(kernel) != 2
            or any(d != 1 for d in attrs.get("dilations", [1, 1]))):
        return None
    strides = list(attrs.get("strides", [1, 1]))
    t, l, b, r = list(attrs.get("pads", [0, 0, 0, 0]))
    if attrs.get("ceil_mode", 0):
        if size is None:
            return None
        b = pool_axis(size[0], kernel[0], strides[0], t, b, True)[1]
        r = pool_axis(size[1], kernel[1], strides[1], l, r, True)[1]
    if not (t or l or b or r) or max(t, b) >= kernel[0] or max(l, r) >= kernel[1]:
        return None  # a window wholly in the padding has no input pixel to repeat
    return t, l, b, r


_KEEPS_SIGN = {"MaxPool", "Concat", "Reshape", "Flatten", "Transpose", "Identity", "Squeeze",
               "Unsqueeze", "Pad"}  # nonnegative inputs give a nonnegative output (Pad: zeros)


@dataclass(frozen=True)
class OpView:
    """What ``nonnegative`` reads of the node that makes a tensor."""

    op_type: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]  # strings decoded


def nonnegative(tensor: str, producer: Mapping[str, OpView], depth: int = 32) -> bool:
    """Whether ``tensor`` cannot be negative: a Relu's output, or one of the ops in
    ``_KEEPS_SIGN`` over such tensors (a Pad only with zeros)."""
    node = producer.get(tensor)
    if node is None or depth == 0:
        return False
    if node.op_type == "Relu":
        return True
    if node.op_type not in _KEEPS_SIGN:
        return False
    if node.op_type == "Pad" and (node.attrs.get("mode", "constant") != "constant"
                                  or (len(node.inputs) > 2 and node.inputs[2])):
        return False
    if node.op_type in ("Reshape", "Squeeze", "Unsqueeze", "Pad"):  # the rest: shapes, axes
        return nonnegative(node.inputs[0], producer, depth - 1)
    return all(nonnegative(i, producer, depth - 1) for i in node.inputs if i)


def _views(model: Any) -> dict[str, OpView]:
    """Tensor name -> the ``OpView`` of the ONNX node that outputs it."""
    from onnx import helper

    out = {}
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        view = OpView(n.op_type, tuple(n.input),
                      {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()})
        out.update({o: view for o in n.output})
    return out


def _spatial_sizes(model: Any) -> dict[str, tuple[int, int]]:
    """Tensor name -> (H, W) for the rank-4 tensors of static size, by ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {}
    for info in (*g.input, *g.value_info, *g.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            out[info.name] = (dims[2].dim_value, dims[3].dim_value)
    return out


def _fresh(name: str, taken: set[str]) -> str:
    base, i = name, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name
