"""The offline demo: mobilenet_v2 with real ImageNet weights, every format classifies a cat."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from converters.manifest import Manifest
from converters.onnx_export import INPUT_NAME, OUTPUT_NAME
from converters.pipeline import ConvertOptions, convert_model, runner_spec
from converters.runners import make_runner
from zoo.data import IMAGENET_CAT_CLASSES, cat_photo
from zoo.meta import published_meta, weights_member
from zoo.preprocess import preprocess_images
from zoo.registry import get_entry

DEMO_MODEL = "mobilenet_v2"


@dataclass(frozen=True)
class Prediction:
    artifact: str
    class_index: int
    label: str
    probability: float

    @property
    def is_cat(self) -> bool:
        return self.class_index in IMAGENET_CAT_CLASSES


def classify_cat(folder: Path, manifest: Manifest) -> list[Prediction]:
    """Top-1 ImageNet class of scikit-image's cat photo for PyTorch and every artifact."""
    import numpy as np
    import torch

    from zoo.build import build_model

    entry = get_entry(manifest.model)
    x = preprocess_images([cat_photo()], published_meta(entry).preprocessing)
    categories = weights_member(entry).meta["categories"]
    model, _ = build_model(entry, weights=manifest.weights.spec)
    with torch.inference_mode():
        logits = {"pytorch": model(torch.from_numpy(x)).numpy()}
    for record in manifest.artifacts:
        with make_runner(runner_spec(folder, record)) as runner:
            logits[record.format] = runner.infer({INPUT_NAME: x})[OUTPUT_NAME]
    preds = []
    for name, z in logits.items():
        p = np.exp(z[0] - z[0].max())
        p /= p.sum()
        k = int(z[0].argmax())
        preds.append(Prediction(name, k, categories[k], float(p[k])))
    return preds


def run_demo(out_root: Path) -> tuple[Manifest, list[Prediction]]:
    manifest = convert_model(DEMO_MODEL, ConvertOptions(weights="imagenet", out_root=out_root))
    return manifest, classify_cat(out_root / DEMO_MODEL, manifest)
