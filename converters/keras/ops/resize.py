"""Resize of NCHW feature maps (``F.interpolate``, ``nn.Upsample``) as Keras layers.

PyTorch exports ``nearest`` as ``coordinate_transformation_mode=asymmetric`` with
``nearest_mode=floor``: output pixel ``i`` reads input ``floor(i / scale)``, which for an
integer scale is a repeat (``UpSampling2D``) up and a strided slice down. ``bilinear``
without ``align_corners`` is ``half_pixel`` (``pytorch_half_pixel``), what Keras'
``Resizing`` (``tf.image.resize``, no antialias) computes. Bicubic (PyTorch's a = -0.75,
which TensorFlow's resize does not use) and ``align_corners`` are two matrix products
with ONNX's weights (``ResizeMatrix``). Other modes are refused by name.
"""
from __future__ import annotations

import math

import keras

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layers import ResizeMatrix, Slice
from converters.keras.layout import Sym, channels_last
from converters.keras.ops.registry import register

HALF_PIXEL = ("half_pixel", "pytorch_half_pixel")


def _out_size(ctx: BuildContext, node: Node, x: Sym) -> tuple[int, int]:
    """(H, W) out, from ``sizes`` or from ``scales`` (floor, as ONNX); N and C must stay."""
    shape = x.onnx_shape
    sizes = ctx.const(node, 3)
    if sizes is not None and sizes.value.size:
        out = [int(v) for v in sizes.value.reshape(-1)]
        if len(out) == 2:  # opset 18 ``axes``: the spatial ones
            out = [shape[0], shape[1], *out]
    else:
        scales = ctx.const(node, 2)
        if scales is None or not scales.value.size:
            raise node.unsupported("neither scales nor sizes known at build time")
        factors = [float(v) for v in scales.value.reshape(-1)]
        if factors[:2] != [1.0, 1.0]:
            raise node.unsupported(f"scaling the batch or channel axis ({factors})")
        out = [shape[0], shape[1], *(math.floor(d * f) for d, f in zip(shape[2:], factors[2:]))]
    if out[1] != shape[1] or (shape[0] is not None and out[0] != shape[0]):
        raise node.unsupported(f"resizing the batch or channel axis ({shape} -> {out})")
    return int(out[2]), int(out[3])


@register("Resize", note="on NCHW feature maps: nearest (asymmetric, floor; integer "
                         "factors), bilinear and bicubic (any coordinate mode but "
                         "tf_crop_and_resize, no antialias)")
def resize(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    if x.rank != 4:
        raise node.unsupported(f"only NCHW feature maps (rank 4), got rank {x.rank}")
    x = ctx.to_layout(node, x, channels_last(4))
    h, w = x.onnx_shape[2:]
    oh, ow = _out_size(ctx, node, x)
    mode = node.attr("mode", "nearest")
    coords = node.attr("coordinate_transformation_mode", "half_pixel")
    name = ctx.layer_name(node)
    if mode == "nearest" and coords == "asymmetric" and node.attr("nearest_mode",
                                                                  "round_prefer_floor") == "floor":
        layer = _nearest(node, (h, w), (oh, ow), name)
    elif mode == "linear" and coords in HALF_PIXEL and not node.attr("antialias", 0):
        layer = keras.layers.Resizing(oh, ow, interpolation="bilinear", name=name)
    elif mode in ("linear", "cubic") and coords in (*HALF_PIXEL, "align_corners", "asymmetric") \
            and not node.attr("antialias", 0) and not node.attr("exclude_outside", 0):
        layer = ResizeMatrix([h, w], [oh, ow], mode, coords,
                             float(node.attr("cubic_coeff_a", -0.75)), name=name)
    else:
        raise node.unsupported(f"mode={mode}, coordinate_transformation_mode={coords}")
    ctx.emit(node, layer, x.tensor, x.perm)


def _nearest(node: Node, size: tuple[int, int], out: tuple[int, int], name: str
             ) -> keras.layers.Layer:
    if all(o % i == 0 for i, o in zip(size, out)):  # up by integers: each pixel repeated
        return keras.layers.UpSampling2D((out[0] // size[0], out[1] // size[1]),
                                         interpolation="nearest", name=name)
    if all(i % o == 0 for i, o in zip(size, out)):  # down by integers: every k-th pixel
        steps = [i // o for i, o in zip(size, out)]
        return Slice([1, 2], [0, 0], list(size), steps, name=name)
    raise node.unsupported(f"nearest resize from {size} to {out} (integer factors only)")
