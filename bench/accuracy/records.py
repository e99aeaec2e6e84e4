"""One typed record per (model, artifact) on one photo set; JSON lines are the raw results,
tables are views of them."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.accuracy.metrics import Scores
from zoo import atomic
from zoo.jsonrecord import finite_or_null, known_fields

REFERENCE = "pytorch"  # the row every other row is compared with: PyTorch eager, fp32


@dataclass(frozen=True)
class AccuracyRecord:
    model: str
    weights: str  # the weights' label ("imagenet (...)", "random weights (seed 0)")
    labelled: bool  # real weights: top-1/top-5 mean something (random: agreement only)
    format: str  # "pytorch" or a manifest format (onnx, tflite_fp16, onnx_int8, ...)
    precision: str
    photos: str  # the photo set's name (imagenet-sample)
    n: int = 0
    top1: float | None = None
    top1_lo: float | None = None
    top1_hi: float | None = None
    top5: float | None = None
    top5_lo: float | None = None
    top5_hi: float | None = None
    relative_top1: float | None = None  # top1 / PyTorch fp32 top1 (MLPerf's "99% of fp32")
    agreement: float | None = None  # top-1 equal to PyTorch fp32's
    agreement_lo: float | None = None
    agreement_hi: float | None = None
    changed: int | None = None  # photos whose top-1 differs from PyTorch fp32's
    mean_logit_err: float | None = None
    max_logit_err: float | None = None
    quantization: str = ""  # how an int8 artifact was calibrated (Quantization.label)
    seconds: float | None = None  # wall time of this artifact's pass over the photos
    error: str = ""
    date: str = ""
    node: str = ""  # the host that measured it (zoo.executors.NodeInfo.name)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.photos, self.model, self.format)

    def to_json(self) -> dict[str, Any]:
        return finite_or_null(asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AccuracyRecord":
        return cls(**known_fields(cls, data))


def from_scores(base: AccuracyRecord, s: Scores, ref_top1: float | None) -> AccuracyRecord:
    """``base`` (model, format, ...) filled with ``s``."""
    values: dict[str, Any] = {"n": s.n, "agreement": s.agreement.value,
                              "changed": s.n - s.agreement.hits,
                              "mean_logit_err": s.mean_logit_err,
                              "max_logit_err": s.max_logit_err}
    values["agreement_lo"], values["agreement_hi"] = s.agreement.interval
    if base.labelled and s.top1 is not None and s.top5 is not None:
        values.update(top1=s.top1.value, top5=s.top5.value)
        values["top1_lo"], values["top1_hi"] = s.top1.interval
        values["top5_lo"], values["top5_hi"] = s.top5.interval
        if ref_top1:
            values["relative_top1"] = s.top1.value / ref_top1
    return AccuracyRecord(**{**asdict(base), **values})


def read_jsonl(path: Path) -> tuple[dict[str, Any], list[AccuracyRecord]]:
    """(the newest environment header, records) of a raw file; empty when it is absent."""
    env: dict[str, Any] = {}
    records: list[AccuracyRecord] = []
    if not path.is_file():
        return env, records
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        data = json.loads(line)
        if data.get("type") == "environment":
            env = data["environment"]
        elif data.get("type") == "accuracy":
            records.append(AccuracyRecord.from_json(data))
    return env, records


def merge(old: Iterable[AccuracyRecord], new: Iterable[AccuracyRecord]) -> list[AccuracyRecord]:
    """``old`` with every (photos, model, format) that ``new`` measured replaced by its
    newer record, in first-seen order."""
    out: dict[tuple[str, str, str], AccuracyRecord] = {}
    for r in [*old, *new]:
        out[r.key] = r
    return list(out.values())


def write_jsonl(path: Path, env: Mapping[str, Any], records: Iterable[AccuracyRecord]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"type": "environment", "environment": env}, default=str)]
    lines += [json.dumps({"type": "accuracy", **r.to_json()}) for r in records]
    return atomic.write_text(path, "\n".join(lines) + "\n")
