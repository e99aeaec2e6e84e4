"""TorchRunner on a device: inputs copied once in ``prepare``, host arrays out."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from converters.runners import RunnerSpec
from converters.runners.torch_runner import TorchRunner
from zoo.build import build_model
from zoo.meta import input_shape
from zoo.registry import get_entry

DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA GPU (torch.cuda.is_available() is False)")])]


@pytest.mark.parametrize("device", DEVICES)
def test_torch_runner_runs_on_its_device(device):
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # fp32 means fp32
        _check_runner_on(device)


def _check_runner_on(device: str) -> None:
    model, _ = build_model("squeezenet1_1", weights="random")
    x = np.random.default_rng(0).standard_normal(input_shape(get_entry("squeezenet1_1"), 2),
                                                 dtype=np.float32)
    with torch.inference_mode():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    runner = TorchRunner(RunnerSpec("pytorch", "torchvision:squeezenet1_1", threads=1),
                         loader=lambda: model, device=device, capture=True)
    with runner:
        prepared = runner.prepare({"input": x})
        assert isinstance(prepared["input"], torch.Tensor)
        assert prepared["input"].device.type == device
        out = runner.run_prepared(prepared)["logits"]
        assert isinstance(out, np.ndarray) and out.shape == (2, 1000)
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
        # infer() takes host arrays; captured activations come back to the host too
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], out, atol=1e-5, rtol=0)
        assert runner.captured and all(isinstance(v, np.ndarray) for v in runner.captured.values())
    assert next(runner.model.parameters()).device.type == device
