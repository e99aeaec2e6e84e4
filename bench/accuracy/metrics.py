"""Accuracy statistics: top-k on labels, Wilson intervals, agreement with a reference."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (stays inside [0, 1], honest at
    k = 0 or n, unlike the normal approximation)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the bounds hold p itself (at k = n the float upper bound is 0.9999999999999998)
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per photo: is the label among the ``k`` highest logits?"""
    top = np.argpartition(-logits, kth=min(k, logits.shape[1]) - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


@dataclass(frozen=True)
class Proportion:
    hits: int
    n: int

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.n)


@dataclass(frozen=True)
class Scores:
    """One artifact's numbers on one photo set. ``top1``/``top5`` are None without labels
    that mean anything (random weights)."""

    n: int
    top1: Proportion | None
    top5: Proportion | None
    agreement: Proportion  # top-1 equal to the reference's
    mean_logit_err: float
    max_logit_err: float


def score(logits: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> Scores:
    n = len(ref)
    agree = int((logits.argmax(1) == ref.argmax(1)).sum())
    err = np.abs(logits.astype(np.float64) - ref.astype(np.float64))
    top1 = top5 = None
    if labels is not None:
        top1 = Proportion(int(topk_hits(logits, labels, 1).sum()), n)
        top5 = Proportion(int(topk_hits(logits, labels, 5).sum()), n)
    return Scores(n, top1, top5, Proportion(agree, n), float(err.mean()), float(err.max()))
