"""The environment header's CPU: model name and the SIMD features that decide its kernels."""
from __future__ import annotations

from zoo.env import cpu_description, cpu_features, environment, markdown_header

ZEN4_FLAGS = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx_vnni", "avx512_bf16"}


def test_features_name_what_changes_kernels() -> None:
    assert cpu_features(ZEN4_FLAGS) == ("avx512", "vnni", "bf16")  # wider ones imply narrower
    assert cpu_features({"sse4_2", "avx", "avx2", "fma"}) == ("avx2",)
    assert cpu_features({"avx2", "avx_vnni"}) == ("avx2", "avx-vnni")  # Alder Lake: VNNI on AVX2
    assert cpu_features({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8"}) == (
        "avx512", "vnni", "bf16", "amx")
    assert cpu_features({"fp", "asimd", "asimddp", "i8mm", "sve"}) == (
        "neon", "dotprod", "i8mm", "sve")
    assert cpu_features(set()) == ()


def test_two_vms_of_one_model_name_are_told_apart(monkeypatch) -> None:
    """'AMD EPYC' names VMs with AVX2 only and with AVX-512 VNNI: results, node groups and the
    GEMM-peak cache key on the description, which differs."""
    import zoo.env

    monkeypatch.setattr(zoo.env, "cpu_model", lambda: "AMD EPYC")
    monkeypatch.setattr(zoo.env, "cpu_features", lambda: ("avx2",))
    avx2 = cpu_description()
    monkeypatch.setattr(zoo.env, "cpu_features", lambda: ("avx512", "vnni", "bf16"))
    assert (avx2, cpu_description()) == ("AMD EPYC [avx2]", "AMD EPYC [avx512 vnni bf16]")
    env = environment(threads=1, with_gpu=False)
    assert env["cpu"] == "AMD EPYC [avx512 vnni bf16]"
    assert "- CPU: AMD EPYC [avx512 vnni bf16] (" in markdown_header(env, "t")
