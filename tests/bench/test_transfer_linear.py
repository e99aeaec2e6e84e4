"""Linear probe: multinomial L2 logistic regression with C chosen on held-out train."""
from __future__ import annotations

import numpy as np

from bench.transfer.linear import C_GRID, choose_c, linear_probe


def _blobs(n_per_class: int, seed: int, dim: int = 16, classes: int = 4):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 4, size=(classes, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    x = centres[y] + rng.normal(0, 1, size=(len(y), dim))
    return x.astype(np.float32), y


def test_separable_problem_reaches_high_accuracy_with_c_from_the_grid():
    x_tr, y_tr = _blobs(60, seed=0)
    x_te, y_te = _blobs(40, seed=1)
    res = linear_probe(x_tr, y_tr, x_te, y_te)
    assert res.accuracy >= 0.97
    assert res.best_c in C_GRID and res.c_grid == C_GRID
    assert len(res.val_accuracy) == len(C_GRID) and max(res.val_accuracy) >= 0.95
    assert res.fit_s > 0


def test_chosen_c_is_the_best_on_held_out_data_ties_to_stronger_regularisation():
    x, y = _blobs(50, seed=2)
    grid = (1.0, 1e-5, 1e-2)
    best, scores = choose_c(x, y, grid=grid)
    assert len(scores) == 3 and best == max(grid, key=lambda c: (scores[grid.index(c)], -c))
    noisy_x, noisy_y = _blobs(50, seed=2, dim=16)
    noisy_x = noisy_x + np.random.default_rng(5).normal(0, 6, size=noisy_x.shape)
    best, scores = choose_c(noisy_x.astype(np.float32), noisy_y, grid=grid)
    assert scores[grid.index(best)] == max(scores)


def test_random_labels_stay_near_chance():
    x_tr, _ = _blobs(50, seed=3)
    x_te, _ = _blobs(50, seed=4)
    rng = np.random.default_rng(0)
    res = linear_probe(x_tr, rng.integers(0, 4, len(x_tr)), x_te, rng.integers(0, 4, len(x_te)),
                       grid=(1e-3, 1e-1))
    assert res.accuracy < 0.45
