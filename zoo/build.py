"""Build a model of any source with resolved weights."""
from __future__ import annotations

from typing import TYPE_CHECKING

from zoo.entry import ModelEntry
from zoo.exits import UserError
from zoo.meta import input_shape, preprocessing_of
from zoo.registry import get_entry
from zoo.weights import WeightsSource, load_file_state, load_strict, parse_spec

if TYPE_CHECKING:
    import numpy as np
    import torch

# what BN statistics of random weights are set from (the manifest records it: artifacts
# converted under another recipe hold other weights and are converted again)
RANDOM_RECIPE = "8 scikit-image photos + 8 seeded N(0,1) images"


def build_model(name_or_entry: str | ModelEntry, *, weights: str | None = "imagenet"
                ) -> tuple["torch.nn.Module", WeightsSource]:
    """Return the model in eval mode and where its weights came from.

    ``weights``: ``imagenet[:TAG]`` (default: the source's pretrained weights),
    ``random[:SEED]``, ``auto``, a state-dict path, or for a user's model ``factory``
    (what its factory returns, also what ``imagenet`` means there).
    """
    import torch

    from zoo.sources import source_of

    entry = name_or_entry if isinstance(name_or_entry, ModelEntry) else get_entry(name_or_entry)
    source = source_of(entry)
    kind, arg = parse_spec(weights)
    if kind == "auto":
        kind, arg = ("imagenet", None) if source.available_offline(entry) else ("random", "0")
    if kind in ("factory", "module") and entry.source not in ("user", "module"):
        raise ValueError(f"{entry.name}: weights 'factory' are for your own model "
                         "(file.py:factory); use imagenet, random[:SEED] or a state-dict path")
    if kind in ("imagenet", "factory", "module"):
        model, found = source.pretrained(entry, arg)
        return eval_mode(source.finish(entry, model), found, user=entry.source in USER_SOURCES)
    if kind == "random":
        seed = int(arg)
        # the photos first: their meta may build a model (timm's parameter count), whose
        # draws inside the seeded block moved the noise BN is calibrated on, differently
        # on a process's first build (timm/swiftformer_xs rebuilt for parity: 49.6 dB at
        # its first BN)
        photos = calibration_photos(entry)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = source.build(entry)
            redrawn = redraw_zero_weights(model)
            calibrated = calibrate_batchnorm(model, photos)
        notes = ([f"zero-initialised {', '.join(redrawn)} drawn from N(0, 0.02)"] if redrawn
                 else []) + ([f"BN stats on {RANDOM_RECIPE}"] if calibrated else [])
        label = f"random weights (seed {seed}{''.join(', ' + n for n in notes)})"
        return eval_mode(source.finish(entry, model),
                         WeightsSource("random", label, "", False, seed, RANDOM_RECIPE),
                         user=False)
    state, found = load_file_state(arg)
    model = load_strict(entry, source.build(entry), state, found)
    return eval_mode(source.finish(entry, model), found, user=entry.source in USER_SOURCES)


USER_SOURCES = ("user", "module")  # models a user hands over (zoo.sources.user)
# layers whose output differs between train and eval mode
_MODE_DEPENDENT = ("Dropout", "BatchNorm", "DropPath", "StochasticDepth", "InstanceNorm")


def eval_mode(model: "torch.nn.Module", found: WeightsSource, *, user: bool
              ) -> tuple["torch.nn.Module", WeightsSource]:
    """``model`` in eval mode, its weights checked finite (``check_finite``). A user's
    model that came in train mode with layers that behave differently there (dropout,
    BatchNorm's batch statistics) gets a note on its weights source, which the manifest
    and the terminal show: the conversion is of the eval-mode model, not of what the
    factory returned."""
    import dataclasses
    from collections import Counter

    note = ""
    if user and model.training:
        kinds = Counter(k for m in model.modules() for k in _MODE_DEPENDENT
                        if m.training and k in type(m).__name__)
        if kinds:
            note = ("the model was handed over in train mode (" + ", ".join(
                f"{n} {k}" for k, n in kinds.items()) + " layers act differently there): "
                "converted in eval mode, as deployed")
    check_finite(model, found)
    return model.eval(), dataclasses.replace(found, eval_note=note) if note else found


