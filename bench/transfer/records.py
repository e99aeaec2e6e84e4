"""Raw transfer results: JSON lines, each run an ``env`` line then its ``record`` lines."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from zoo.jsonrecord import known_fields

CSV_COLUMNS = ("model", "weights", "weights_label", "dataset", "protocol", "n_train", "n_test",
               "num_classes", "resolution", "resize_mode", "accuracy", "extract_s", "fit_s",
               "features_s", "cache_hit", "best_c", "freeze", "trainable_params", "optimizer",
               "epochs", "lr", "backbone_lr", "train_loss", "dataset_train_size",
               "dataset_test_size", "dataset_source", "grayscale", "skipped_images",
               "device", "threads", "date", "node")


@dataclass(frozen=True)
class TransferRecord:
    """One accuracy measurement. Timings are wall seconds on ``device``."""

    model: str
    weights: str  # "imagenet" | "random" | "file"
    weights_label: str
    weights_spec: str
    dataset: str
    dataset_source: str
    classes: tuple[str, ...]
    grayscale: float  # share of the dataset's images stored grayscale (older records: 0 or 1)
    protocol: str  # "linear" | "finetune"
    n_train: int
    n_test: int
    subset_seed: int | None
    resolution: int
    resize_mode: str
    accuracy: float
    extract_s: float | None  # feature extraction, as measured when it ran (linear)
    fit_s: float  # logistic regression incl. C search, or training (finetune)
    features_s: float | None  # this run's time to get features: extraction or cache read
    cache_hit: bool | None
    device: str
    threads: int
    date: str
    run_id: str
    best_c: float | None = None
    c_grid: tuple[float, ...] = ()
    val_accuracy: tuple[float, ...] = ()
    converged: bool | None = None
    freeze: str | None = None
    stages_frozen: int | None = None
    stages_total: int | None = None
    trainable_params: int | None = None
    frozen_params: int | None = None
    optimizer: str | None = None
    epochs: int | None = None
    lr: float | None = None
    backbone_lr: float | None = None
    train_loss: float | None = None
    eval_s: float | None = None
    dataset_train_size: int | None = None  # before subsetting
    dataset_test_size: int | None = None
    skipped_images: int = 0  # unreadable files left out of the dataset (train and test)
    skipped_paths: tuple[str, ...] = ()  # the first few of them
    node: str = ""  # the host that measured it (zoo.executors.NodeInfo.name)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def grayscale_text(self) -> str:
        """``no`` | ``yes`` | ``mixed (33%)``: the grayscale share for tables."""
        g = float(self.grayscale)
        return "no" if g == 0 else "yes" if g == 1 else f"mixed ({g:.0%})"

    def row(self) -> dict[str, Any]:
        """The flat CSV row."""
        data = {**asdict(self), "num_classes": self.num_classes}
        return {c: data[c] for c in CSV_COLUMNS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TransferRecord":
        kw = known_fields(cls, data)
        for k in ("classes", "c_grid", "val_accuracy", "skipped_paths"):
            kw[k] = tuple(kw.get(k, ()))
        kw["grayscale"] = float(kw.get("grayscale", 0.0))  # older records hold a bool
        return cls(**kw)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def append_env(path: Path, run_id: str, env: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps({"type": "env", "run_id": run_id, "env": env}) + "\n")


def append_record(path: Path, record: TransferRecord) -> None:
    """One line per result, flushed at once, so a crash loses only the unfinished one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps({"type": "record", **asdict(record)}) + "\n")


def append_missing(path: Path, records: list[TransferRecord],
                   env: tuple[str, dict[str, Any]] | None = None) -> int:
    """Append the records the file does not hold yet (a resumed run's records from the
    done-store are there already, unless the run that measured them was killed before
    writing them); how many were appended. ``env`` (run id, environment): its line goes
    first, only when there is a record to follow it, so an interrupted run that measured
    nothing leaves the file as it was."""
    envs, held = read_jsonl(path)
    seen = {json.dumps(asdict(r), sort_keys=True) for r in held}
    new = [r for r in records if json.dumps(asdict(r), sort_keys=True) not in seen]
    if new and env is not None and env[0] not in envs:
        append_env(path, *env)
    for r in new:
        append_record(path, r)
    return len(new)


def read_jsonl(path: Path) -> tuple[dict[str, dict[str, Any]], list[TransferRecord]]:
    """(environment by run id, records in file order)."""
    envs: dict[str, dict[str, Any]] = {}
    records: list[TransferRecord] = []
    for line in _lines(path):
        data = json.loads(line)
        if data.get("type") == "env":
            envs[data["run_id"]] = data["env"]
        elif data.get("type") == "record":
            records.append(TransferRecord.from_json(data))
    return envs, records


def _lines(path: Path) -> Iterator[str]:
    if not path.is_file():
        return
    with path.open() as fh:
        yield from (line for line in fh if line.strip())


def config_key(r: TransferRecord) -> tuple:
    """What makes two records the same measurement (a rerun replaces the older one)."""
    return (r.model, r.weights_spec, r.dataset, r.protocol, r.n_train, r.n_test, r.resolution,
            r.resize_mode, r.freeze, r.optimizer, r.epochs, r.lr, r.backbone_lr)


def latest(records: list[TransferRecord]) -> list[TransferRecord]:
    """The newest record of each configuration, in first-seen order."""
    by_key: dict[tuple, TransferRecord] = {}
    for r in records:
        by_key[config_key(r)] = r
    return list(by_key.values())
