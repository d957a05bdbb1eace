"""Every number of the public reference vector (reference/abtest-stats.md).

The note prints 4–7 significant digits, so each of our numbers must round to the printed value
(``rounds_to``), and must equal an independent full-precision computation (scipy, statsmodels, or
the formula written out in numpy on the unit rows) to 1e-6 relative or better.
"""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
import scipy.stats
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

from abtest.compare import Layout, compare
from abtest.multiple import adjust
from abtest.report import ReportConfig, build_report
from abtest.srm import srm
from abtest.stats import Moments

REL = 1e-6


def rounds_to(value: float, printed: str) -> bool:
    """``value`` rounded to the printed number of decimals (or significant digits, e-notation) is ``printed``."""
    d = Decimal(printed)
    step = Decimal(1).scaleb(d.as_tuple().exponent)
    return abs(Decimal(repr(float(value))) - d) <= step / 2 * Decimal("1.0000001")


def close(x, y, rel=REL):
    return float(x) == pytest.approx(float(y), rel=rel)


@pytest.fixture(scope="module")
def rows(ref_df):
    t = (ref_df["variant"] == "treatment").to_numpy()
    return ref_df[~t], ref_df[t]


@pytest.fixture(scope="module")
def arms(rows):
    cols = ["metric", "pre", "sessions", "pre_sessions"]
    return Moments.from_columns(rows[0][cols].to_numpy(float)), Moments.from_columns(rows[1][cols].to_numpy(float))


def test_arm_sizes(arms):
    assert arms[0].n == 1970 and arms[1].n == 2030


def test_plain_mean_welch_against_scipy(arms, rows):
    c, t = rows[0].metric.to_numpy(), rows[1].metric.to_numpy()
    r = compare(arms[0].take([0]), arms[1].take([0]), Layout((0, None)))
    ref = scipy.stats.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval()
    assert close(r.abs.estimate, t.mean() - c.mean(), 1e-12)
    assert close(r.abs.ci_low, ci.low, 1e-10) and close(r.abs.ci_high, ci.high, 1e-10)
    assert close(r.abs.p_value, ref.pvalue, 1e-10) and close(r.abs.df, ref.df, 1e-10)
    assert rounds_to(r.abs.estimate, "0.567563") and rounds_to(r.abs.ci_low, "0.155101")
    assert rounds_to(r.abs.ci_high, "0.980024") and rounds_to(r.abs.p_value, "0.007009")


def test_relative_lift_log_scale_delta(arms, rows):
    c, t = rows[0].metric.to_numpy(), rows[1].metric.to_numpy()
    r = compare(arms[0].take([0]), arms[1].take([0]), Layout((0, None)))
    a, b = c.var(ddof=1) / (len(c) * c.mean() ** 2), t.var(ddof=1) / (len(t) * t.mean() ** 2)
    df = (a + b) ** 2 / (a**2 / (len(c) - 1) + b**2 / (len(t) - 1))
    half = scipy.stats.t.ppf(0.975, df) * np.sqrt(a + b)
    log_r = np.log(t.mean() / c.mean())
    assert close(r.rel.estimate, np.expm1(log_r), 1e-12)
    assert close(r.rel.ci_low, np.expm1(log_r - half), 1e-10) and close(r.rel.ci_high, np.expm1(log_r + half), 1e-10)
    assert rounds_to(r.rel.estimate, "0.057923")
    assert rounds_to(r.rel.ci_low, "0.015485") and rounds_to(r.rel.ci_high, "0.102135")


def test_cuped_pooled_theta(arms, rows, ref_df):
    r = compare(arms[0].take([0, 1]), arms[1].take([0, 1]), Layout((0, None), ((1, None),)), "cuped")
    theta = np.cov(ref_df.metric, ref_df.pre)[0, 1] / ref_df.pre.var(ddof=1)
    assert close(r.coef_control[0], theta, 1e-12) and rounds_to(r.coef_control[0], "0.7804636")
    adj = [g.metric - theta * (g.pre - ref_df.pre.mean()) for g in rows]
    ref = scipy.stats.ttest_ind(adj[1], adj[0], equal_var=False)
    ci = ref.confidence_interval()
    assert close(r.abs.estimate, adj[1].mean() - adj[0].mean(), 1e-10)
    assert close(r.abs.ci_low, ci.low, 1e-10) and close(r.abs.ci_high, ci.high, 1e-10)
    assert close(r.abs.p_value, ref.pvalue, 1e-9)
    assert close(r.rel.estimate, adj[1].mean() / adj[0].mean() - 1, 1e-10)
    assert rounds_to(r.abs.estimate, "0.566743") and rounds_to(r.abs.ci_low, "0.326333")
    assert rounds_to(r.abs.ci_high, "0.807153") and rounds_to(r.abs.p_value, "3.924e-06")
    assert rounds_to(r.rel.estimate, "0.057837")
    rho2 = np.corrcoef(ref_df.metric, ref_df.pre)[0, 1] ** 2
    assert float(r.variance_reduction) == pytest.approx(rho2, abs=0.01)


