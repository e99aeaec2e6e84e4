"""One measurement: (model, weights, dataset, protocol) -> TransferRecord."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.transfer.cache import FeatureKey, cached_features
from bench.transfer.features import TransformSpec, extract_features, transform_spec
from bench.transfer.finetune import FinetuneConfig, finetune
from bench.transfer.linear import C_GRID, linear_probe
from bench.transfer.records import TransferRecord
from zoo.entry import ModelEntry
from zoo.meta import published_meta

if TYPE_CHECKING:
    import torch

    from bench.transfer.cache import CachedFeatures
    from bench.transfer.datasets import Split, TransferData
    from zoo.weights import WeightsSource


@dataclass(frozen=True)
class RunOptions:
    cache_dir: Path
    n_train: int | None = None
    n_test: int | None = None
    subset_seed: int = 0
    resolution: int | None = None
    resize_mode: str | None = None  # None: the dataset's default
    batch_size: int = 64
    workers: int = 0
    device: str = "cpu"
    threads: int = 2
    c_grid: tuple[float, ...] = C_GRID
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run_id: str = ""


def _splits(data: "TransferData", opts: RunOptions) -> tuple["Split", "Split"]:
    return (data.train.subset(opts.n_train, opts.subset_seed),
            data.test.subset(opts.n_test, opts.subset_seed))


def _transform(entry: ModelEntry, data: "TransferData", opts: RunOptions) -> TransformSpec:
    return transform_spec(published_meta(entry).preprocessing, resolution=opts.resolution,
                          mode=opts.resize_mode or data.resize_mode)


def _base(entry: ModelEntry, source: "WeightsSource", data: "TransferData", train: "Split",
          test: "Split", t: TransformSpec, opts: RunOptions) -> dict:
    """The record fields every protocol shares."""
    return dict(model=entry.name, weights=source.kind, weights_label=source.label,
                weights_spec=source.spec, dataset=data.name, dataset_source=data.source,
                classes=tuple(data.classes), grayscale=train.grayscale, n_train=len(train),
                n_test=len(test), dataset_train_size=len(data.train),
                dataset_test_size=len(data.test), subset_seed=train.subset_seed if train.subset_seed is not None
                else test.subset_seed, resolution=t.resolution, resize_mode=t.mode,
                device=opts.device, threads=opts.threads, run_id=opts.run_id,
                date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def split_features(model: "torch.nn.Module", entry: ModelEntry, source: "WeightsSource",
                   split: "Split", t: TransformSpec, opts: RunOptions) -> "CachedFeatures":
    """Features of one split, from the cache when this exact extraction was done before."""
    key = FeatureKey(entry.name, entry.feature_layer, source.spec, source.label, split.dataset,
                     split.source, split.split, len(split), split.subset_seed, t.key)

    def extract():
        feats = extract_features(model, entry, split, t, batch_size=opts.batch_size,
                                 workers=opts.workers, device=opts.device,
                                 label=f"{entry.name} {source.kind} {split.dataset}/{split.split}")
        return feats, split.labels

    return cached_features(key, opts.cache_dir, extract)


def run_linear(model: "torch.nn.Module", entry: ModelEntry, source: "WeightsSource",
               data: "TransferData", opts: RunOptions) -> TransferRecord:
    train, test = _splits(data, opts)
    t = _transform(entry, data, opts)
    ftr = split_features(model, entry, source, train, t, opts)
    fte = split_features(model, entry, source, test, t, opts)
    res = linear_probe(ftr.features, ftr.labels, fte.features, fte.labels, grid=opts.c_grid,
                       seed=opts.subset_seed)
    return TransferRecord(**_base(entry, source, data, train, test, t, opts), protocol="linear",
                          accuracy=res.accuracy, extract_s=ftr.extract_s + fte.extract_s,
                          fit_s=res.fit_s, features_s=ftr.load_s + fte.load_s,
                          cache_hit=ftr.hit and fte.hit, best_c=res.best_c, c_grid=res.c_grid,
                          val_accuracy=res.val_accuracy, converged=res.converged)


def run_finetune(model: "torch.nn.Module", entry: ModelEntry, source: "WeightsSource",
                 data: "TransferData", opts: RunOptions) -> TransferRecord:
    """Fine-tunes ``model`` in place: pass a freshly built one."""
    train, test = _splits(data, opts)
    t = _transform(entry, data, opts)
    cfg = opts.finetune
    res = finetune(model, entry, train, test, t, cfg, device=opts.device, workers=opts.workers,
                   eval_batch_size=opts.batch_size)
    plan = res.plan
    return TransferRecord(**_base(entry, source, data, train, test, t, opts),
                          protocol="finetune", accuracy=res.accuracy, extract_s=None,
                          fit_s=res.fit_s, features_s=None, cache_hit=None, freeze=cfg.freeze,
                          stages_frozen=plan.frozen_stages, stages_total=len(plan.stages),
                          trainable_params=plan.trainable_params,
                          frozen_params=plan.frozen_params, optimizer=cfg.optimizer,
                          epochs=cfg.epochs, lr=res.lr, backbone_lr=res.backbone_lr,
                          train_loss=res.train_loss, eval_s=res.eval_s)


def summary(r: TransferRecord) -> str:
    """One console line per measurement."""
    head = (f"{r.model} [{r.weights_label}] {r.dataset} {r.protocol}: accuracy {r.accuracy:.4f} "
            f"(chance {1 / r.num_classes:.2f}; n_train {r.n_train}, n_test {r.n_test}, "
            f"{r.resolution} px {r.resize_mode})")
    if r.protocol == "linear":
        how = "cache hit" if r.cache_hit else "extracted"
        return (f"{head}; features {r.features_s:.2f} s ({how}; extraction took "
                f"{r.extract_s:.1f} s); fit {r.fit_s:.1f} s, C={r.best_c:g}")
    return (f"{head}; freeze {r.freeze} ({r.stages_frozen}/{r.stages_total} stages, "
            f"{r.trainable_params} trainable params); train {r.fit_s:.1f} s, "
            f"eval {r.eval_s:.1f} s, last-epoch loss {r.train_loss:.3f}")
