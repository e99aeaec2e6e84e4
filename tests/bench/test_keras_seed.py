"""The Keras seed workflow on a tiny two-class folder: frozen really frozen, unfrozen trains."""
from __future__ import annotations

import numpy as np
from PIL import Image

from bench.keras_seed import keras_run, load_split, torch_run, unfreeze_moves_weights
from converters.onnx_export import export_onnx
from zoo.build import build_model
from zoo.meta import input_shape, published_meta
from zoo.registry import get_entry


def _folder(root, n=4):
    rng = np.random.default_rng(0)
    for cls, base in (("cat", 60), ("dog", 190)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            img = np.clip(base + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"{i}.png")
    return root


def test_frozen_backbone_stays_and_unfrozen_trains(tmp_path):
    entry = get_entry("squeezenet1_1")
    prep = published_meta(entry).preprocessing
    split = load_split(_folder(tmp_path / "train"), prep)
    assert split[0].shape == (8, 3, 224, 224) and sorted(set(split[1])) == [0, 1]
    data = (split, split)
    model, _ = build_model(entry, weights="random")
    onnx_path = export_onnx(model, input_shape=input_shape(entry), path=tmp_path / "m.onnx")
    acc, fit_s, (kmodel, base) = keras_run(onnx_path, entry, data, epochs=1, batch=4, lr=1e-2)
    assert 0.0 <= acc <= 1.0 and fit_s > 0
    assert len(base.trainable_weights) == 0 and len(kmodel.trainable_weights) == 2  # Dense only
    assert unfreeze_moves_weights(kmodel, base, data, steps=1) > 0
    t_acc, _ = torch_run(model, entry, data, epochs=1, batch=4, lr=1e-2)
    assert 0.0 <= t_acc <= 1.0
    assert not any(p.requires_grad for p in model.parameters())
