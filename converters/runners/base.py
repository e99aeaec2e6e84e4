"""The runner protocol shared by parity and latency (after Polygraphy's BaseRunner).

A runner takes canonical inputs (NCHW float32, keyed by the ONNX input name)
and returns named outputs. ``prepare`` converts a feed to the runtime's own
layout once, so latency loops time ``run_prepared`` alone.
"""
from __future__ import annotations

import abc
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from zoo.env import env_threads

Feed = Mapping[str, np.ndarray]
Outputs = "OrderedDict[str, np.ndarray]"
# canonical NCHW -> the NHWC layout of TF, TFLite and Keras (axis j of the result is axis
# NCHW_TO_NHWC[j] of the input), as manifests and tensor maps record it
NCHW_TO_NHWC = (0, 2, 3, 1)


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """An NCHW array in NHWC layout, contiguous (what TF and TFLite copy to anyway)."""
    return np.ascontiguousarray(x.transpose(NCHW_TO_NHWC))


@dataclass(frozen=True)
class RunnerSpec:
    """What a runner needs to know about an artifact, read from the manifest."""

    format: str
    path: str
    input_names: tuple[str, ...] = ("input",)
    output_names: tuple[str, ...] = ("logits",)
    input_permutation: tuple[int, ...] | None = None  # canonical NCHW -> artifact layout
    threads: int | None = None


class BaseRunner(abc.ABC):
    """Context manager: ``with runner: runner.infer(feed)``."""

    def __init__(self, spec: RunnerSpec) -> None:
        self.spec = spec
        self.is_active = False

    @property
    def name(self) -> str:
        return self.spec.format

    @property
    def threads(self) -> int | None:
        """The spec's threads, else ``$MODELZOO_THREADS`` (an executor sharing the node's
        CPUs among tasks), else None: the runtime's own default."""
        return self.spec.threads or env_threads()

    def __enter__(self) -> "BaseRunner":
        self.activate()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    def activate(self) -> None:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def prepare(self, feed: Feed) -> dict[str, np.ndarray]:
        perm = self.spec.input_permutation
        return {k: np.ascontiguousarray(v.transpose(perm) if perm and v.ndim == len(perm) else v)
                for k, v in feed.items()}

    def infer(self, feed: Feed) -> "OrderedDict[str, np.ndarray]":
        if not self.is_active:
            raise RuntimeError(f"{self.name} runner used before activate()")
        return self.run_prepared(self.prepare(feed))

    def named(self, arrays: list[np.ndarray]) -> "OrderedDict[str, np.ndarray]":
        return OrderedDict(zip(self.spec.output_names, (np.asarray(a) for a in arrays)))

    @abc.abstractmethod
    def activate_impl(self) -> None: ...

    def deactivate_impl(self) -> None:
        return None

    @abc.abstractmethod
    def run_prepared(self, feed: dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]": ...
