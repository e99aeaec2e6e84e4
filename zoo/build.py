"""Build a catalog model with resolved weights."""
from __future__ import annotations

from typing import TYPE_CHECKING

from zoo.entry import ModelEntry
from zoo.meta import input_shape
from zoo.registry import get_entry
from zoo.weights import (WeightsMismatchError, WeightsSource, imagenet_available_offline,
                         load_file_state, load_imagenet_state, mismatch_summary, parse_spec)

if TYPE_CHECKING:
    import torch


def build_model(name_or_entry: str | ModelEntry, *, weights: str | None = "imagenet"
                ) -> tuple["torch.nn.Module", WeightsSource]:
    """Return the model in eval mode and where its weights came from.

    ``weights``: ``imagenet[:TAG]`` (default), ``random[:SEED]``, ``auto`` or a state-dict path.
    """
    import torch
    import torchvision.models as tvm

    entry = name_or_entry if isinstance(name_or_entry, ModelEntry) else get_entry(name_or_entry)
    kind, arg = parse_spec(weights)
    if kind == "auto":
        kind, arg = ("imagenet", None) if imagenet_available_offline(entry) else ("random", "0")
    builder = getattr(tvm, entry.builder)
    if kind == "random":
        seed = int(arg)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = builder(weights=None, **entry.builder_kwargs)
            calibrated = calibrate_batchnorm(model, input_shape(entry, 8))
        label = f"random weights (seed {seed}{', BN stats on seeded noise' if calibrated else ''})"
        return model.eval(), WeightsSource("random", label, "", False, seed)
    state, source = load_imagenet_state(entry, arg) if kind == "imagenet" else load_file_state(arg)
    model = builder(weights=None, **entry.builder_kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsMismatchError(
            f"{entry.name}: state dict from {source.location} does not fit: "
            f"{mismatch_summary(model.state_dict(), state)}") from None
    return model.eval(), source


def calibrate_batchnorm(model: "torch.nn.Module", shape: tuple[int, ...]) -> bool:
    """Set BN running statistics from one seeded-noise batch; False if there is no BN.

    Freshly initialised BN layers hold mean 0 / var 1, so in eval mode they pass
    activations through unnormalised and deep random nets give logits of 1e-14
    (MobileNet) or 1e11 (Inception). Numerical checks on such logits mean
    nothing; with calibrated statistics the random model's activations have
    unit scale like a trained one's. Call under a forked, seeded RNG.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        model(torch.randn(shape))
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()
    return True


def count_params(model: "torch.nn.Module") -> int:
    return sum(p.numel() for p in model.parameters())
