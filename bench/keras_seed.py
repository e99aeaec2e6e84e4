"""The Keras transfer workflow on a converted backbone, against PyTorch doing the same.

``python -m bench.keras_seed [--model mobilenet_v2] [--epochs 3]``: freeze the
backbone, add a Dense head, compile, fit on cats-vs-dogs, evaluate; the same
protocol in PyTorch on the same preprocessed images; a random-weights Keras
control; then unfreeze and check that a few steps move the backbone weights.
Writes ``results/keras-seed.{jsonl,csv,md}``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from converters.runners.base import to_nhwc
from zoo.cli import add_results_argument, results_dir

SEED = 0


@dataclass(frozen=True)
class SeedResult:
    framework: str
    model: str
    weights: str
    dataset: str
    n_train: int
    n_test: int
    epochs: int
    batch_size: int
    learning_rate: float
    test_accuracy: float
    fit_s: float


def load_split(folder: Path, prep) -> tuple[np.ndarray, np.ndarray]:
    from zoo.preprocess import load_batch

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((folder / c).iterdir())]
    x = load_batch([f for f, _ in files], prep)
    return x, np.array([i for _, i in files], dtype=np.int64)


def keras_run(onnx_path: Path, entry, data, *, epochs: int, batch: int, lr: float
              ) -> tuple[float, float, object]:
    import keras

    from converters.keras import feature_extractor, onnx_to_keras

    keras.utils.set_random_seed(SEED)
    base = feature_extractor(onnx_to_keras(onnx_path), entry)
    base.trainable = False
    inputs = keras.Input(base.input_shape[1:])
    outputs = keras.layers.Dense(2)(base(inputs, training=False))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    (xtr, ytr), (xte, yte) = data
    t0 = time.perf_counter()
    model.fit(to_nhwc(xtr), ytr, epochs=epochs, batch_size=batch, verbose=0)
    fit_s = time.perf_counter() - t0
    _, acc = model.evaluate(to_nhwc(xte), yte, batch_size=64, verbose=0)
    return float(acc), fit_s, (model, base)


def torch_run(model, entry, data, *, epochs: int, batch: int, lr: float) -> tuple[float, float]:
    import torch

    from bench.transfer.features import FeatureTap

    torch.manual_seed(SEED)
    model.eval().requires_grad_(False)
    embed = FeatureTap(model, entry)  # the feature layer's output, or its input (a head's)

    head = torch.nn.Linear(entry.feature_dim, 2)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    (xtr, ytr), (xte, yte) = data
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(xtr))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            with torch.no_grad():
                f = embed(torch.from_numpy(xtr[idx.numpy()]))
            loss = torch.nn.functional.cross_entropy(head(f), torch.from_numpy(ytr[idx.numpy()]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    fit_s = time.perf_counter() - t0
    with torch.no_grad():
        pred = torch.cat([head(embed(torch.from_numpy(xte[i:i + 64]))).argmax(1)
                          for i in range(0, len(xte), 64)])
    return float((pred.numpy() == yte).mean()), fit_s


def unfreeze_moves_weights(model, base, data, *, steps: int = 3) -> float:
    """Unfreeze the backbone, fit a few steps; max |change| of the first conv kernel."""
    import keras

    base.trainable = True
    conv = next(layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D))
    before = keras.ops.convert_to_numpy(conv.kernel)
    model.compile(keras.optimizers.SGD(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    (xtr, ytr), _ = data
    model.fit(to_nhwc(xtr[:16 * steps]), ytr[:16 * steps], batch_size=16,
              epochs=1, verbose=0)
    return float(np.abs(keras.ops.convert_to_numpy(conv.kernel) - before).max())


def write_results(results: list[SeedResult], unfreeze_delta: float, env: dict,
                  results_dir: Path) -> list[Path]:
    from zoo import atomic
    from zoo.env import markdown_header
    from zoo.tables import md_table

    results_dir.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in results]
    jsonl = results_dir / "keras-seed.jsonl"
    atomic.write_text(jsonl, "\n".join(json.dumps(x) for x in [{"environment": env}, *rows])
                      + "\n")
    csv_path = results_dir / "keras-seed.csv"
    with atomic.atomic_open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    table = md_table(list(rows[0]), [list(r.values()) for r in rows],
                     cell=lambda v: f"{v:.4f}" if isinstance(v, float) else str(v))
    md = [markdown_header(env, "Keras transfer workflow on a converted backbone"),
          "Frozen backbone (catalog feature layer, global-average pooled) + new Dense(2) head, "
          "Adam, same images, seed and schedule in both frameworks.\n",
          table,
          f"Unfrozen backbone, 3 SGD steps: first conv kernel max |change| = "
          f"{unfreeze_delta:.3e} (non-zero: the backbone really trains)."]
    md_path = results_dir / "keras-seed.md"
    atomic.write_text(md_path, "\n".join(md) + "\n")
    return [jsonl, csv_path, md_path]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mobilenet_v2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    add_results_argument(p)


def run(args: argparse.Namespace) -> int:

    import tempfile

    from converters.onnx_export import export_onnx
    from zoo.build import build_model
    from zoo.data import shared_data_dir
    from zoo.env import environment
    from zoo.meta import input_shape, published_meta
    from zoo.registry import get_entry

    entry = get_entry(args.model)
    folder = shared_data_dir() / "cats-vs-dogs"
    prep = published_meta(entry).preprocessing
    data = (load_split(folder / "train", prep), load_split(folder / "test", prep))
    common = dict(model=args.model, dataset="cats-vs-dogs", n_train=len(data[0][1]),
                  n_test=len(data[1][1]), epochs=args.epochs, batch_size=args.batch_size,
                  learning_rate=args.lr)
    results, delta = [], float("nan")
    for weights in ("imagenet", "random"):
        torch_model, source = build_model(entry, weights=weights)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(torch_model, input_shape=input_shape(entry),
                                    path=Path(tmp) / "m.onnx")
            acc, fit_s, (model, base) = keras_run(onnx_path, entry, data, epochs=args.epochs,
                                                  batch=args.batch_size, lr=args.lr)
        results.append(SeedResult("keras", weights=source.label, test_accuracy=acc,
                                  fit_s=round(fit_s, 1), **common))
        print(results[-1], flush=True)
        if weights == "imagenet":
            delta = unfreeze_moves_weights(model, base, data)
            acc, fit_s = torch_run(torch_model, entry, data, epochs=args.epochs,
                                   batch=args.batch_size, lr=args.lr)
            results.append(SeedResult("pytorch", weights=source.label, test_accuracy=acc,
                                      fit_s=round(fit_s, 1), **common))
            print(results[-1], flush=True)
    env = environment(threads=None, weights="imagenet and random (per row)", with_gpu=False)
    for path in write_results(results, delta, env, results_dir(args)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from bench.cli import BENCH_COMMANDS, DESCRIPTION
    from zoo.cli import run_cli

    return run_cli("python -m bench", DESCRIPTION, BENCH_COMMANDS,
                   ["keras-seed", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    from zoo.exits import exit_process

    exit_process(main())
