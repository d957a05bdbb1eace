"""One metric, one treatment arm against control: adjusted means, absolute and relative lifts.

A metric is described by a ``Layout`` over the columns of its Moments block: the outcome (a column,
or a ratio of two) and optional covariates (each a column or a ratio). Its arm estimate is

    m_a = f(μ_a) - β_aᵀ (g(μ_a) - g(μ_pooled))

with f the outcome ratio, g the covariate ratios, μ the arm's column means and β the adjustment
coefficients: 0 (none), the pooled θ of CUPED (same in both arms), or Lin's per-arm slopes.

Both the absolute effect m_T - m_C and the log ratio log(m_T / m_C) get their variance from the
delta method over *both* arms' mean vectors with β fixed, including the dependence of the pooled
centre on each arm. For plain means and ratio metrics this is the textbook Welch / Deng et al. 2018
variance; for CUPED's absolute effect the centre cancels (tea-tasting's numbers, exactly); for the
relative lift under CUPED it is the full-delta variance of reference/abtest-stats.md, with gradient
(-1/m_C, k) in (ȳ_C, x̄_C) and (1/m_T, -k) in (ȳ_T, x̄_T), k = θ(n_C/N)/m_T + θ(n_T/N)/m_C.
Intervals are Welch t intervals; the relative one is exp(log ratio ± t·se) - 1.

The p-value tests the absolute effect (the same null hypothesis as relative lift 0).
All inputs may carry leading batch dimensions.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from abtest.cuped import pooled_theta, variance_reduction
from abtest.ratio import ratio_and_gradient
from abtest.regression import lin_slopes
from abtest.stats import Moments
from abtest.welch import Interval, log_ratio_interval, welch

ADJUSTMENTS = ("none", "cuped", "lin")


class Layout(NamedTuple):
    """Where a metric's numbers sit in its Moments block: (numerator, denominator or None) pairs."""

    outcome: tuple[int, int | None]
    covariates: tuple[tuple[int, int | None], ...] = ()


class Comparison(NamedTuple):
    control_mean: np.ndarray  # adjusted arm estimates m_C, m_T (raw when not adjusted)
    treatment_mean: np.ndarray
    control_raw: np.ndarray  # unadjusted f(μ_C), f(μ_T)
    treatment_raw: np.ndarray
    abs: Interval  # m_T - m_C
    rel: Interval  # m_T / m_C - 1 (se, df, p on the log scale)
    coef_control: np.ndarray  # β per arm, [..., p]
    coef_treatment: np.ndarray
    variance_reduction: np.ndarray  # 1 - var(adjusted abs effect) / var(unadjusted)
    n_control: np.ndarray
    n_treatment: np.ndarray


def linearise(mean: np.ndarray, layout: Layout):
    """f, ∇f [..., k], g [..., p], J_g [..., p, k] at the mean vector."""
    f, grad = ratio_and_gradient(mean, *layout.outcome)
    if not layout.covariates:
        return f, grad, np.zeros(mean.shape[:-1] + (0,)), np.zeros(mean.shape[:-1] + (0, mean.shape[-1]))
    parts = [ratio_and_gradient(mean, num, den) for num, den in layout.covariates]
    return f, grad, np.stack([p[0] for p in parts], axis=-1), np.stack([p[1] for p in parts], axis=-2)


def _quad(g: np.ndarray, arm: Moments) -> np.ndarray:
    """gᵀ Σ g / n: the arm's share of the variance of an estimate with gradient g."""
    return np.einsum("...i,...ij,...j->...", g, arm.cov, g) / arm.n


def compare(control: Moments, treatment: Moments, layout: Layout, adjustment: str = "none",
            alpha: float = 0.05) -> Comparison:
    """Compare treatment with control on one metric (see the module docstring)."""
    if adjustment not in ADJUSTMENTS:
        raise ValueError(f"adjustment must be one of {ADJUSTMENTS}, not {adjustment!r}")
    total = control + treatment
    f_c, grad_c, g_c, jac_c = linearise(control.mean, layout)
    f_t, grad_t, g_t, jac_t = linearise(treatment.mean, layout)
    _, grad_tot, g_tot, jac_tot = linearise(total.mean, layout)
    p = g_c.shape[-1]
    if adjustment == "none" or p == 0:
        beta_c = beta_t = np.zeros(g_c.shape)
    elif adjustment == "cuped":
        beta_c = beta_t = pooled_theta(total, grad_tot, jac_tot)
    else:
        beta_c, beta_t = lin_slopes(control, grad_c, jac_c), lin_slopes(treatment, grad_t, jac_t)

    with np.errstate(divide="ignore", invalid="ignore"):
        m_c = f_c - np.einsum("...p,...p->...", beta_c, g_c - g_tot)
        m_t = f_t - np.einsum("...p,...p->...", beta_t, g_t - g_tot)
        own_c = grad_c - np.einsum("...p,...pk->...k", beta_c, jac_c)  # ∂m_a/∂μ_a without the centre
        own_t = grad_t - np.einsum("...p,...pk->...k", beta_t, jac_t)
        centre_c = np.einsum("...p,...pk->...k", beta_c, jac_tot)  # ∂m_a/∂μ_b through the centre, / w_b
        centre_t = np.einsum("...p,...pk->...k", beta_t, jac_tot)
        w_c = (control.n / total.n)[..., None]
        w_t = (treatment.n / total.n)[..., None]

        d_centre = centre_t - centre_c
        abs_ = welch(m_t - m_c, _quad(-own_c + w_c * d_centre, control), control.n,
                     _quad(own_t + w_t * d_centre, treatment), treatment.n, alpha)

        mc, mt = m_c[..., None], m_t[..., None]
        r_centre = centre_t / mt - centre_c / mc
        positive = (m_c > 0) & (m_t > 0)
        log_ratio = np.where(positive, np.log(np.where(positive, m_t / m_c, 1.0)), np.nan)
        rel = log_ratio_interval(log_ratio, _quad(-own_c / mc + w_c * r_centre, control), control.n,
                                 _quad(own_t / mt + w_t * r_centre, treatment), treatment.n, alpha)
        raw_var = _quad(grad_c, control) + _quad(grad_t, treatment)
        reduction = variance_reduction(abs_.se**2, raw_var)
    return Comparison(m_c, m_t, f_c, f_t, abs_, rel, beta_c, beta_t, reduction, control.n, treatment.n)