class NonFiniteWeightsError(UserError, ValueError):
    """A weight or buffer holds NaN or Inf: no artifact could mean anything (exit 2)."""


def check_finite(model: "torch.nn.Module", found: WeightsSource) -> None:
    """Raise ``NonFiniteWeightsError`` naming the first tensor with NaN or Inf, before any
    conversion: such a model's every output is NaN, and every check would fail far later
    for reasons that blame the converters."""
    import torch

    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            nan = int(torch.isnan(tensor).sum())
            inf = int(torch.isinf(tensor).sum())
            raise NonFiniteWeightsError(
                f"{found.label}: {name} holds {nan} NaN and {inf} Inf of {tensor.numel()} "
                "values; nothing converted (fix or retrain the checkpoint)")


def recipe_mismatch(weights: WeightsSource) -> str:
    """Why ``build_model(weights=weights.spec)`` would not rebuild the weights an artifact
    was converted from ("" when it would): random weights made under another recipe."""
    if weights.kind != "random" or weights.recipe == RANDOM_RECIPE:
        return ""
    return (f"random weights with BN statistics from {weights.recipe or 'one batch of noise'}"
            f"; this version sets them from {RANDOM_RECIPE}: convert again")


def redraw_zero_weights(model: "torch.nn.Module") -> list[str]:
    """Draw every all-zero Linear/Conv weight from N(0, 0.02); the names of those redrawn.

    Some builders zero-initialise their classifier (torchvision's ViT ``heads.head``), so a
    randomly initialised model outputs all-zero logits for every input and every format
    "agrees" with PyTorch without checking anything. Call under a forked, seeded RNG.
    """
    import torch

    redrawn = []
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if (isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))
                and isinstance(w, torch.Tensor) and w.numel() and not torch.any(w)):
            with torch.no_grad():
                torch.nn.init.normal_(w, std=0.02)
            redrawn.append(name)
    return redrawn


def calibration_photos(entry: ModelEntry) -> "np.ndarray":
    """scikit-image's 8 bundled photos, preprocessed for ``entry`` (NCHW float32): the
    same on every machine, and none of them among the ImageNet sample photos that
    parity and accuracy use."""
    from zoo.data import skimage_photos
    from zoo.preprocess import preprocess_images

    photos = preprocess_images(skimage_photos(8).images, preprocessing_of(entry))
    assert photos.shape[1:] == input_shape(entry)[1:], (photos.shape, input_shape(entry))
    return photos


def calibrate_batchnorm(model: "torch.nn.Module", photos: "np.ndarray") -> bool:
    """Set BN running statistics from one batch of ``photos`` and as many seeded N(0, 1)
    images; False if there is no BN.

    Freshly initialised BN layers hold mean 0 / var 1, so in eval mode they pass
    activations through unnormalised and deep random nets give logits of 1e-14
    (MobileNet) or 1e11 (Inception). Numerical checks on such logits mean
    nothing; with calibrated statistics the random model's activations have
    unit scale like a trained one's. Noise alone is not enough: statistics of noise
    leave channels that photos drive hard, and a random efficientnet_v2_s then gave
    photos logits of 1.3e4, 4.5e3 of it fp32 rounding (noise's own logits: 0.2). Photos
    and noise together keep both at unit scale, as parity feeds both. Call under a
    forked, seeded RNG.
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
    x = torch.from_numpy(photos)
    with torch.no_grad():
        model(torch.cat([x, torch.randn(x.shape)]))
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()
    return True


def count_params(model: "torch.nn.Module") -> int:
    return sum(p.numel() for p in model.parameters())
