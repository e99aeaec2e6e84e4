"""Find a classifier's head (the last Linear, or 1x1 Conv, of ``fc``/``classifier``/``heads``/
``head``) and build models without allocating their weights, to read their structure."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch

HEAD_ATTRS = ("fc", "classifier", "heads", "head")


@contextlib.contextmanager
def empty_init() -> Iterator[None]:
    """Within the block, every new parameter lives on the ``meta`` device: a model of any
    size builds in milliseconds and holds no memory (accelerate's ``init_empty_weights``).
    Builders that compute with tensors (RegNet's widths) still run, unlike under
    ``torch.device("meta")``. Not for concurrent use: it patches ``nn.Module``."""
    import torch

    original = torch.nn.Module.register_parameter

    def register(self: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        original(self, name, param)
        if param is not None and param.device.type != "meta":
            self._parameters[name] = torch.nn.Parameter(param.to("meta"),
                                                        requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original


def _layers(module: "torch.nn.Module", prefix: str) -> list[tuple[str, "torch.nn.Module"]]:
    import torch

    return [(f"{prefix}.{p}" if p else prefix, m) for p, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv2d)
                                                  and m.kernel_size == (1, 1))]


def find_head(model: "torch.nn.Module", path: str | None = None
              ) -> tuple[str, "torch.nn.Module"]:
    """(module path, layer) of the classifier: the last Linear (or 1x1 Conv, SqueezeNet) in
    ``path`` when given, else in the first of ``HEAD_ATTRS`` the model has, else in the
    whole model. ValueError when there is none."""
    import torch

    if path:
        scopes = [(path, model.get_submodule(path))]
    else:
        scopes = [(a, getattr(model, a)) for a in HEAD_ATTRS
                  if isinstance(getattr(model, a, None), torch.nn.Module)][:1] or [("", model)]
    for prefix, module in scopes:
        found = _layers(module, prefix)
        if found:
            name, layer = found[-1]
            return name.strip("."), layer
    raise ValueError(f"{type(model).__name__}: no classifier head (a Linear layer) found")


def head_width(layer: "torch.nn.Module") -> tuple[int, int]:
    """(input features, classes) of a head layer."""
    if hasattr(layer, "in_features"):
        return int(layer.in_features), int(layer.out_features)
    return int(layer.in_channels), int(layer.out_channels)
