"""Protocol 1: L2-regularised multinomial logistic regression on frozen features.

Features are standardised with the training statistics; the inverse
regularisation strength C is chosen on a stratified held-out 20% of train over a
log grid, then the model is refit on all of train and scored on test.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

# Standardised 500-4000-d features on 10^3-10^4 images want strong regularisation:
# a first grid starting at 1e-4 chose its lowest value.
C_GRID: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


class ProbeDataError(ValueError):
    """Labels a probe cannot be fitted on (one class, too few images); the message is one line."""


def check_train_labels(y: np.ndarray, classes: tuple[str, ...], *, held_out: bool = True,
                       val_fraction: float = 0.2) -> None:
    """Fail in one line, before any extraction, on train labels no probe can be fitted on.

    ``held_out``: also check that the ``val_fraction`` split that chooses C can
    be made the way :func:`choose_c` makes it.
    """
    present = np.unique(y)
    if len(present) < 2:
        names = ", ".join(classes[int(c)] for c in present) or "none"
        raise ProbeDataError(f"train has {len(y)} image(s) of {len(present)} class(es) ({names});"
                             " a classifier needs at least 2 classes")
    if not held_out:
        return
    n_val = math.ceil(len(y) * val_fraction)  # how train_test_split rounds
    k = len(present)
    # Mirrors choose_c: stratified when every class has 2 images, so that each
    # side holds every class; otherwise a random split that must leave 2 to fit.
    stratified = np.bincount(y)[present].min() >= 2
    need_val, need_fit = (k, k) if stratified else (1, 2)
    if n_val < need_val or len(y) - n_val < need_fit:
        raise ProbeDataError(
            f"train has {len(y)} image(s) of {k} classes: too few for the held-out "
            f"{val_fraction:.0%} that chooses C ({n_val} held out, {len(y) - n_val} to fit; "
            f"they need at least {need_val} and {need_fit})")


@dataclass(frozen=True)
class LinearProbeResult:
    accuracy: float
    best_c: float
    c_grid: tuple[float, ...]
    val_accuracy: tuple[float, ...]  # one per C in c_grid
    fit_s: float
    converged: bool


def _classifier(c: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression

    # lbfgs fits the multinomial (softmax) loss with an L2 penalty; warm starts
    # carry each fit into the next C of the grid.
    return LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, warm_start=True)


def _fit(clf, x: np.ndarray, y: np.ndarray) -> bool:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x, y)
    return not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def choose_c(x: np.ndarray, y: np.ndarray, *, grid: tuple[float, ...] = C_GRID,
             val_fraction: float = 0.2, seed: int = 0, max_iter: int = 1000
             ) -> tuple[float, tuple[float, ...]]:
    """The C of ``grid`` with the best accuracy on a held-out part of (x, y)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=val_fraction, random_state=seed,
                                                  stratify=stratify)
    if len(np.unique(y_fit)) < 2:  # possible when a class has a single image (unstratified)
        raise ProbeDataError(f"the held-out split left {len(y_fit)} image(s) of one class to fit;"
                             " give every class at least 2 train images")
    scaler = StandardScaler().fit(x_fit)
    x_fit, x_val = scaler.transform(x_fit), scaler.transform(x_val)
    clf = _classifier(grid[0], max_iter)
    scores = []
    for c in sorted(grid):
        clf.set_params(C=c)
        _fit(clf, x_fit, y_fit)
        scores.append(float((clf.predict(x_val) == y_val).mean()))
    by_c = dict(zip(sorted(grid), scores))
    ordered = tuple(by_c[c] for c in grid)
    best = max(grid, key=lambda c: (by_c[c], -c))  # ties: the stronger regularisation
    return best, ordered


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, *, grid: tuple[float, ...] = C_GRID,
                 val_fraction: float = 0.2, seed: int = 0, max_iter: int = 1000
                 ) -> LinearProbeResult:
    """Choose C on held-out train, refit on all train, return the test accuracy."""
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    best, val = choose_c(x_train, y_train, grid=grid, val_fraction=val_fraction, seed=seed,
                         max_iter=max_iter)
    scaler = StandardScaler().fit(x_train)
    clf = _classifier(best, max_iter)
    converged = _fit(clf, scaler.transform(x_train), y_train)
    acc = float((clf.predict(scaler.transform(x_test)) == y_test).mean())
    return LinearProbeResult(acc, best, tuple(grid), val, time.perf_counter() - t0, converged)
