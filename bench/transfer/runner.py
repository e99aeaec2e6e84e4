"""One measurement: (model, weights, dataset, protocol) -> TransferRecord."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.transfer.cache import FeatureKey, cached_features, code_version, weights_digest
from bench.transfer.features import TransformSpec, extract_features, transform_spec
from bench.transfer.finetune import FinetuneConfig, finetune
from bench.transfer.linear import C_GRID, ProbeDataError, check_train_labels, linear_probe
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


SKIPPED_SHOWN = 5  # unreadable files named in records and messages; the count is complete


def _splits(data: "TransferData", opts: RunOptions, *, held_out: bool
            ) -> tuple["Split", "Split"]:
    """The (subset) splits, checked before any image is read: one-line ``ProbeDataError``."""
    train = data.train.subset(opts.n_train, opts.subset_seed)
    test = data.test.subset(opts.n_test, opts.subset_seed)
    where = f"{data.name}: "
    try:
        check_train_labels(train.labels, data.classes, held_out=held_out)
    except ProbeDataError as exc:
        raise ProbeDataError(where + str(exc)) from None
    if len(test) == 0:
        raise ProbeDataError(where + "test has no readable images")
    return train, test


def check_data(data: "TransferData", opts: RunOptions, *, protocol: str) -> None:
    """Raise a one-line ``ProbeDataError`` when ``protocol`` cannot run on these splits."""
    _splits(data, opts, held_out=protocol == "linear")


def skipped_text(data: "TransferData") -> str:
    """``N unreadable image(s) skipped: path (reason), ...`` or "" when none were."""
    bad = data.skipped
    if not bad:
        return ""
    more = f", ... ({len(bad) - SKIPPED_SHOWN} more)" if len(bad) > SKIPPED_SHOWN else ""
    return (f"{len(bad)} unreadable image(s) skipped: "
            f"{', '.join(str(u) for u in bad[:SKIPPED_SHOWN])}{more}")


def _transform(entry: ModelEntry, data: "TransferData", opts: RunOptions) -> TransformSpec:
    return transform_spec(published_meta(entry).preprocessing, resolution=opts.resolution,
                          mode=opts.resize_mode or data.resize_mode)


def _base(entry: ModelEntry, source: "WeightsSource", data: "TransferData", train: "Split",
          test: "Split", t: TransformSpec, opts: RunOptions) -> dict:
    """The record fields every protocol shares."""
    return dict(model=entry.name, weights=source.kind, weights_label=source.label,
                weights_spec=source.spec, dataset=data.name, dataset_source=data.source,
                classes=tuple(data.classes), grayscale=data.grayscale,
                skipped_images=len(data.skipped),
                skipped_paths=tuple(u.path for u in data.skipped[:SKIPPED_SHOWN]),
                n_train=len(train), n_test=len(test), dataset_train_size=len(data.train),
                dataset_test_size=len(data.test),
                subset_seed=train.subset_seed if train.subset_seed is not None
                else test.subset_seed, resolution=t.resolution, resize_mode=t.mode,
                device=opts.device, threads=opts.threads, run_id=opts.run_id,
                date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def split_features(model: "torch.nn.Module", entry: ModelEntry, source: "WeightsSource",
                   split: "Split", t: TransformSpec, opts: RunOptions, *,
                   weights: str | None = None) -> "CachedFeatures":
    """Features of one split, from the cache when this exact extraction was done before.

    ``weights``: ``weights_digest(model)`` when the caller has it already.
    """
    key = FeatureKey(entry.name, entry.feature_layer, source.spec, source.label,
                     weights or weights_digest(model), split.dataset, split.source, split.split,
                     len(split), split.subset_seed, split.fingerprint, t.key, code_version())

    def extract():
        feats = extract_features(model, entry, split, t, batch_size=opts.batch_size,
                                 workers=opts.workers, device=opts.device,
                                 label=f"{entry.name} {source.kind} {split.dataset}/{split.split}")
        return feats, split.labels

    return cached_features(key, opts.cache_dir, extract)


def run_linear(model: "torch.nn.Module", entry: ModelEntry, source: "WeightsSource",
               data: "TransferData", opts: RunOptions) -> TransferRecord:
    train, test = _splits(data, opts, held_out=True)
    t = _transform(entry, data, opts)
    digest = weights_digest(model)
    ftr = split_features(model, entry, source, train, t, opts, weights=digest)
    fte = split_features(model, entry, source, test, t, opts, weights=digest)
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
    train, test = _splits(data, opts, held_out=False)
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
    if r.skipped_images:
        head += f"; {r.skipped_images} unreadable image(s) skipped"
    if r.protocol == "linear":
        how = "cache hit" if r.cache_hit else "extracted"
        return (f"{head}; features {r.features_s:.2f} s ({how}; extraction took "
                f"{r.extract_s:.1f} s); fit {r.fit_s:.1f} s, C={r.best_c:g}")
    return (f"{head}; freeze {r.freeze} ({r.stages_frozen}/{r.stages_total} stages, "
            f"{r.trainable_params} trainable params); train {r.fit_s:.1f} s, "
            f"eval {r.eval_s:.1f} s, last-epoch loss {r.train_loss:.3f}")
