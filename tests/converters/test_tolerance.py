"""One tolerance policy for agreement and parity: defaults, per-model overrides."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from converters.agreement import compare_logits
from converters.parity.metrics import diff_tensors
from converters.tolerance import DEFAULT_POLICY, TensorTolerance, TolerancePolicy


def test_defaults_are_the_bounds_the_readme_states():
    fp32, fp16 = DEFAULT_POLICY.for_("any", "fp32"), DEFAULT_POLICY.for_("any", "fp16")
    assert (fp32.logits.atol, fp32.logits.rtol, fp32.logits.min_top1) == (1e-4, 1e-5, 1.0)
    assert (fp16.logits.atol, fp16.logits.rtol, fp16.logits.min_top1) == (5e-2, 2e-2, 0.9)
    assert (fp32.logits.floor_margin, fp16.logits.floor_margin) == (8.0, 3.0)
    assert DEFAULT_POLICY.for_("any", "int8").logits.floor_margin == 0.0
    assert fp32.tensors == TensorTolerance(min_snr_db=80.0, min_cosine=0.99999,
                                           floor_margin_db=20 * np.log10(8.0))
    assert fp16.tensors == TensorTolerance(min_snr_db=30.0, min_cosine=0.999,
                                           floor_margin_db=20 * np.log10(3.0))


def test_bars_drop_to_the_rounding_floor_less_its_margin_and_no_further():
    fp16, fp32 = (DEFAULT_POLICY.for_("any", p).tensors for p in ("fp16", "fp32"))
    assert fp16.under_floor(60.0, 0.999999) == fp16  # a floor above the bars moves nothing
    low = fp16.under_floor(20.0, 0.99)
    assert np.isclose(low.min_snr_db, 20.0 - 9.542, atol=1e-3)
    assert np.isclose(low.min_cosine, 1 - 9 * 0.01)  # 1 - cosine grows as the error squared
    assert fp16.under_floor(float("nan"), 0.5) == fp16  # no finite floor: the flat bars
    # fp32: PyTorch's fp32 run 83.2 dB from its fp64 one (random regnet_y_1_6gf's block4-1
    # BN output), the bar 18.06 dB under it; a floor above 98 dB moves nothing
    at_bn = fp32.under_floor(83.2, 1 - 1e-8)
    assert np.isclose(at_bn.min_snr_db, 83.2 - 18.062, atol=1e-3)
    assert np.isclose(at_bn.min_cosine, 1 - 64e-8)
    assert fp32.under_floor(120.0, 1.0) == fp32
    kw = dict(name="t", module="m", op="Conv", depth=0)
    x = np.linspace(1, 2, 64)
    noisy = x * (1 + 0.05 * np.cos(np.arange(64)))  # ~27 dB: under the flat 30 dB bar
    assert not diff_tensors(x, noisy, tol=fp16, **kw).passed
    assert diff_tensors(x, noisy, tol=low, **kw).passed


def test_a_model_override_reaches_agreement_and_parity():
    loose = replace(DEFAULT_POLICY.for_("m", "fp32"), tensors=TensorTolerance(40.0, 0.99))
    loose = replace(loose, logits=replace(loose.logits, atol=1e-2))
    policy = TolerancePolicy(overrides={"m": {"fp32": loose}})
    assert policy.for_("other", "fp32") == DEFAULT_POLICY.for_("other", "fp32")
    ref = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    off = ref + 1e-3
    assert not compare_logits("onnx", "fp32", off, ref).passed
    assert compare_logits("onnx", "fp32", off, ref, tol=policy.for_("m", "fp32").logits).passed
    x = np.linspace(1, 2, 64)
    noisy = x * (1 + 1e-3 * np.cos(np.arange(64)))  # ~60 dB
    kw = dict(name="t", module="m", op="Conv", depth=0)
    assert not diff_tensors(x, noisy, tol=DEFAULT_POLICY.for_("m", "fp32").tensors, **kw).passed
    assert diff_tensors(x, noisy, tol=policy.for_("m", "fp32").tensors, **kw).passed
