"""Build a model of any source with resolved weights."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from zoo.entry import ModelEntry
from zoo.meta import input_shape, preprocessing_of
from zoo.registry import get_entry
from zoo.weights import WeightsSource, load_file_state, load_strict, parse_spec

if TYPE_CHECKING:
    import torch


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
        return source.finish(entry, model).eval(), found
    if kind == "random":
        seed = int(arg)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = source.build(entry)
            redrawn = redraw_zero_weights(model)
            pre = preprocessing_of(entry)
            calibrated = calibrate_batchnorm(
                model, photo_like_noise(input_shape(entry, 8), pre.mean, pre.std))
        notes = ([f"zero-initialised {', '.join(redrawn)} drawn from N(0, 0.02)"] if redrawn
                 else []) + ([f"BN stats on {CALIBRATION}"] if calibrated else [])
        label = f"random weights (seed {seed}{''.join(', ' + n for n in notes)})"
        return (source.finish(entry, model).eval(),
                WeightsSource("random", label, "", False, seed))
    state, found = load_file_state(arg)
    model = load_strict(entry, source.build(entry), state, found)
    return source.finish(entry, model).eval(), found


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


# What random weights' BatchNorm statistics are estimated on (the weights label says it).
CALIBRATION = "seeded 1/f noise images"


def photo_like_noise(shape: tuple[int, ...], mean: Sequence[float], std: Sequence[float]
                     ) -> "torch.Tensor":
    """A batch of seeded noise images with a natural image's 1/f amplitude spectrum
    (mostly luminance, some colour), pixel values in [0, 1] around a photo's mean and
    contrast, normalised with the model's ``mean`` and ``std``. Call under a forked,
    seeded RNG.

    Random weights' BN statistics are estimated on these rather than on white noise: a
    random-weight efficientnet_b1 calibrated on white noise gives logits of 0.4 for white
    noise but 1909 for the 16 sample photos, and amplifies round-off so that a 1e-7
    relative change of its input moves them by 93 (efficientnet_v2_s: logits 1.3e5, top-1
    of 6 photos in 16 changed); calibrated on these, its logits for the photos reach 2.0
    and the same change moves them by 5e-6 (efficientnet_v2_s: 1.8 and 7e-6, no top-1
    changed; measured). No file is read: the weights stay a function of the seed alone.
    """
    import torch

    n, c, h, w = shape
    fy = torch.fft.fftfreq(h).reshape(-1, 1)
    fx = torch.fft.rfftfreq(w).reshape(1, -1)
    amplitude = torch.sqrt(fy ** 2 + fx ** 2)
    amplitude[0, 0] = 1.0

    def field(channels: int) -> "torch.Tensor":
        spectrum = torch.complex(torch.randn(n, channels, h, w // 2 + 1),
                                 torch.randn(n, channels, h, w // 2 + 1)) / amplitude
        return torch.fft.irfftn(spectrum, s=(h, w), dim=(-2, -1))

    img = field(1) + 0.3 * field(c)  # luminance, and weaker colour
    img = (img - img.mean((1, 2, 3), keepdim=True)) / img.std((1, 2, 3), keepdim=True)
    img = (0.45 + 0.25 * img).clamp(0.0, 1.0)
    return (img - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def calibrate_batchnorm(model: "torch.nn.Module", batch: "torch.Tensor") -> bool:
    """Set BN running statistics from one batch (``photo_like_noise``); False if there is
    no BN.

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
        model(batch)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()
    return True


def count_params(model: "torch.nn.Module") -> int:
    return sum(p.numel() for p in model.parameters())
