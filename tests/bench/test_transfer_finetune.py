"""Fine-tuning: stages, freeze modes (requires_grad counts), and what one step changes."""
from __future__ import annotations

import pytest

from bench.transfer.datasets import open_dataset
from bench.transfer.features import transform_spec
from bench.transfer.finetune import (FinetuneConfig, TransferNet, backbone_stages, finetune,
                                     make_optimizer, parse_freeze)
from tests.support.images import make_image_folder
from zoo.build import build_model
from zoo.meta import published_meta
from zoo.registry import get_entry

RES = 64


def _n(params) -> int:
    return sum(p.numel() for p in params)


def _squeeze():
    model, _ = build_model("squeezenet1_1", weights="random")
    return model, get_entry("squeezenet1_1")


def test_stages_follow_the_feature_layer():
    import torchvision.models as tvm

    names = [n for n, _ in backbone_stages(tvm.mobilenet_v2(), get_entry("mobilenet_v2"))]
    assert names == [f"features.{i}" for i in range(19)]
    names = [n for n, _ in backbone_stages(tvm.resnet18(), get_entry("resnet18"))]
    assert names == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
    names = [n for n, _ in backbone_stages(tvm.alexnet(), get_entry("alexnet"))]
    assert names == ["features", "classifier.1", "classifier.4"]


def test_parse_freeze():
    assert parse_freeze("all", 7) == 7 and parse_freeze("none", 7) == 0
    assert parse_freeze("first:3", 7) == 3
    for bad in ("first:9", "some", "first:x"):
        with pytest.raises(ValueError):
            parse_freeze(bad, 7)


@pytest.mark.parametrize("freeze", ["all", "first:4", "none"])
def test_freeze_modes_freeze_exactly_what_they_say(freeze):
    model, entry = _squeeze()
    stages = backbone_stages(model, entry)
    k = parse_freeze(freeze, len(stages))
    net = TransferNet(model, entry, 3, freeze)
    head = _n(net.head.parameters())
    want_trainable = head + _n(p for _, m in stages[k:] for p in m.parameters())
    assert _n(p for p in net.parameters() if p.requires_grad) == want_trainable
    assert net.plan.trainable_params == want_trainable and net.plan.frozen_stages == k
    assert net.plan.frozen_params == _n(model.parameters()) + head - want_trainable
    for _, m in stages[:k]:
        assert not any(p.requires_grad for p in m.parameters())
    assert not any(p.requires_grad for p in model.classifier.parameters())  # the old head


def test_one_step_changes_only_the_unfrozen_weights():
    import torch

    model, entry = _squeeze()
    net = TransferNet(model, entry, 3, "first:4")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    head_before = net.head.weight.detach().clone()
    opt = make_optimizer(net, FinetuneConfig(freeze="first:4", optimizer="sgd", lr=0.1,
                                             backbone_lr=0.1))
    net.train()
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 3, RES, RES)),
                                             torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    frozen_names = {f"{s}." for s in net.plan.stages[:4]} | {"classifier."}
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p)
        if any(name.startswith(f) for f in frozen_names):
            assert not changed, name
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and any(not torch.equal(before[n], model.get_parameter(n))
                             for n in trainable)
    assert not torch.equal(head_before, net.head.weight)


def test_train_mode_keeps_frozen_stages_in_eval():
    model, entry = _squeeze()
    net = TransferNet(model, entry, 2, "first:4")
    net.train()
    stages = dict(backbone_stages(model, entry))
    assert not any(stages[n].training for n in net.plan.stages[:4])
    assert all(stages[n].training for n in net.plan.stages[4:]) and net.head.training


def test_finetune_end_to_end_on_a_tiny_folder(tmp_path):
    data = open_dataset(str(make_image_folder(tmp_path / "tiny", per_class=4)))
    model, entry = _squeeze()
    t = transform_spec(published_meta(entry).preprocessing, resolution=RES, mode="resize")
    cfg = FinetuneConfig(freeze="first:6", optimizer="adamw", epochs=2, batch_size=4)
    res = finetune(model, entry, data.train, data.test, t, cfg)
    assert 0.0 <= res.accuracy <= 1.0 and res.train_loss == res.train_loss
    assert res.plan.frozen_stages == 6 and res.lr == 1e-3 and res.backbone_lr == 1e-4
