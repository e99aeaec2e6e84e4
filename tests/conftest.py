"""Shared fixtures: an isolated torch hub cache, so no test sees weights cached by hand."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    # Tests import torchvision and TensorFlow in any order; see converters.tf_compat.
    from converters.tf_compat import preload_triton

    preload_triton()
    # Quick test runs must not feed the machine's cached GEMM peak (bench/latency/peak_cache);
    # their own cache goes when the session ends.
    import tempfile

    config._peak_cache = tempfile.mkdtemp(prefix="modelzoo-peak-")
    os.environ["MODELZOO_PEAK_CACHE"] = config._peak_cache


def pytest_unconfigure(config) -> None:
    import shutil

    if getattr(config, "_peak_cache", None):
        shutil.rmtree(config._peak_cache, ignore_errors=True)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """TORCH_HOME pointing at an empty folder."""
    import torch.hub

    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return home


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 900,
            cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run ``python -m ...`` in a fresh process (from the repo root unless ``cwd``)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def int8_mobilenet(tmp_path_factory):
    """mobilenet_v2 (real weights) converted to ONNX and ONNX int8 (minmax calibration on
    4 imagenet-sample photos, copied to their own folder): (artifact root, calib folder)."""
    import shutil

    from converters.calibration import image_files, imagenet_sample_dir
    from converters.pipeline import ConvertOptions, convert_model
    from converters.quantize import QuantizeOptions

    root = tmp_path_factory.mktemp("int8")
    calib = root / "calib"
    calib.mkdir()
    for f in image_files(imagenet_sample_dir())[0:40:10]:
        shutil.copy(f, calib / f.name)
    opts = ConvertOptions(weights="imagenet", out_root=root / "artifacts",
                          formats=("onnx", "onnx_int8"),
                          int8=QuantizeOptions(method="minmax", calib=calib))
    convert_model("mobilenet_v2", opts, log=lambda s: None)
    return root / "artifacts", calib
