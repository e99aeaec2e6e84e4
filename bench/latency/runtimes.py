"""Runtime name -> how to build its runner: a small typed registry.

Artifact runtimes use ``converters.runners.make_runner`` on the manifest's
record; PyTorch runtimes use ``TorchRunner`` on the catalog model. Nothing
heavy is imported here: each builder imports its runtime when called, in the
worker, after the thread count is fixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bench.latency import availability as avail
from bench.latency.torch_variants import TorchVariant

if TYPE_CHECKING:
    from bench.latency.records import Job
    from converters.runners import BaseRunner, RunnerSpec

# TF32 off: rows labelled fp32 compute in fp32 on every runtime, as the peak GEMM does.
ORT_PROVIDERS: dict[str, tuple[Any, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": (("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"),
}
# TensorRT builds its engine on the first run (timed as first_run_s, never as a sample);
# nodes it cannot take fall to the CUDA EP. fp16: TensorRT may pick fp16 kernels.
_TRT = "TensorrtExecutionProvider"
ORT_TENSORRT: dict[str, tuple[Any, ...]] = {
    "fp32": ((_TRT, {"trt_fp16_enable": False}), *ORT_PROVIDERS["cuda"]),
    "fp16": ((_TRT, {"trt_fp16_enable": True}), *ORT_PROVIDERS["cuda"]),
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
    probe: avail.Probe = avail.always  # why it cannot run on a device here ("" if it can)
    default: bool = True  # in the default runtime set of its devices (else asked by name)

    def unavailable(self, device: str) -> str:
        """Why this runtime cannot run on ``device`` on this machine, or "" when it can."""
        if device not in self.devices:
            return f"runs on {'/'.join(self.devices)} only"
        if device == "cuda" and (why := avail.no_gpu()):
            return why
        return self.probe(device)

    def clock(self, device: str) -> str:
        return self.cuda_clock if device == "cuda" else "perf_counter"

    def torch_spec(self, job: "Job") -> "RunnerSpec":
        """The spec of a PyTorch runtime (no artifact file: the catalog builds the model)."""
        from converters.runners import NCHW_TO_NHWC, RunnerSpec

        perm = NCHW_TO_NHWC if self.layout == "NHWC" else None
        return RunnerSpec("pytorch", f"torchvision:{job.model}", input_permutation=perm,
                          threads=job.threads)


def _torch_builder(variant: TorchVariant = TorchVariant()
                   ) -> Callable[["Job", "RunnerSpec"], "BaseRunner"]:
    def build(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
        from bench.latency.torch_variants import load_variant
        from converters.runners.torch_runner import TorchRunner

        return TorchRunner(spec, loader=lambda: load_variant(job, variant), device=job.device)

    return build


def _onnxrt_providers(job: "Job", providers: tuple[Any, ...]) -> tuple[Any, ...]:
    """``providers``, checked against this ONNX Runtime build (a clear error when absent)."""
    import onnxruntime as ort

    first = _provider_name(providers[0])
    if job.device == "cuda" and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN libraries from the torch wheels, where present
    if first not in ort.get_available_providers():
        raise RuntimeError(f"onnxruntime {ort.__version__} has no {first} "
                           f"(has {', '.join(ort.get_available_providers())}); "
                           "install onnxruntime-gpu for the CUDA EP")
    return providers


def _onnxrt_builder(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
    from converters.runners.onnxrt_runner import OnnxrtRunner

    return OnnxrtRunner(spec, providers=_onnxrt_providers(job, ORT_PROVIDERS[job.device]))


def _fp16_spec(spec: "RunnerSpec") -> "RunnerSpec":
    """The spec of an fp16 copy of the fp32 ONNX artifact, made in a temporary folder before
    the load (not timed: users ship the fp16 file)."""
    import atexit
    import dataclasses
    import shutil
    import tempfile

    from converters.onnx_fp16 import write_fp16

    src, folder = Path(spec.path), tempfile.mkdtemp(prefix="modelzoo-fp16-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the worker's own copy
    dest = Path(folder) / f"{src.stem}_fp16.onnx"
    return dataclasses.replace(spec, path=str(write_fp16(src, dest)))


def _onnxrt_variant(providers: dict[str, tuple[Any, ...]] | None = None, *,
                    precision: str = "fp32", fp16_model: bool = False
                    ) -> Callable[["Job", "RunnerSpec"], "BaseRunner"]:
    """ONNX Runtime on the CUDA EP (``providers=None``) or TensorRT, fp32 or fp16."""
    def build(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
        from converters.runners.onnxrt_runner import OnnxrtRunner

        chosen = providers[precision] if providers else ORT_PROVIDERS[job.device]
        chosen = _onnxrt_providers(job, chosen)
        return OnnxrtRunner(_fp16_spec(spec) if fp16_model else spec, providers=chosen)

    return build


def _onnxrt_describe(runner: "BaseRunner") -> dict[str, Any]:
    used, wanted = runner.session.get_providers(), _provider_name(runner.providers[0])
    if used[0] != wanted:  # ORT falls back silently when a provider fails to load
        raise RuntimeError(f"onnxruntime fell back to {used[0]} instead of {wanted}")
    return {"providers": used}


def _artifact_builder(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
    from converters.runners import make_runner

    return make_runner(spec)


def _tf_gpu_builder(job: "Job", spec: "RunnerSpec") -> "BaseRunner":
    """The artifact's TensorFlow runner; on CUDA only when TensorFlow sees a GPU (it would
    otherwise run on the CPU under a cuda label)."""
    if job.device == "cuda":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            raise RuntimeError(f"tensorflow {tf.__version__} sees no GPU (a CPU-only build, "
                               "or its CUDA libraries are missing)")
    return _artifact_builder(job, spec)


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
    probe: avail.Probe = avail.always


_TORCH = ("torch", "torchvision")
_TF = ("tensorflow",)
_RUNNER_KINDS: dict[str, _RunnerKind] = {
    "onnxruntime": _RunnerKind(
        _onnxrt_builder, ("onnxruntime",), ("cpu", "cuda"),
        "ONNX Runtime, CPU EP (CUDA EP on GPU; synchronous run, host arrays in/out)",
        describe=_onnxrt_describe, probe=avail.ort_probe("CUDAExecutionProvider")),
    "tf_savedmodel": _RunnerKind(_tf_gpu_builder, _TF, ("cpu", "cuda"),
                                 "TF SavedModel serving_default (on GPU where TF sees one)",
                                 probe=avail.module_probe("tensorflow")),
    "keras": _RunnerKind(_artifact_builder, ("keras", *_TF), ("cpu",),
                         "Keras 3 model traced once as a tf.function (as predict/serving run it)",
                         probe=avail.module_probe("keras", "tensorflow")),
    "tflite": _RunnerKind(_artifact_builder, ("ai_edge_litert.interpreter",), ("cpu",),
                          "TFLite (LiteRT, XNNPACK)",
                          probe=avail.module_probe("ai_edge_litert.interpreter")),
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
                           layout=fmt.layout, describe=kind.describe, probe=kind.probe))
        if fmt.name == "keras":
            out.append(Runtime("keras_eager", "fp32", "keras", ("cpu",), _keras_eager_builder,
                               ("keras", *_TF),
                               "Keras 3 model called eagerly, layer by layer from Python",
                               layout="NHWC", probe=kind.probe))
    return out


_ORT_GPU = "ONNX Runtime, synchronous run, host arrays in/out"


def _gpu_onnx_runtimes() -> list[Runtime]:
    """ONNX Runtime's GPU execution providers on the fp32 ONNX artifact (fp16: converted from
    it when loaded, ``converters.onnx_fp16``)."""
    cuda_fp16 = avail.ort_probe("CUDAExecutionProvider", needs=(avail.fp16_onnx_probe,))
    trt = avail.ort_probe(_TRT)
    common = dict(imports=("onnxruntime",), describe=_onnxrt_describe)
    return [
        Runtime("onnxruntime_fp16", "fp16", "onnx", ("cuda",),
                _onnxrt_variant(fp16_model=True),
                description=f"{_ORT_GPU}, CUDA EP, fp16 model (fp32 input and output)",
                probe=cuda_fp16, **common),
        Runtime("onnxruntime_trt", "fp32", "onnx", ("cuda",), _onnxrt_variant(ORT_TENSORRT),
                description=f"{_ORT_GPU}, TensorRT EP (CUDA EP for the rest), fp32",
                probe=trt, **common),
        Runtime("onnxruntime_trt_fp16", "fp16", "onnx", ("cuda",),
                _onnxrt_variant(ORT_TENSORRT, precision="fp16"),
                description=f"{_ORT_GPU}, TensorRT EP with fp16 kernels allowed",
                probe=trt, **common),
    ]


def _torch(name: str, precision: str, devices: tuple[str, ...], variant: TorchVariant,
           description: str, **kwargs: Any) -> Runtime:
    probe = avail.torch_probe(bf16=variant.autocast == "bfloat16")
    return Runtime(name, precision, None, devices, _torch_builder(variant), _TORCH, description,
                   layout="NHWC" if variant.channels_last else "NCHW", cuda_clock="cuda_event",
                   probe=probe, **kwargs)


_BOTH, _CUDA = ("cpu", "cuda"), ("cuda",)
_TORCH_RUNTIMES = (
    _torch("pytorch", "fp32", _BOTH, TorchVariant(), "PyTorch eager, NCHW contiguous"),
    _torch("pytorch_cl", "fp32", _BOTH, TorchVariant(channels_last=True),
           "PyTorch eager, channels_last"),
    _torch("torch_compile", "fp32", _BOTH, TorchVariant(compile_mode="default"),
           "torch.compile (inductor), NCHW input"),
    _torch("pytorch_tf32", "tf32", _CUDA, TorchVariant(tf32=True),
           "PyTorch eager, NCHW, TF32 matmuls and convolutions"),
    _torch("pytorch_fp16", "fp16", _CUDA, TorchVariant(autocast="float16"),
           "PyTorch eager, NCHW, torch.autocast fp16 (fp32 logits)"),
    _torch("pytorch_bf16", "bf16", _CUDA, TorchVariant(autocast="bfloat16"),
           "PyTorch eager, NCHW, torch.autocast bf16 (fp32 logits)"),
    _torch("pytorch_fp16_cl", "fp16", _CUDA, TorchVariant(channels_last=True, autocast="float16"),
           "PyTorch eager, channels_last, torch.autocast fp16 (fp32 logits)"),
    _torch("pytorch_graph", "fp32", _CUDA, TorchVariant(cuda_graph=True),
           "PyTorch fp32, NCHW, replayed as a CUDA graph (torch.cuda.graphs; captured per "
           "batch size before timing)"),
    _torch("pytorch_fp16_graph", "fp16", _CUDA,
           TorchVariant(channels_last=True, autocast="float16", cuda_graph=True),
           "PyTorch channels_last, autocast fp16, replayed as a CUDA graph"),
    _torch("torch_compile_max", "fp32", _CUDA, TorchVariant(compile_mode="max-autotune"),
           "torch.compile mode=max-autotune (minutes of autotuning per model: asked for by "
           "name)", default=False),
)


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    *_TORCH_RUNTIMES, *_artifact_runtimes(), *_gpu_onnx_runtimes())}


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

    return [name for name, rt in RUNTIMES.items() if device in rt.devices and rt.default
            and (rt.artifact is None or FORMATS[rt.artifact].default)]


def available_runtimes(names: list[str], device: str) -> tuple[list[str], dict[str, str]]:
    """``names`` split into those that can run on ``device`` here and, for the rest, why
    not (asked once per runtime, in order)."""
    skipped = {name: why for name in names if (why := get_runtime(name).unavailable(device))}
    return [n for n in names if n not in skipped], skipped
