"""PyTorch eager runner (the reference)."""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from converters.runners.base import BaseRunner, RunnerSpec

if TYPE_CHECKING:
    import torch


class TorchRunner(BaseRunner):
    """Runs an in-memory module, or one from ``loader`` on activate.

    With ``capture=True`` every leaf module's output is kept, keyed by its
    module path (``features.0.1``), in ``self.captured`` after each call.
    ``device`` ("cpu", "cuda", "cuda:1") is where the model runs: ``prepare``
    copies the inputs there once, and outputs come back as host arrays.
    """

    def __init__(self, spec: RunnerSpec, *, model: "torch.nn.Module | None" = None,
                 loader: "Callable[[], torch.nn.Module] | None" = None,
                 capture: bool = False, device: str = "cpu") -> None:
        super().__init__(spec)
        if model is None and loader is None:
            raise ValueError("TorchRunner needs a model or a loader")
        self._model, self._loader = model, loader
        self.device = device
        self.capture = capture
        self.captured: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._hooks: list = []

    def activate_impl(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        if self._model is None:
            self._model = self._loader()
        self._model.to(self.device).eval()
        if self.capture:
            for path, module in self._model.named_modules():
                if path and not list(module.children()):
                    self._hooks.append(module.register_forward_hook(self._hook(path)))

    def _hook(self, path: str):
        def keep(module, args, output) -> None:
            if hasattr(output, "numpy"):
                self.captured[path] = output.detach().cpu().numpy().copy()
        return keep

    def deactivate_impl(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    @property
    def model(self) -> "torch.nn.Module":
        return self._model

    def prepare(self, feed: Mapping[str, np.ndarray]) -> "dict[str, torch.Tensor]":
        """Tensors on ``self.device``, in the model's layout: the copy is not timed."""
        import torch

        return {k: torch.from_numpy(v).to(self.device) for k, v in super().prepare(feed).items()}

    def run_prepared(self, feed: "Mapping[str, np.ndarray | torch.Tensor]"
                     ) -> "OrderedDict[str, np.ndarray]":
        import torch

        self.captured = OrderedDict()
        with torch.inference_mode():
            out = self._model(*(torch.as_tensor(feed[n], device=self.device)
                                for n in self.spec.input_names))
        outs = out if isinstance(out, (tuple, list)) else [out]
        return self.named([o.cpu().numpy() for o in outs])
