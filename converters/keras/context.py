"""Build state shared by the op handlers: values, layer naming and the maps returned."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import keras
import numpy as np

from converters.keras.graph import Node, OnnxGraph
from converters.keras.layout import Const, Perm, Sym, permute_dims
from converters.keras.naming import LayerNamer, ModulePaths


@dataclass(frozen=True)
class TensorRef:
    """Where an ONNX tensor lives in the Keras model: Keras axis ``j`` holds ONNX axis ``perm[j]``."""

    layer: str
    perm: Perm


@dataclass
class BuildContext:
    graph: OnnxGraph
    paths: ModulePaths
    namer: LayerNamer = field(default_factory=LayerNamer)
    values: dict[str, Sym | Const] = field(default_factory=dict)
    layer_map: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    module_outputs: dict[str, str] = field(default_factory=dict)
    module_inputs: dict[str, str] = field(default_factory=dict)
    _permuted: dict[tuple[int, Perm], Sym] = field(default_factory=dict)

    # -- reading inputs -------------------------------------------------
    def value(self, node: Node, index: int) -> Sym | Const | None:
        if index >= len(node.inputs) or not node.inputs[index]:
            return None
        return self.values[node.inputs[index]]

    def sym(self, node: Node, index: int = 0) -> Sym:
        v = self.value(node, index)
        if not isinstance(v, Sym):
            raise node.unsupported(f"input {index} must be a tensor computed from the model input")
        return v

    def const(self, node: Node, index: int) -> Const | None:
        v = self.value(node, index)
        if isinstance(v, Sym):
            raise node.unsupported(f"input {index} must be known when the model is built")
        return v

    def weight(self, node: Node, index: int) -> np.ndarray | None:
        """An input known when the model is built: an initializer (a model parameter), or a
        constant (a non-persistent buffer, such as the blur filter of TResNet's
        anti-aliasing); None when the optional input is absent."""
        v = self.const(node, index)
        if v is None:
            return None
        if v.dynamic is not None and np.any(v.dynamic):
            raise node.unsupported(f"input {index} depends on the batch size")
        return v.value.astype(np.float32)

    def path(self, node: Node) -> str:
        return self.paths.of_node(node.name, node.inputs)

    # -- making layers --------------------------------------------------
    def layer_name(self, node: Node, suffix: str = "") -> str:
        return self.namer.name(self.path(node), node.op_type, suffix)

    def emit(self, node: Node, layer: keras.layers.Layer, inputs: Any, perm: Perm, *,
             weights: Sequence[np.ndarray] | None = None, factor: int | None = None) -> Sym:
        """Call ``layer`` as the Keras counterpart of ``node`` and bind the node's output.

        ``factor`` (batch entries per sample on Keras axis 0) defaults to the inputs'.
        """
        out = self.call(layer, inputs, weights=weights)
        self.layer_map[node.name] = layer.name
        for absorbed in node.absorbed:
            self.layer_map[absorbed] = layer.name
        sym = Sym(out, perm, layer.name, self.input_factor(node) if factor is None else factor)
        self.bind(node, sym)
        return sym

    def input_factor(self, node: Node) -> int:
        """The batch factor of the node's tensor inputs (elementwise ops keep it)."""
        factors = [v.factor for i in node.inputs if i and isinstance(v := self.values[i], Sym)]
        return max(factors, default=1)

    def call(self, layer: keras.layers.Layer, inputs: Any, *,
             weights: Sequence[np.ndarray] | None = None) -> Any:
        out = layer(inputs)
        if weights is not None:
            layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])
        return out

    def helper(self, node: Node, layer: keras.layers.Layer, inputs: Any, perm: Perm,
               factor: int | None = None) -> Sym:
        """A layer the builder adds in front of ``node``'s own (padding, permutes)."""
        factor = self.input_factor(node) if factor is None else factor
        return Sym(self.call(layer, inputs), perm, layer.name, factor)

    def bind(self, node: Node, value: Sym | Const, output: int = 0) -> None:
        name = node.outputs[output]
        self.values[name] = value
        if isinstance(value, Sym):
            self.tensors[name] = TensorRef(value.layer, value.perm)
            parts = self.path(node).split(".") if self.path(node) else []
            for i in range(len(parts) + 1):  # the last tensor made inside a module is its output
                self.module_outputs[".".join(parts[:i])] = name

    def note_module_input(self, node: Node) -> None:
        """Record ``node``'s first computed input as the input of every module it lies in,
        unless one was recorded: nodes run in graph order and folded constants are not
        computed, so the first computed tensor a module reads comes from outside it (a
        classifier head's input: the features a derived entry names)."""
        name = next((i for i in node.inputs if i and isinstance(self.values.get(i), Sym)), None)
        path = self.path(node)
        if name is None or not path:
            return
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            self.module_inputs.setdefault(".".join(parts[:i]), name)

    def to_layout(self, node: Node, sym: Sym, perm: Perm) -> Sym:
        """``sym`` with Keras axes in ``perm`` order, adding one Permute layer if needed."""
        if sym.perm == perm:
            return sym
        key = (id(sym.tensor), perm)
        if key not in self._permuted:
            try:
                dims = permute_dims(sym.perm, perm)
            except ValueError as exc:
                raise node.unsupported(str(exc)) from None
            layer = keras.layers.Permute(dims, name=self.layer_name(node, "perm"))
            self._permuted[key] = self.helper(node, layer, sym.tensor, perm, sym.factor)
        return self._permuted[key]
