"""PyTorch module paths of the ONNX nodes the TorchScript exporter writes."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# Parameter and buffer names that end an initializer's state-dict key.
PARAM_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "layer_scale")
_REPEAT = re.compile(r"^(.+)_(\d+)$")


@dataclass
class ModulePaths:
    """Full PyTorch module paths of TorchScript-exported node names.

    The exporter's scopes hold attribute names, and a child of a Sequential
    repeats its parent's scope (``/layer1/layer1.0/conv2/Conv``,
    ``/features/features.1/conv/conv.0/conv.0.0/Conv``), so the innermost
    scope alone is not the module path. The second call of a module gets a
    ``_1`` suffix (``relu_1``); it is dropped unless the suffixed path is a
    real module, which the initializer names tell.
    """

    initializer_names: frozenset[str]
    _prefixes: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        for name in self.initializer_names:
            parts = name.split(".")
            self._prefixes.update(".".join(parts[:i]) for i in range(1, len(parts)))

    def of_node(self, node_name: str, inputs: tuple[str, ...] = ()) -> str:
        for i in inputs:  # a parameter's state-dict key is the exact answer
            if i in self.initializer_names and i.rpartition(".")[2] in PARAM_SUFFIXES:
                return i.rpartition(".")[0]
        return self.of_scopes([p for p in node_name.split("/") if p][:-1])

    def of_scopes(self, scopes: list[str]) -> str:
        path: list[str] = []
        for scope in scopes:
            if path and scope.startswith(path[-1] + "."):
                path[-1] = scope
            else:
                path.append(scope)
            repeat = _REPEAT.match(path[-1])
            if repeat and ".".join(path) not in self._prefixes:
                path[-1] = repeat.group(1)
        return ".".join(path)
