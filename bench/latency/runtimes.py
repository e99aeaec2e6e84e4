"""Runtime name -> how to build its runner: a small typed registry.

Artifact runtimes use ``converters.runners.make_runner`` on the manifest's
record; PyTorch runtimes use ``TorchRunner`` on the catalog model. Nothing
heavy is imported here: each builder imports its runtime when called, in the
worker, after the thread count is fixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

    from bench.latency.records import Job
    from converters.runners import BaseRunner, RunnerSpec

# TF32 off: rows labelled fp32 compute in fp32 on every runtime, as the peak GEMM does.
ORT_PROVIDERS: dict[str, tuple[Any, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": (("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"),
}


def _provider_name(provider: Any) -> str:
    return provider[0] if isinstance(provider, tuple) else provider


@dataclass(frozen=True)
class Runtime:
    """One way to run a model. ``artifact`` is the manifest format it loads (None: PyTorch)."""

    name: str
    precision: str
    artifact: str | None
    devices: tuple[str, ...]
    build: Callable[["Job", "RunnerSpec"], "BaseRunner"]
    imports: tuple[str, ...]  # imported (and timed as import_s) before the load
    description: str
    layout: str = "NCHW"
    cuda_clock: str = "perf_counter"
    describe: Callable[["BaseRunner"], dict[str, Any]] = field(default=lambda runner: {})

    def clock(self, device: str) -> str:
        return self.cuda_clock if device == "cuda" else "perf_counter"

    def torch_spec(self, job: "Job") -> "RunnerSpec":
        """The spec of a PyTorch runtime (no artifact file: the catalog builds the model)."""
        from converters.runners import NCHW_TO_NHWC, RunnerSpec

        perm = NCHW_TO_NHWC if self.layout == "NHWC" else None
        return RunnerSpec("pytorch", f"torchvision:{job.model}", input_permutation=perm,
                          threads=job.threads)


def _nhwc_input(model: "torch.nn.Module") -> "torch.nn.Module":
    """Take NHWC arrays and hand the model a channels_last NCHW view: no copy per call."""
    import torch

    class NhwcInput(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner.to(memory_format=torch.channels_last)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.permute(0, 3, 1, 2))

    return NhwcInput(model)


def _torch_loader(job: "Job", *, channels_last: bool, compiled: bool
                  ) -> Callable[[], "torch.nn.Module"]:
    def load() -> "torch.nn.Module":
        import torch

        from zoo.build import build_model

        model, _ = build_model(job.model, weights=job.weights)
        model = model.eval().to(job.device)  # compiled for the device it will run on
        if channels_last:
            model = _nhwc_input(model).eval()
        return torch.compile(model) if compiled else model

    return load


def _torch_builder(*, channels_last: bool = False, compiled: bool = False
                   ) -> Callable[["Job", "RunnerSpec"], "BaseRunner"]:
    def build(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
        from converters.runners.torch_runner import TorchRunner

        loader = _torch_loader(job, channels_last=channels_last, compiled=compiled)
        return TorchRunner(spec, loader=loader, device=job.device)

    return build


def _onnxrt_builder(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
    import onnxruntime as ort

    from converters.runners.onnxrt_runner import OnnxrtRunner

    providers = ORT_PROVIDERS[job.device]
    first = _provider_name(providers[0])
    if job.device == "cuda" and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN libraries from the torch wheels, where present
    if first not in ort.get_available_providers():
        raise RuntimeError(f"onnxruntime {ort.__version__} has no {first} "
                           f"(has {', '.join(ort.get_available_providers())}); "
                           "install onnxruntime-gpu for the CUDA EP")
    return OnnxrtRunner(spec, providers=providers)


def _onnxrt_describe(runner: "BaseRunner") -> dict[str, Any]:
    used, wanted = runner.session.get_providers(), _provider_name(runner.providers[0])
    if used[0] != wanted:  # ORT falls back silently when a provider fails to load
        raise RuntimeError(f"onnxruntime fell back to {used[0]} instead of {wanted}")
    return {"providers": used}


def _artifact_builder(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
    from converters.runners import make_runner

    return make_runner(spec)


def _keras_eager_builder(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
    from converters.runners import make_runner

    return make_runner(spec, graph=False)


@dataclass(frozen=True)
class _RunnerKind:
    """How the bench runs every artifact format of one ``Format.runner`` kind."""

    build: Callable[["Job", "RunnerSpec"], "BaseRunner"]
    imports: tuple[str, ...]
    devices: tuple[str, ...]
    description: str
    describe: Callable[["BaseRunner"], dict[str, Any]] = field(default=lambda runner: {})


_TORCH = ("torch", "torchvision")
_TF = ("tensorflow",)
_RUNNER_KINDS: dict[str, _RunnerKind] = {
    "onnxruntime": _RunnerKind(
        _onnxrt_builder, ("onnxruntime",), ("cpu", "cuda"),
        "ONNX Runtime, CPU EP (CUDA EP on GPU; synchronous run, host arrays in/out)",
        describe=_onnxrt_describe),
    "tf_savedmodel": _RunnerKind(_artifact_builder, _TF, ("cpu",),
                                 "TF SavedModel serving_default"),
    "keras": _RunnerKind(_artifact_builder, ("keras", *_TF), ("cpu",),
                         "Keras 3 model traced once as a tf.function (as predict/serving run it)"),
    "tflite": _RunnerKind(_artifact_builder, ("ai_edge_litert.interpreter",), ("cpu",),
                          "TFLite (LiteRT, XNNPACK)"),
}
# runtime name of a format, where it is not the format's own name
_RUNTIME_NAMES = {"onnx": "onnxruntime", "onnx_int8": "onnxruntime_int8"}


def _artifact_runtimes() -> list[Runtime]:
    """One runtime per registered format (``converters.formats``), plus Keras called eagerly."""
    from converters.formats import FORMATS

    out = []
    for fmt in FORMATS.values():
        kind = _RUNNER_KINDS[fmt.runner]
        extra = f", {fmt.precision} weights" if fmt.precision != "fp32" else ""
        out.append(Runtime(_RUNTIME_NAMES.get(fmt.name, fmt.name), fmt.precision, fmt.name,
                           kind.devices, kind.build, kind.imports, kind.description + extra,
                           layout=fmt.layout, describe=kind.describe))
        if fmt.name == "keras":
            out.append(Runtime("keras_eager", "fp32", "keras", ("cpu",), _keras_eager_builder,
                               ("keras", *_TF),
                               "Keras 3 model called eagerly, layer by layer from Python",
                               layout="NHWC"))
    return out


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("pytorch", "fp32", None, ("cpu", "cuda"), _torch_builder(), _TORCH,
            "PyTorch eager, NCHW contiguous", cuda_clock="cuda_event"),
    Runtime("pytorch_cl", "fp32", None, ("cpu", "cuda"), _torch_builder(channels_last=True),
            _TORCH, "PyTorch eager, channels_last", layout="NHWC", cuda_clock="cuda_event"),
    Runtime("torch_compile", "fp32", None, ("cpu", "cuda"), _torch_builder(compiled=True),
            _TORCH, "torch.compile (inductor), NCHW input", cuda_clock="cuda_event"),
    *_artifact_runtimes(),
)}


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}") from None


def runtimes_for(device: str) -> list[str]:
    """The default runtime set on ``device``: PyTorch and the runtimes of the formats a plain
    convert makes. The int8 runtimes (``onnxruntime_int8``, ``tflite_int8``, ...) are asked
    for by name: their artifacts need calibration photos and minutes of quantization, which
    a plain bench run should not start for every model."""
    from converters.formats import FORMATS

    return [name for name, rt in RUNTIMES.items() if device in rt.devices
            and (rt.artifact is None or FORMATS[rt.artifact].default)]
