"""One handler per ONNX op, dispatched through ``HANDLERS``; ``FOLDERS`` evaluate known values."""
from __future__ import annotations

from typing import Callable

from converters.keras.context import BuildContext
from converters.keras.graph import Node
from converters.keras.ops import elementwise, nn, pool, tensor
from converters.keras.ops.fold import FOLDERS

Handler = Callable[[BuildContext, Node], None]

HANDLERS: dict[str, Handler] = {
    "Conv": nn.conv,
    "BatchNormalization": nn.batch_normalization,
    "Gemm": nn.gemm,
    "MatMul": nn.matmul,
    "LayerNormalization": nn.layer_normalization,
    "MaxPool": pool.max_pool,
    "AveragePool": pool.average_pool,
    "GlobalAveragePool": pool.global_average_pool,
    "GlobalMaxPool": pool.global_max_pool,
    "ReduceMean": pool.reduce_mean,
    **elementwise.HANDLERS,
    **tensor.HANDLERS,
}

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(set(HANDLERS) | set(FOLDERS)))

__all__ = ["FOLDERS", "HANDLERS", "SUPPORTED_OPS", "Handler"]
