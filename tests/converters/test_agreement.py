"""End-to-end agreement of logits: tolerances and non-finite outputs."""
from __future__ import annotations

import json

import numpy as np

from converters.agreement import compare_logits


def test_agreement_passes_close_logits():
    ref = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    a = compare_logits("onnx", "fp32", ref + 1e-6, ref)
    assert a.passed and a.error == "" and a.max_abs_err < 1e-5


def test_nonfinite_logits_fail_with_their_own_error():
    ref = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    bad = ref.copy()
    bad[0, :3] = np.nan
    bad[1, 0] = np.inf
    a = compare_logits("tflite_fp16", "fp16", bad, ref)
    assert not a.passed and a.error == "non-finite output (3 NaN, 1 Inf)"
    r = compare_logits("onnx", "fp32", ref, bad)
    assert not r.passed and r.error == "non-finite PyTorch reference output (3 NaN, 1 Inf)"
    record = json.loads(json.dumps(a.to_json(), allow_nan=False))  # the manifest stays JSON
    assert record["max_abs_err"] is None and record["passed"] is False
