"""Ratio metrics (CTR = plays / impressions, comment watch time per session): the delta method.

A ratio metric per arm is R = sum(y) / sum(d) = mean(y) / mean(d) over the arm's units (the unit of
randomisation is the user, not the impression). Its variance comes from the linearisation
(Deng, Knoblich & Lu 2018):

    var(R) ≈ (s_y² - 2 R s_yd + R² s_d²) / (n d̄²)

Here a "ratio" is any column of a Moments block over another, or over the constant 1 (``den=None``),
so a plain mean is the special case; ``ratio_and_gradient`` returns the value and the gradient with
respect to the block's mean vector, which is the linearisation every other module uses.

>>> from abtest.stats import Moments
>>> m = Moments.from_columns(np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 4.0]]))
>>> [round(float(x), 6) for x in ratio_estimate(m, 0, 1)]
[0.75, 0.082031]
"""
from __future__ import annotations

import numpy as np

from abtest.stats import Moments


def ratio_and_gradient(mean: np.ndarray, num: int, den: int | None):
    """Value of mean[num] / mean[den] ([...]) and its gradient in the mean vector ([..., k])."""
    mean = np.asarray(mean, dtype=float)
    grad = np.zeros_like(mean)
    if den is None:
        grad[..., num] = 1.0
        return mean[..., num], grad
    with np.errstate(divide="ignore", invalid="ignore"):
        value = mean[..., num] / mean[..., den]
        grad[..., num] = 1.0 / mean[..., den]
        grad[..., den] = -value / mean[..., den]
    return value, grad


def ratio_estimate(arm: Moments, num: int, den: int | None):
    """(R, var(R)) of one arm: the ratio of means and its delta-method variance (already / n)."""
    value, grad = ratio_and_gradient(arm.mean, num, den)
    var = np.einsum("...i,...ij,...j->...", grad, arm.cov, grad)
    return value, var / arm.n
