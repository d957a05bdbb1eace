"""Robustness for heavy-tailed metrics: capping (winsorisation) and the Mann–Whitney U test.

Capping thresholds are computed on all arms **pooled**, never per arm (a per-arm cap shrinks the arm
that moved and biases the effect). For sparse metrics (most users have 0) the pooled quantile is
often 0, which would erase the metric; then the quantile of the non-zero values is used instead
and the result says so.

Mann–Whitney comes from sufficient statistics too: the treatment's sum of mid-ranks in the pooled
sample and the tie term Σ(t³ - t) over groups of tied values (DuckDB window functions compute both
at scale); the p-value is the normal approximation with tie and continuity corrections, the same as
``scipy.stats.mannwhitneyu(method="asymptotic")``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats


class Cap(NamedTuple):
    value: float
    on_nonzero: bool  # the pooled quantile was 0, so the quantile of the non-zero values is used


class MannWhitney(NamedTuple):
    u: float  # U statistic of the treatment arm
    z: float
    p_value: float


def choose_cap(q_all: float, q_nonzero: float | None) -> Cap:
    """The pooled quantile, or the non-zero values' quantile where the pooled one is 0."""
    if q_all == 0 and q_nonzero is not None and q_nonzero > 0:
        return Cap(float(q_nonzero), True)
    return Cap(float(q_all), False)


def cap_threshold(pooled_values, q: float) -> Cap:
    """Upper capping threshold at quantile ``q`` of the values of all arms together."""
    v = np.asarray(pooled_values, dtype=float)
    nonzero = v[v != 0]
    return choose_cap(float(np.quantile(v, q)), float(np.quantile(nonzero, q)) if nonzero.size else None)


def rank_sums(control, treatment) -> tuple[float, float]:
    """(treatment's sum of mid-ranks, tie term Σ t³ - t) from unit values (for small data and tests)."""
    pooled = np.concatenate([np.asarray(control, float), np.asarray(treatment, float)])
    ranks = stats.rankdata(pooled)
    _, t = np.unique(pooled, return_counts=True)
    return float(ranks[len(control):].sum()), float(np.sum(t.astype(float) ** 3 - t))


def mann_whitney(rank_sum_treatment: float, n_control: float, n_treatment: float, tie_term: float) -> MannWhitney:
    """Two-sided Mann–Whitney U test (normal approximation, tie- and continuity-corrected)."""
    n1, n2 = float(n_treatment), float(n_control)
    n = n1 + n2
    u1 = rank_sum_treatment - n1 * (n1 + 1) / 2
    u = max(u1, n1 * n2 - u1)
    mu = n1 * n2 / 2
    sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    z = (u - mu - 0.5) / sigma if sigma > 0 else np.nan
    p = float(min(1.0, 2 * stats.norm.sf(z))) if sigma > 0 else np.nan
    return MannWhitney(float(u1), float(z), p)
