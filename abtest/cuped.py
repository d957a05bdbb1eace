"""CUPED (Deng, Xu, Kohavi & Walker 2013): adjust the outcome with its pre-period value.

    Y_adj = Y - θ (X - x̄_pooled),   θ = Cov(Y, X) / Var(X) on control and treatment pooled.

One θ for both arms keeps the adjusted difference unbiased and makes the adjustment cancel out of
the absolute effect's centring. The outcome and the covariate may each be a ratio (then CUPED runs on
the linearised metric, as tea-tasting and Deng et al. 2018 do); θ is then computed on the pooled
sample's linearisations. With several covariates θ is the vector of pooled regression slopes.

The variance shrinks by ρ² (the squared correlation of Y and X); ``variance_reduction`` reports
what was achieved. The relative lift under CUPED, with its full-delta variance, is in compare.py.
"""
from __future__ import annotations

import numpy as np

from abtest.stats import Moments


def slopes(cov: np.ndarray, grad_outcome: np.ndarray, jac_covariates: np.ndarray) -> np.ndarray:
    """Regression slopes of the linearised outcome on the linearised covariates, [..., p].

    ``cov`` is the [..., k, k] covariance of the raw columns, ``grad_outcome`` [..., k] and
    ``jac_covariates`` [..., p, k] the linearisations. A covariate with zero variance gets slope 0.
    """
    s_gg = np.einsum("...pi,...ij,...qj->...pq", jac_covariates, cov, jac_covariates)
    s_gf = np.einsum("...pi,...ij,...j->...p", jac_covariates, cov, grad_outcome)
    if s_gg.shape[-1] == 1:
        var = s_gg[..., 0, 0]
        ok = np.isfinite(var) & (var > 0)
        return np.where(ok, s_gf[..., 0] / np.where(ok, var, 1.0), 0.0)[..., None]
    s_gg = np.nan_to_num(s_gg)
    return np.einsum("...pq,...q->...p", np.linalg.pinv(s_gg), np.nan_to_num(s_gf))


def pooled_theta(total: Moments, grad_outcome: np.ndarray, jac_covariates: np.ndarray) -> np.ndarray:
    """θ of CUPED: slopes on control and treatment pooled (``total`` = control + treatment)."""
    return slopes(total.cov, grad_outcome, jac_covariates)


def variance_reduction(var_adjusted, var_unadjusted):
    """Share of the estimate's variance that the adjustment removed (≈ ρ² for CUPED)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - np.asarray(var_adjusted) / np.asarray(var_unadjusted)
