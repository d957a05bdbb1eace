"""Sample ratio mismatch: do the unit counts match the split the experiment was designed with?

A mismatch means the assignment or the logging is broken, and no lift from the experiment can be
trusted. The test is a χ² goodness of fit against the *designed* split (not against equal arms),
for any number of arms; with two arms the exact binomial test is the verdict's p-value and the
χ² (with and without Yates' continuity correction) are reported beside it. The default alpha is
0.001: the check runs on every experiment, so false alarms must be rare.

>>> r = srm({"control": 1970, "treatment": 2030})
>>> round(r.p_value, 6), round(r.p_value_chi2, 6), round(r.p_value_yates, 6), r.mismatch
(0.350887, 0.342782, 0.350886, False)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from abtest.errors import InputError

SRM_ALPHA = 0.001


class SRMResult(NamedTuple):
    p_value: float  # exact binomial for two arms, Pearson χ² otherwise
    method: str
    chi2: float
    df: int
    p_value_chi2: float  # Pearson χ², no continuity correction (gbstats' check_srm)
    p_value_yates: float  # χ² with Yates' correction (two arms; equals p_value_chi2 otherwise)
    observed: dict
    expected: dict
    alpha: float
    mismatch: bool


def srm(counts: dict, split: dict | None = None, alpha: float = SRM_ALPHA) -> SRMResult:
    """χ² / exact binomial test of unit counts per variant against the designed split (default equal)."""
    names = list(counts)
    if len(names) < 2:
        raise InputError(f"SRM needs at least two variants, got {names}")
    split = {name: 1.0 for name in names} if split is None else dict(split)
    unknown = sorted(set(split) ^ set(names))
    if unknown:
        raise InputError(f"--split names {sorted(split)} but the data has variants {names}")
    weights = np.array([float(split[name]) for name in names])
    if np.any(~np.isfinite(weights)) or np.any(weights <= 0):
        raise InputError(f"--split weights must be positive, got {split}")
    observed = np.array([counts[name] for name in names], dtype=float)
    total = observed.sum()
    expected = total * weights / weights.sum()
    chi2, p_chi2 = stats.chisquare(observed, expected)
    df = len(names) - 1
    if len(names) == 2:
        yates = float(np.sum((np.maximum(np.abs(observed - expected) - 0.5, 0.0)) ** 2 / expected))
        p_yates = float(stats.chi2.sf(yates, 1))
        p = float(stats.binomtest(int(observed[0]), int(total), weights[0] / weights.sum()).pvalue)
        method = "binomial"
    else:
        p_yates = p = float(p_chi2)
        method = "chi2"
    return SRMResult(p, method, float(chi2), df, float(p_chi2), p_yates,
                     {n: int(o) for n, o in zip(names, observed)},
                     {n: float(e) for n, e in zip(names, expected)}, alpha, bool(p < alpha))
