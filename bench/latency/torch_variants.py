"""How a PyTorch runtime runs the catalog model: layout, math mode, autocast, compile, graphs.

One frozen ``TorchVariant`` per runtime (``bench.latency.runtimes``); ``load_variant`` builds
the module the worker times. Everything here is set up before the timed loop: autocast and
CUDA-graph capture happen inside the first call (``first_run_s``), never in a sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from bench.latency.records import Job

AUTOCAST_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class TorchVariant:
    """``autocast``: None (fp32) or a torch dtype name; ``compile_mode``: None (eager) or a
    ``torch.compile`` mode; ``tf32``: TF32 matmuls and convolutions (else strict fp32);
    ``cuda_graph``: each input shape captured once into a CUDA graph, then replayed."""

    channels_last: bool = False
    tf32: bool = False
    autocast: str | None = None
    compile_mode: str | None = None
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast {self.autocast!r}: one of {', '.join(AUTOCAST_DTYPES)}")


def nhwc_input(model: "torch.nn.Module") -> "torch.nn.Module":
    """Take NHWC arrays and hand the model a channels_last NCHW view: no copy per call."""
    import torch

    class NhwcInput(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner.to(memory_format=torch.channels_last)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.permute(0, 3, 1, 2))

    return NhwcInput(model)


def autocast_module(model: "torch.nn.Module", dtype_name: str, device: str
                    ) -> "torch.nn.Module":
    """``model`` under ``torch.autocast(device, dtype)``; logits come back as fp32."""
    import torch

    dtype = getattr(torch, dtype_name)

    class Autocast(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type=device.split(":")[0], dtype=dtype):
                out = self.inner(x)
            return out.float()

    return Autocast(model)


def cuda_graph_module(model: "torch.nn.Module") -> "torch.nn.Module":
    """Replay a CUDA graph per input tensor: the first call with a tensor warms up on a side
    stream and captures (``torch.cuda.graphs``); later calls with the same tensor (the
    worker's prepared input) replay it. A new tensor of the same shape is copied into the
    captured one. Outputs are the graph's static tensors: read them before the next call."""
    import torch

    class Graphed(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.graphs: dict[tuple, tuple] = {}

        def _capture(self, x: torch.Tensor) -> tuple:
            static_in = x
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # cuDNN picks its algorithms outside the capture
                    self.inner(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.inner(static_in)
            return graph, static_in, static_out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            key = (tuple(x.shape), x.dtype, x.device)
            if key not in self.graphs:
                self.graphs[key] = self._capture(x)
            graph, static_in, static_out = self.graphs[key]
            if static_in.data_ptr() != x.data_ptr():
                static_in.copy_(x)
            graph.replay()
            return static_out

    return Graphed(model)


def set_math_mode(*, tf32: bool) -> None:
    """TF32 on (the ``tf32`` rows) or off (fp32 rows compute in fp32, as the fp32 peak)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def load_variant(job: "Job", variant: TorchVariant) -> "torch.nn.Module":
    """The catalog model with ``job.weights`` on ``job.device``, wrapped as ``variant`` says."""
    import torch

    from zoo.build import build_model

    model, _ = build_model(job.model, weights=job.weights)
    model = model.eval().to(job.device)  # compiled for the device it will run on
    if job.device.startswith("cuda"):
        set_math_mode(tf32=variant.tf32)
    if variant.channels_last:
        model = nhwc_input(model).eval()
    if variant.autocast:
        model = autocast_module(model, variant.autocast, job.device).eval()
    if variant.compile_mode:
        mode = None if variant.compile_mode == "default" else variant.compile_mode
        model = torch.compile(model, mode=mode)
    if variant.cuda_graph:
        model = cuda_graph_module(model).eval()
    return model
