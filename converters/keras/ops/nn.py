"""Layers with parameters: Conv, ConvTranspose, BatchNormalization, Gemm, MatMul,
Layer/InstanceNormalization."""
from __future__ import annotations

import keras
import numpy as np

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.layers import Slice, ZeroInsert2D
from converters.keras.layout import Const, Sym, channels_last, identity
from converters.keras.ops.attention import batched_matmul
from converters.keras.ops.fold import static
from converters.keras.ops.registry import folds, register


def _spatial_input(ctx: BuildContext, node: Node) -> Sym:
    x = ctx.sym(node)
    if x.rank != 4:
        raise node.unsupported(f"only 2-D (rank-4 NCHW) inputs, got rank {x.rank}")
    return ctx.to_layout(node, x, channels_last(4))


def _conv_padding(ctx: BuildContext, node: Node, x: Sym, kernel: tuple[int, int]) -> tuple[Sym, str]:
    """Keras padding for the node's pads: "same" where it is exact, else a ZeroPadding2D.
    ``auto_pad`` (PyTorch's ``padding="same"``): SAME_UPPER puts an odd pixel at the end,
    as TensorFlow's "same" does; VALID is none."""
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "VALID"):
        return x, "same" if auto_pad == "SAME_UPPER" else "valid"
    if auto_pad != "NOTSET":
        raise node.unsupported(f"auto_pad={auto_pad}")
    t, l, b, r = node.attr("pads", [0, 0, 0, 0])
    strides = node.attr("strides", [1, 1])
    dil = node.attr("dilations", [1, 1])
    if t == l == b == r == 0:
        return x, "valid"
    half = [d * (k - 1) // 2 for d, k in zip(dil, kernel)]
    if strides == [1, 1] and all(d * (k - 1) % 2 == 0 for d, k in zip(dil, kernel)) \
            and (t, b) == (half[0], half[0]) and (l, r) == (half[1], half[1]):
        return x, "same"  # stride 1, odd effective kernel: TF pads symmetrically
    pad = keras.layers.ZeroPadding2D(((t, b), (l, r)), name=ctx.layer_name(node, "pad"))
    return ctx.helper(node, pad, x.tensor, x.perm), "valid"


@register("Conv", note="1-D and 2-D, grouped and depthwise, any pads/strides/dilations")
def conv(ctx: BuildContext, node: Node) -> None:
    if ctx.sym(node).rank == 3:
        return conv1d(ctx, node)
    x = _spatial_input(ctx, node)
    w, bias = ctx.weight(node, 1), ctx.weight(node, 2)
    if w.ndim != 4:
        raise node.unsupported(f"only 2-D convolutions, got a rank-{w.ndim} kernel")
    kh, kw = w.shape[2:]
    in_ch, groups = x.keras_shape[-1], node.attr("group", 1)
    x, padding = _conv_padding(ctx, node, x, (kh, kw))
    strides, dilations = tuple(node.attr("strides", [1, 1])), tuple(node.attr("dilations", [1, 1]))
    # Keras convolves with strides or with dilations, not both: a strided, dilated Conv
    # (SKNet's downsampling) is the dilated one at stride 1, every stride-th pixel kept
    subsample = max(strides) > 1 and max(dilations) > 1
    if subsample and padding == "same":
        raise node.unsupported("auto_pad SAME with both strides and dilations")
    common = dict(kernel_size=(kh, kw), strides=(1, 1) if subsample else strides,
                  padding=padding, dilation_rate=dilations, use_bias=bias is not None,
                  name=ctx.layer_name(node, "dense" if subsample else ""))
    layer, kernel = _conv_layer(w, in_ch, groups, common)
    layer.trainable = ctx.value(node, 1).weight is not None  # a fixed filter (TResNet's blur)
    weights = [kernel, *([] if bias is None else [bias])]
    if not subsample:
        ctx.emit(node, layer, x.tensor, x.perm, weights=weights)
        return
    dense = ctx.call(layer, x.tensor, weights=weights)
    keep = Slice([1, 2], [0, 0], [-1, -1], list(strides), name=ctx.layer_name(node))
    ctx.emit(node, keep, dense, x.perm)


@register("ConvTranspose", note="2-D, grouped and depthwise, any pads/strides/dilations/"
                                "output_padding")
def conv_transpose(ctx: BuildContext, node: Node) -> None:
    """Keras' Conv2DTranspose where it matches (one group, no dilation or output padding; the
    pads crop its full output), else PyTorch's definition: the input with ``stride - 1`` zeros
    between pixels, convolved with the flipped kernel at stride 1."""
    x = _spatial_input(ctx, node)
    w, bias = ctx.weight(node, 1), ctx.weight(node, 2)
    if w.ndim != 4 or node.attr("auto_pad", "NOTSET") != "NOTSET" \
            or node.attr("output_shape", None):
        raise node.unsupported("only 2-D, with explicit pads (no auto_pad or output_shape)")
    in_ch, out_per_group, kh, kw = w.shape
    groups = node.attr("group", 1)
    strides, dilations = node.attr("strides", [1, 1]), node.attr("dilations", [1, 1])
    t, l, b, r = node.attr("pads", [0, 0, 0, 0])
    extra = node.attr("output_padding", [0, 0])
    biases = [] if bias is None else [bias]
    if groups == 1 and dilations == [1, 1] and extra == [0, 0]:
        layer = keras.layers.Conv2DTranspose(
            out_per_group, (kh, kw), strides=tuple(strides), padding="valid",
            use_bias=bias is not None, name=ctx.layer_name(node, "full" if t + l + b + r else ""))
        weights = [w.transpose(2, 3, 1, 0), *biases]
        if not t + l + b + r:
            ctx.emit(node, layer, x.tensor, x.perm, weights=weights)
            return
        full = ctx.call(layer, x.tensor, weights=weights)
        crop = keras.layers.Cropping2D(((t, b), (l, r)), name=ctx.layer_name(node))
        ctx.emit(node, crop, full, x.perm)
        return
    reach = [d * (k - 1) for d, k in zip(dilations, (kh, kw))]
    pads = ((reach[0] - t, reach[0] - b + extra[0]), (reach[1] - l, reach[1] - r + extra[1]))
    if min(min(p) for p in pads) < 0:
        raise node.unsupported(f"pads {[t, l, b, r]} beyond the dilated kernel {reach}")
    if max(strides) > 1:
        zeros = ZeroInsert2D(strides, name=ctx.layer_name(node, "zeros"))
        x = ctx.helper(node, zeros, x.tensor, x.perm)
    if max(max(p) for p in pads) > 0:
        pad = keras.layers.ZeroPadding2D(pads, name=ctx.layer_name(node, "pad"))
        x = ctx.helper(node, pad, x.tensor, x.perm)
    # (in, out/groups, kh, kw) -> the convolution's (out, in/groups, kh, kw), flipped
    kernel = w.reshape(groups, in_ch // groups, out_per_group, kh, kw).transpose(0, 2, 1, 3, 4)
    kernel = kernel.reshape(groups * out_per_group, in_ch // groups, kh, kw)[:, :, ::-1, ::-1]
    common = dict(kernel_size=(kh, kw), strides=(1, 1), padding="valid",
                  dilation_rate=tuple(dilations), use_bias=bias is not None,
                  name=ctx.layer_name(node))
    layer, kernel = _conv_layer(np.ascontiguousarray(kernel), in_ch, groups, common)
    ctx.emit(node, layer, x.tensor, x.perm, weights=[kernel, *biases])


def conv1d(ctx: BuildContext, node: Node) -> None:
    """A Conv on (N, C, L) sequences (CoaT's aggregation, EfficientViM's projections)."""
    x = ctx.to_layout(node, ctx.sym(node), channels_last(3))
    w, bias = ctx.weight(node, 1), ctx.weight(node, 2)
    if w.ndim != 3 or node.attr("auto_pad", "NOTSET") != "NOTSET":
        raise node.unsupported(f"a rank-{w.ndim} kernel on a sequence, auto_pad")
    k = w.shape[2]
    in_ch, groups = x.keras_shape[-1], node.attr("group", 1)
    left, right = node.attr("pads", [0, 0])
    if left or right:
        pad = keras.layers.ZeroPadding1D((left, right), name=ctx.layer_name(node, "pad"))
        x = ctx.helper(node, pad, x.tensor, x.perm)
    common = dict(kernel_size=k, strides=node.attr("strides", [1])[0], padding="valid",
                  dilation_rate=node.attr("dilations", [1])[0], use_bias=bias is not None,
                  name=ctx.layer_name(node))
    layer, kernel = _conv_layer(w, in_ch, groups, common)
    ctx.emit(node, layer, x.tensor, x.perm, weights=[kernel, *([] if bias is None else [bias])])


def _conv_layer(w: np.ndarray, in_ch: int, groups: int, common: dict
                ) -> tuple[keras.layers.Layer, np.ndarray]:
    """The Keras Conv1D/2D (depthwise where each group is one input channel) for PyTorch's
    (out, in/groups, *kernel) weight, and that weight in Keras' layout."""
    out_ch, in_per_group, *kernel = w.shape
    spatial = tuple(range(2, 2 + len(kernel)))
    if groups == in_ch and groups > 1 and in_per_group == 1:
        mult = out_ch // in_ch  # output channel c * mult + j reads input channel c, as in PyTorch
        cls = keras.layers.DepthwiseConv1D if len(kernel) == 1 else keras.layers.DepthwiseConv2D
        return (cls(depth_multiplier=mult, **common),
                w.reshape(in_ch, mult, *kernel).transpose(*spatial, 0, 1))
    cls = keras.layers.Conv1D if len(kernel) == 1 else keras.layers.Conv2D
    return cls(out_ch, groups=groups, **common), w.transpose(*spatial, 1, 0)


@register("BatchNormalization")
def batch_normalization(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    if node.attr("training_mode", 0):
        raise node.unsupported("training_mode=1")
    gamma, beta, mean, var = (ctx.weight(node, i) for i in range(1, 5))
    layer = keras.layers.BatchNormalization(
        axis=x.keras_axis(1), epsilon=float(node.attr("epsilon", 1e-5)),
        momentum=float(node.attr("momentum", 0.9)), name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm, weights=[gamma, beta, mean, var])


@folds("BatchNormalization")
def batch_normalization_fold(node: Node, vals: list[Const | None]) -> Const:
    """On a parameter (NF-Nets standardise each conv's weight with ``F.batch_norm`` in
    training mode: its own statistics, over every axis but 1)."""
    x, gamma, beta, mean, var = (v.value if v is not None else None for v in vals[:5])
    static(node, *vals[:5])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if node.attr("training_mode", 0):
        axes = tuple(a for a in range(x.ndim) if a != 1)
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    eps = float(node.attr("epsilon", 1e-5))
    out = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return Const((out * gamma.reshape(shape) + beta.reshape(shape)).astype(x.dtype))


@register("Gemm")
def gemm(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    if x.rank != 2 or node.attr("transA", 0):
        raise node.unsupported("only Gemm(A, B, C) on a 2-D A without transA")
    x = ctx.to_layout(node, x, identity(2))
    w = ctx.weight(node, 1) * float(node.attr("alpha", 1.0))
    kernel = w.T if node.attr("transB", 0) else w
    bias = ctx.weight(node, 2)
    extra = [] if bias is None else [np.broadcast_to(bias * node.attr("beta", 1.0), kernel.shape[1:])]
    layer = keras.layers.Dense(kernel.shape[1], use_bias=bias is not None, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm, weights=[kernel, *extra])


@register("MatMul", note="x @ W plus bias Add as Dense; batched, of two tensors")
def matmul(ctx: BuildContext, node: Node) -> None:
    """``x @ W`` (+ bias when graph loading fused the Add) as a Dense on the last axis."""
    if isinstance(ctx.value(node, 1), Sym):
        batched_matmul(ctx, node)
        return
    x = ctx.sym(node)
    kernel, bias = ctx.weight(node, 1), ctx.weight(node, 2)
    if kernel.ndim != 2:
        raise node.unsupported("only x @ W with a 2-D initializer W")
    last = x.rank - 1
    x = ctx.to_layout(node, x, (*(a for a in x.perm if a != last), last))
    layer = keras.layers.Dense(kernel.shape[1], use_bias=bias is not None, name=ctx.layer_name(node))
    ctx.emit(node, layer, x.tensor, x.perm, weights=[kernel] + ([] if bias is None else [bias]))


@register("InstanceNormalization", note="any rank; GroupNorm exports as it")
def instance_normalization(ctx: BuildContext, node: Node) -> None:
    """Each sample's channels normalised over their other axes: Keras' GroupNormalization
    with a group per channel (PyTorch's GroupNorm exports as this on a (N, groups, -1)
    reshape, then its affine Mul and Add)."""
    x = ctx.sym(node)
    if x.batch_axis != 0 or x.rank < 3:
        raise node.unsupported(f"a rank-{x.rank} input with the batch on axis {x.batch_axis}")
    # parameters, or constants: GroupNorm's ones and zeros (its affine follows) are left
    # out, so Keras holds exactly PyTorch's parameters
    scale_in, bias_in = ctx.const(node, 1), ctx.const(node, 2)
    scale, bias = (c.value.astype(np.float32) for c in (scale_in, bias_in))
    use_scale = scale_in.weight is not None or not (scale == 1).all()
    use_bias = bias_in.weight is not None or (bias != 0).any()
    layer = keras.layers.GroupNormalization(groups=scale.shape[0], axis=x.keras_axis(1),
                                            epsilon=float(node.attr("epsilon", 1e-5)),
                                            scale=bool(use_scale), center=bool(use_bias),
                                            name=ctx.layer_name(node))
    weights = [w for w, used in ((scale, use_scale), (bias, use_bias)) if used]
    ctx.emit(node, layer, x.tensor, x.perm, weights=weights)


@register("LayerNormalization")
def layer_normalization(ctx: BuildContext, node: Node) -> None:
    x = ctx.sym(node)
    axis = node.attr("axis", -1) % x.rank
    onnx_axes = list(range(axis, x.rank))
    if x.batch_axis in onnx_axes:
        raise node.unsupported("normalising over the batch axis")
    keras_axes = sorted(x.keras_axis(a) for a in onnx_axes)
    scale, bias = ctx.weight(node, 1), ctx.const(node, 2)
    # no bias (``bias=False``: PyTorch exports none, or a constant of zeros): no beta weight
    center = bias is not None and (bias.weight is not None or bool(np.any(bias.value)))
    order = [onnx_axes.index(x.perm[k]) for k in keras_axes]  # normalised axes in Keras order
    in_keras_order = lambda w: np.broadcast_to(  # noqa: E731
        np.asarray(w, np.float32), x.onnx_shape[axis:]).transpose(order)
    layer = keras.layers.LayerNormalization(
        axis=keras_axes if len(keras_axes) > 1 else keras_axes[0],
        epsilon=float(node.attr("epsilon", 1e-5)), center=center, name=ctx.layer_name(node))
    weights = [in_keras_order(scale), *([in_keras_order(bias.value)] if center else [])]
    ctx.emit(node, layer, x.tensor, x.perm, weights=weights)
