"""Protocol 2: fine-tuning with a new linear head on the catalog's feature layer.

Freeze modes (the transfer-learning scenarios with the random-weights control):
``all`` trains the head only on a frozen backbone, ``first:K`` freezes the first
K backbone stages, ``none`` trains everything; ``none`` with random weights is
training from scratch. Frozen stages stay in eval mode, so their BatchNorm
statistics do not move. The backbone learns at a smaller rate than the head.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo.entry import ModelEntry

if TYPE_CHECKING:
    import torch

    from bench.transfer.datasets import Split
    from bench.transfer.features import TransformSpec

OPTIMIZERS = ("sgd", "adamw")
DEFAULT_LR = {"sgd": (0.01, 0.001), "adamw": (1e-3, 1e-4)}  # (head, backbone)


@dataclass(frozen=True)
class FinetuneConfig:
    freeze: str = "first:12"  # "all" | "none" | "first:K"
    optimizer: str = "sgd"
    epochs: int = 1
    lr: float | None = None  # head; default from DEFAULT_LR
    backbone_lr: float | None = None
    weight_decay: float = 1e-4
    batch_size: int = 32
    seed: int = 0


@dataclass(frozen=True)
class FreezePlan:
    stages: tuple[str, ...]  # backbone stages in forward order
    frozen_stages: int
    trainable_params: int
    frozen_params: int


@dataclass(frozen=True)
class FinetuneResult:
    accuracy: float
    train_loss: float  # mean over the last epoch
    fit_s: float
    eval_s: float
    plan: FreezePlan
    lr: float
    backbone_lr: float


def parse_freeze(text: str, n_stages: int) -> int:
    """Number of leading stages to freeze for ``all`` / ``none`` / ``first:K``."""
    if text == "all":
        return n_stages
    if text == "none":
        return 0
    head, _, k = text.partition(":")
    if head != "first" or not k.isdigit():
        raise ValueError(f"freeze must be 'all', 'none' or 'first:K', got {text!r}")
    if int(k) > n_stages:
        raise ValueError(f"freeze {text!r}: the backbone has only {n_stages} stages")
    return int(k)


def backbone_stages(model: "torch.nn.Module", entry: ModelEntry
                    ) -> list[tuple[str, "torch.nn.Module"]]:
    """Parameterised blocks that run before the feature layer, in registration order.

    Walking ``entry.feature_layer``: siblings registered before each path step
    are stages; a Sequential feature layer contributes its children (MobileNet's
    19 blocks); what comes after is the old head, replaced.
    """
    import torch.nn as nn

    stages: list[tuple[str, nn.Module]] = []
    node, prefix = model, ""
    parts = entry.feature_layer.split(".")
    for depth, part in enumerate(parts):
        for name, child in node.named_children():
            full = f"{prefix}{name}"
            if name == part:
                if depth == len(parts) - 1:
                    kids = list(child.named_children()) if isinstance(child, nn.Sequential) else []
                    stages += [(f"{full}.{n}", m) for n, m in kids] or [(full, child)]
                break
            stages.append((full, child))
        node, prefix = node.get_submodule(part), f"{prefix}{part}."
    return [(n, m) for n, m in stages if any(True for _ in m.parameters())]


def _count(params) -> int:
    return sum(p.numel() for p in params)


class TransferNet:
    """Backbone up to the feature layer + a new ``Linear`` head.

    A plain class holding the two modules, not an ``nn.Module`` subclass, so that
    importing this file does not import torch.
    """

    def __init__(self, model: "torch.nn.Module", entry: ModelEntry, num_classes: int,
                 freeze: str) -> None:
        import torch

        from bench.transfer.features import FeatureTap

        self.backbone = model
        self.tap = FeatureTap(model, entry)
        self.head = torch.nn.Linear(entry.feature_dim, num_classes)
        named = backbone_stages(model, entry)
        k = parse_freeze(freeze, len(named))
        self.trainable = [m for _, m in named[k:]]
        for p in model.parameters():
            p.requires_grad_(False)
        for m in self.trainable:
            for p in m.parameters():
                p.requires_grad_(True)
        trainable = _count(p for p in self.parameters() if p.requires_grad)
        frozen = _count(p for p in self.parameters() if not p.requires_grad)
        self.plan = FreezePlan(tuple(n for n, _ in named), k, trainable, frozen)

    def parameters(self):
        yield from self.backbone.parameters()
        yield from self.head.parameters()

    def backbone_trainable(self) -> list["torch.nn.Parameter"]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def train(self) -> None:
        """Trainable stages and head in train mode; everything frozen stays in eval mode."""
        self.backbone.eval()
        for m in self.trainable:
            m.train()
        self.head.train()

    def eval(self) -> None:
        self.backbone.eval()
        self.head.eval()

    def to(self, device: str) -> "TransferNet":
        import torch

        # channels_last: faster CPU convolutions (oneDNN) for training and evaluation.
        self.backbone.to(device, memory_format=torch.channels_last)
        self.head.to(device)
        return self

    def __call__(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.head(self.tap(x))


def make_optimizer(net: TransferNet, cfg: FinetuneConfig):
    import torch

    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
    lr, blr = _rates(cfg)
    groups = [{"params": list(net.head.parameters()), "lr": lr}]
    if net.backbone_trainable():
        groups.append({"params": net.backbone_trainable(), "lr": blr})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)


def _rates(cfg: FinetuneConfig) -> tuple[float, float]:
    head, backbone = DEFAULT_LR[cfg.optimizer]
    return (cfg.lr if cfg.lr is not None else head,
            cfg.backbone_lr if cfg.backbone_lr is not None else backbone)


def train_epoch(net: TransferNet, opt, loader, *, device: str, label: str) -> float:
    """One pass over ``loader``; the mean training loss."""
    import torch

    from bench.transfer.progress import progress_bar

    net.train()
    total, seen = 0.0, 0
    with progress_bar(label, len(loader.dataset)) as advance:
        for x, y in loader:
            x, y = x.to(device, memory_format=torch.channels_last), y.to(device)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + float(loss.detach()) * len(y), seen + len(y)
            advance(len(y))
    return total / max(seen, 1)


def evaluate(net: TransferNet, loader, *, device: str, label: str) -> float:
    import torch

    from bench.transfer.progress import progress_bar

    net.eval()
    correct, seen = 0, 0
    with torch.inference_mode(), progress_bar(label, len(loader.dataset)) as advance:
        for x, y in loader:
            pred = net(x.to(device, memory_format=torch.channels_last)).argmax(1).cpu()
            correct, seen = correct + int((pred == y).sum()), seen + len(y)
            advance(len(y))
    return correct / max(seen, 1)


def finetune(model: "torch.nn.Module", entry: ModelEntry, train: "Split", test: "Split",
             t: "TransformSpec", cfg: FinetuneConfig, *, device: str = "cpu", workers: int = 0,
             eval_batch_size: int = 64) -> FinetuneResult:
    """Fine-tune ``model`` with a new head on ``train`` and return the test accuracy."""
    import torch

    from bench.transfer.features import make_loader

    torch.manual_seed(cfg.seed)
    net = TransferNet(model, entry, len(train.classes), cfg.freeze).to(device)
    opt = make_optimizer(net, cfg)
    loader = make_loader(train, t, batch_size=cfg.batch_size, workers=workers, shuffle=True,
                         seed=cfg.seed)
    t0 = time.perf_counter()
    loss = float("nan")
    for epoch in range(cfg.epochs):
        loss = train_epoch(net, opt, loader, device=device,
                           label=f"train epoch {epoch + 1}/{cfg.epochs}")
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = evaluate(net, make_loader(test, t, batch_size=eval_batch_size, workers=workers),
                   device=device, label="evaluate test")
    lr, blr = _rates(cfg)
    return FinetuneResult(acc, loss, fit_s, time.perf_counter() - t0, net.plan, lr, blr)