def test_cuped_matches_statsmodels_ols_hc1(arms, ref_df):
    df = ref_df.assign(treat=(ref_df.variant == "treatment").astype(float), pre_centered=ref_df.pre - ref_df.pre.mean())
    fit = smf.ols("metric ~ treat + pre_centered", df).fit(cov_type="HC1")
    lo, hi = fit.conf_int().loc["treat"]
    assert rounds_to(fit.params["treat"], "0.566743")
    assert rounds_to(lo, "0.326375") and rounds_to(hi, "0.807111")  # the note's cross-check
    r = compare(arms[0].take([0, 1]), arms[1].take([0, 1]), Layout((0, None), ((1, None),)), "cuped")
    assert close(r.abs.estimate, fit.params["treat"], REL)  # pooled θ vs the within-arm OLS slope: 1e-8 apart here
    assert close(r.abs.se, fit.bse["treat"], 1e-3)  # Welch on Y_adj vs HC1: the same large-sample variance


def test_ratio_metric_delta_method(arms, rows):
    r = compare(arms[0].take([0, 2]), arms[1].take([0, 2]), Layout((0, 1)))
    parts = []
    for g in rows:
        y, d = g.metric.to_numpy(), g.sessions.to_numpy(float)
        ratio = y.mean() / d.mean()
        var = (y.var(ddof=1) - 2 * ratio * np.cov(y, d)[0, 1] + ratio**2 * d.var(ddof=1)) / (len(y) * d.mean() ** 2)
        parts.append((ratio, var, len(y)))
    (rc, vc, nc), (rt, vt, nt) = parts
    df = (vc + vt) ** 2 / (vc**2 / (nc - 1) + vt**2 / (nt - 1))
    half = scipy.stats.t.ppf(0.975, df) * np.sqrt(vc + vt)
    assert close(r.abs.estimate, rt - rc, 1e-12)
    assert close(r.abs.ci_low, rt - rc - half, 1e-10) and close(r.abs.ci_high, rt - rc + half, 1e-10)
    assert close(r.abs.p_value, 2 * scipy.stats.t.sf(abs(rt - rc) / np.sqrt(vc + vt), df), 1e-10)
    assert rounds_to(r.abs.estimate, "0.152598") and rounds_to(r.abs.ci_low, "0.028508")
    assert rounds_to(r.abs.ci_high, "0.276689") and rounds_to(r.abs.p_value, "0.015955")
    assert rounds_to(r.rel.estimate, "0.062887")
    assert rounds_to(r.rel.ci_low, "0.011469") and rounds_to(r.rel.ci_high, "0.116919")


def test_srm():
    r = srm({"control": 1970, "treatment": 2030})
    assert close(r.p_value_chi2, scipy.stats.chisquare([1970, 2030]).pvalue, 1e-12)
    assert close(r.p_value, scipy.stats.binomtest(1970, 4000, 0.5).pvalue, 1e-12)
    # The note's "χ² (50/50) 0.350886" is the Yates-corrected χ² (its "0.342782" is plain Pearson χ²;
    # the exact binomial, our verdict for two arms, is 0.3508874).
    assert rounds_to(r.p_value_yates, "0.350886") and rounds_to(r.p_value_chi2, "0.342782")
    assert r.p_value == pytest.approx(0.350886, rel=1e-5) and not r.mismatch


def test_holm_and_bh(arms):
    c, t = arms
    p = [float(compare(c.take([0]), t.take([0]), Layout((0, None))).abs.p_value),
         float(compare(c.take([0, 1]), t.take([0, 1]), Layout((0, None), ((1, None),)), "cuped").abs.p_value),
         float(compare(c.take([0, 2]), t.take([0, 2]), Layout((0, 1))).abs.p_value)]
    holm, bh = adjust(p, "holm"), adjust(p, "bh")
    assert np.allclose(holm, multipletests(p, method="holm")[1], rtol=1e-12)
    assert np.allclose(bh, multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    assert [rounds_to(x, s) for x, s in zip(holm, ("0.0140", "1.18e-05", "0.0160"))] == [True] * 3
    assert [rounds_to(x, s) for x, s in zip(bh, ("0.0105", "1.18e-05", "0.0160"))] == [True] * 3


def test_report_end_to_end_reference(ref_parquet, arms):
    report = build_report(ref_parquet, ReportConfig(
        metrics=("metric",), ratios=(("per_session", "metric", "sessions"),), covariates=(("metric", "pre", None),)))
    cuped, ratio = report.metrics
    direct = compare(arms[0].take([0, 1]), arms[1].take([0, 1]), Layout((0, None), ((1, None),)), "cuped")
    assert cuped.cuped and close(cuped.theta[0], direct.coef_control[0], 1e-10)
    assert close(cuped.abs_effect, direct.abs.estimate, 1e-10) and close(cuped.abs_ci[0], direct.abs.ci_low, 1e-9)
    assert ratio.kind == "ratio" and rounds_to(ratio.abs_effect, "0.152598") and rounds_to(ratio.rel_effect, "0.062887")
    assert report.variants == {"control": 1970, "treatment": 2030}
    assert rounds_to(report.srm.p_value_yates, "0.350886")
