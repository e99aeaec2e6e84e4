"""Keras layer names that map back to PyTorch module paths.

A layer is named ``<module path>.<ONNX op>`` (``layer1.0.conv2.Conv``), with
``-<n>`` added to the op part when the name is taken
(``layer1.0.relu.Relu-1``) and a suffix for helper layers the builder adds
(``maxpool.MaxPool_pad``). Dots, digits, underscores and dashes are legal in Keras 3
layer names and TensorFlow name scopes, so a module path needs no escaping:
``module_path_of_layer`` undoes the naming exactly.

Not ``_<n>``: TensorFlow numbers a layer's name scope so when it traces the model again
for export (``stages.0.0.Mul`` -> ``stages.0.0.Mul_1``), and a second layer named
``stages.0.0.Mul_1`` made TFLite parity read one layer's tensor for the other (timm's
nf_regnet_b1 failed at 6 dB, exactly its SE gain of 2).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from converters.onnx_names import ModulePaths  # noqa: F401  (re-exported)

_ILLEGAL = re.compile(r"[^A-Za-z0-9_.\-]")


def module_path_of_layer(layer_name: str) -> str:
    """``layer1.0.conv2.Conv`` -> ``layer1.0.conv2``; ``Flatten`` (top level) -> ``""``."""
    return layer_name.rpartition(".")[0]


def in_module(path: str, module: str) -> bool:
    """Whether ``path`` is ``module`` or lies inside it (``module == ""`` is the whole model)."""
    return not module or path == module or path.startswith(module + ".")


@dataclass
class LayerNamer:
    """Unique, Keras-legal layer names."""

    used: set[str] = field(default_factory=set)

    def name(self, module_path: str, op_type: str, suffix: str = "") -> str:
        base = f"{module_path}.{op_type}" if module_path else op_type
        base = _ILLEGAL.sub("_", base)
        tail = f"_{suffix}" if suffix else ""
        candidate, n = f"{base}{tail}", 0
        while candidate in self.used:
            n += 1
            candidate = f"{base}-{n}{tail}"
        self.used.add(candidate)
        return candidate
