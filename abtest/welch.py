"""Welch's unequal-variance t test and interval, from each arm's share of the estimate's variance.

Every comparison in the engine (plain means, proportions, ratio metrics, CUPED, regression
adjustment; absolute effects and log ratios) ends here: an estimate whose variance is the sum of one
term per arm, ``var_c + var_t`` (each already divided by the arm's n), with the Welch-Satterthwaite
degrees of freedom. All arguments broadcast, so a batch of replications runs in one call.

>>> r = welch(1.0, 0.04, 100, 0.05, 120, alpha=0.05)
>>> [round(float(x), 6) for x in (r.se, r.df, r.p_value)]
[0.3, 217.917561, 0.001008]
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats


class Interval(NamedTuple):
    """A two-sided test of ``estimate == 0`` and its (1 - alpha) confidence interval."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    statistic: np.ndarray
    p_value: np.ndarray


def welch_df(var_c, n_c, var_t, n_t):
    """Welch-Satterthwaite degrees of freedom; ``var_*`` are the arms' variance shares (s^2 / n)."""
    var_c, var_t = np.asarray(var_c, dtype=float), np.asarray(var_t, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (var_c + var_t) ** 2 / (var_c**2 / (np.asarray(n_c) - 1.0) + var_t**2 / (np.asarray(n_t) - 1.0))


def welch(estimate, var_c, n_c, var_t, n_t, alpha: float = 0.05) -> Interval:
    """Welch t test of ``estimate`` whose variance is ``var_c + var_t``; CI = estimate ± t·se."""
    estimate = np.asarray(estimate, dtype=float)
    se = np.sqrt(np.asarray(var_c, dtype=float) + np.asarray(var_t, dtype=float))
    df = welch_df(var_c, n_c, var_t, n_t)
    q = stats.t.ppf(1 - alpha / 2, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = estimate / se
    p = 2 * stats.t.sf(np.abs(statistic), df)
    return Interval(estimate, se, df, estimate - q * se, estimate + q * se, statistic, p)


def welch_means(mean_c, var_c, n_c, mean_t, var_t, n_t, alpha: float = 0.05) -> Interval:
    """Welch t test of mean_t - mean_c from the arms' means, sample variances (ddof 1) and sizes.

    Equals ``scipy.stats.ttest_ind(t, c, equal_var=False)`` and its ``confidence_interval``.
    """
    n_c, n_t = np.asarray(n_c, dtype=float), np.asarray(n_t, dtype=float)
    return welch(np.asarray(mean_t) - np.asarray(mean_c), np.asarray(var_c) / n_c, n_c,
                 np.asarray(var_t) / n_t, n_t, alpha)


def log_ratio_interval(log_ratio, var_c, n_c, var_t, n_t, alpha: float = 0.05) -> Interval:
    """A Welch interval on log(m_T / m_C) mapped back to a relative lift: exp(bound) - 1.

    ``estimate`` is the relative lift m_T/m_C - 1; ``se``, ``df``, ``statistic`` and ``p_value`` are
    on the log scale (the p-value tests log ratio 0, i.e. relative lift 0).
    """
    r = welch(log_ratio, var_c, n_c, var_t, n_t, alpha)
    with np.errstate(over="ignore", invalid="ignore"):
        return Interval(np.expm1(r.estimate), r.se, r.df, np.expm1(r.ci_low), np.expm1(r.ci_high), r.statistic,
                        r.p_value)
