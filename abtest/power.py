"""Power and minimum detectable effect of a two-arm test on a mean, CUPED-aware.

    MDE = (z_{1-α/2} + z_power) · σ · sqrt(1 - ρ²) · sqrt(1/n_T + 1/n_C)

σ is the metric's standard deviation per unit and ρ the correlation with its pre-period covariate
(CUPED shrinks the variance by 1 - ρ²). The normal approximation is what
``statsmodels.stats.power.NormalIndPower`` computes with effect size d = MDE / (σ sqrt(1 - ρ²));
``power`` counts both rejection tails, like statsmodels.

The CLI's ``--mde`` is a *relative* lift (0.05 = +5% of ``--mean``); results give both scales.

>>> r = plan(mean=10.0, sd=5.0, n_per_arm=10_000)
>>> round(r.mde_abs, 6), round(r.mde_rel, 6)
(0.198102, 0.01981)
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

from abtest.errors import InputError


class PowerPlan(NamedTuple):
    mean: float
    sd: float
    rho: float
    alpha: float
    power: float
    n_per_arm: float  # units in each arm (equal split)
    n_total: float
    mde_abs: float
    mde_rel: float  # mde_abs / mean
    sd_adjusted: float  # σ sqrt(1 - ρ²)


def _z(alpha: float, power: float) -> float:
    return stats.norm.isf(alpha / 2) + stats.norm.ppf(power)


def mde(sd, n_control, n_treatment, alpha: float = 0.05, power: float = 0.8, rho: float = 0.0):
    """Smallest absolute effect detected with the given power (vectorised)."""
    se = np.asarray(sd) * np.sqrt(1 - np.asarray(rho) ** 2) * np.sqrt(1 / np.asarray(n_control) + 1 / np.asarray(n_treatment))
    return _z(alpha, power) * se


def power_at(effect, sd, n_control, n_treatment, alpha: float = 0.05, rho: float = 0.0):
    """Probability that a two-sided z test at level alpha rejects when the true effect is ``effect``."""
    se = np.asarray(sd) * np.sqrt(1 - np.asarray(rho) ** 2) * np.sqrt(1 / np.asarray(n_control) + 1 / np.asarray(n_treatment))
    z = stats.norm.isf(alpha / 2)
    shift = np.asarray(effect) / se
    return stats.norm.sf(z - shift) + stats.norm.cdf(-z - shift)


def units_per_arm(effect, sd, alpha: float = 0.05, power: float = 0.8, rho: float = 0.0) -> float:
    """Units per arm (equal split, not rounded) to detect the absolute ``effect`` with ``power``."""
    return 2 * (_z(alpha, power) * sd * math.sqrt(1 - rho**2) / effect) ** 2


def plan(mean: float, sd: float, *, rho: float = 0.0, mde_rel: float | None = None,
         n_per_arm: float | None = None, alpha: float = 0.05, power: float = 0.8) -> PowerPlan:
    """Solve for the units per arm (given ``mde_rel``) or for the MDE (given ``n_per_arm``)."""
    if (mde_rel is None) == (n_per_arm is None):
        raise InputError("give exactly one of --mde and --n")
    if not (sd > 0 and math.isfinite(sd)):
        raise InputError(f"--sd must be positive, got {sd}")
    if not (-1 < rho < 1):
        raise InputError(f"--rho must be in (-1, 1), got {rho}")
    if not (0 < alpha < 1) or not (0 < power < 1):
        raise InputError(f"--alpha and --power must be in (0, 1), got {alpha}, {power}")
    if not math.isfinite(mean) or mean == 0:
        raise InputError(f"--mean must be a non-zero number (the MDE is relative to it), got {mean}")
    sd_adj = sd * math.sqrt(1 - rho**2)
    if mde_rel is not None:
        if not (mde_rel > 0 and math.isfinite(mde_rel)):
            raise InputError(f"--mde must be a positive relative lift (0.05 = 5%), got {mde_rel}")
        effect = abs(mean) * mde_rel
        n = math.ceil(units_per_arm(effect, sd, alpha, power, rho))
        return PowerPlan(mean, sd, rho, alpha, power, n, 2 * n, effect, mde_rel, sd_adj)
    if not n_per_arm >= 2:
        raise InputError(f"--n (units per arm) must be at least 2, got {n_per_arm}")
    effect = float(mde(sd, n_per_arm, n_per_arm, alpha, power, rho))
    return PowerPlan(mean, sd, rho, alpha, power, n_per_arm, 2 * n_per_arm, effect, effect / abs(mean), sd_adj)
