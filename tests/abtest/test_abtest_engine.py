"""Sufficient statistics, shards, sequential tests, power, robustness, regression adjustment, guards."""
from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.api as sm
from statsmodels.stats.power import NormalIndPower

from abtest.aggregate import aggregate
from abtest.compare import Layout, compare
from abtest.power import mde, plan, power_at, units_per_arm
from abtest.report import ReportConfig, analyze, build_report
from abtest.robust import cap_threshold, mann_whitney, rank_sums
from abtest.sequential import asymptotic_cs, msprt, running
from abtest.source import open_source
from abtest.spec import metric_specs
from abtest.stats import Moments


def test_moments_from_sums_and_batches():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 50, 3))
    batched = Moments.from_columns(z)
    one = Moments.from_columns(z[2])
    assert np.allclose(batched[2].comoment, one.comoment) and np.allclose(one.cov, np.cov(z[2].T))
    sums = Moments.from_sums(50, z[2].sum(0), z[2].T @ z[2])
    assert np.allclose(sums.comoment, one.comoment)
    halves = Moments.from_columns(z[2][:17]) + Moments.from_columns(z[2][17:])
    assert np.allclose(halves.mean, one.mean) and np.allclose(halves.comoment, one.comoment)


def test_shards_add_up_to_the_whole_report(ref_df, tmp_path):
    config = ReportConfig(metrics=("metric",), ratios=(("per_session", "metric", "sessions"),),
                          covariates=(("metric", "pre", None), ("per_session", "pre", "pre_sessions")))
    df = ref_df.copy()
    df.loc[df.index % 7 == 0, "pre"] = np.nan  # exercise the has-pre-data layout too
    df.to_parquet(tmp_path / "whole.parquet")
    whole_source = open_source(tmp_path / "whole.parquet")
    specs = metric_specs(whole_source.columns, "", False, config.metrics, config.ratios, config.covariates)
    whole_agg = aggregate(whole_source, specs)
    assert set(whole_agg.missing) == {"metric", "per_session"}
    total = None
    shuffled = df.sample(frac=1, random_state=1)
    for i, part in enumerate([shuffled.iloc[:1000], shuffled.iloc[1000:2500], shuffled.iloc[2500:]]):
        part.to_parquet(tmp_path / f"shard{i}.parquet")
        agg = aggregate(open_source(tmp_path / f"shard{i}.parquet"), specs,
                        indicator={s: True for s in whole_agg.missing})
        total = agg if total is None else total + agg
    whole, sharded = analyze(whole_agg, specs, config), analyze(total, specs, config)
    assert whole.variants == sharded.variants and whole.srm == sharded.srm
    for a, b in zip(whole.metrics, sharded.metrics):
        for key, value in asdict(a).items():
            other = asdict(b)[key]
            if isinstance(value, float):
                assert other == pytest.approx(value, rel=1e-9, abs=1e-12), key
            elif isinstance(value, tuple) and value and isinstance(value[0], float):
                assert other == pytest.approx(value, rel=1e-9), key
            else:
                assert other == value, key


def test_msprt_against_hand_computation():
    d, v, tau2, alpha = 0.3, 0.01, 0.04, 0.05
    lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d**2 / (2 * v * (v + tau2)))
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))
    r = msprt(d, v, tau2, alpha)
    assert float(r.p_value) == pytest.approx(min(1, 1 / lam), rel=1e-12)
    assert (float(r.ci_low), float(r.ci_high)) == (pytest.approx(d - half, rel=1e-12), pytest.approx(d + half, rel=1e-12))
    # the interval is exactly where the always-valid p-value of the shifted null exceeds alpha
    assert float(msprt(d - (d - half), v, tau2, alpha).p_value) == pytest.approx(alpha, rel=1e-9)
    looks = running(msprt(np.array([0.3, 0.1, 0.5]), np.array([0.04, 0.02, 0.01]), tau2, alpha))
    assert np.all(np.diff(looks.p_value) <= 0) and np.all(np.diff(looks.ci_high - looks.ci_low) <= 0)


def test_asymptotic_cs_p_value_is_the_exclusion_boundary():
    d, v, n = 0.25, 0.01, 4000
    r = asymptotic_cs(d, v, n, 0.05, 5000)
    p = float(r.p_value)
    assert 0 < p < 1
    lo = asymptotic_cs(d, v, n, p * 1.0001, 5000)
    hi = asymptotic_cs(d, v, n, p * 0.9999, 5000)
    assert float(lo.ci_low) > 0 > float(hi.ci_low)  # 0 leaves the sequence exactly at alpha = p
    rho2 = (-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 5000  # GrowthBook's formula by hand
    half = math.sqrt(v * n) * math.sqrt(2 * (n * rho2 + 1) / (n**2 * rho2) * math.log(math.sqrt(n * rho2 + 1) / 0.05))
    assert float(r.ci_high - r.ci_low) / 2 == pytest.approx(half, rel=1e-12)


def test_power_against_statsmodels():
    sd, rho, alpha, power = 60.0, 0.7, 0.05, 0.8
    sd_adj = sd * math.sqrt(1 - rho**2)
    effect = float(mde(sd, 5000, 5000, alpha, power, rho))
    sm_power = NormalIndPower().power(effect / sd_adj, nobs1=5000, alpha=alpha, ratio=1.0)
    assert float(power_at(effect, sd, 5000, 5000, alpha, rho)) == pytest.approx(sm_power, rel=1e-12)
    assert sm_power == pytest.approx(power, abs=1e-6)  # the MDE formula ignores the far tail (< 1e-6)
    n = units_per_arm(0.6, sd, alpha, power, rho)
    assert n == pytest.approx(NormalIndPower().solve_power(0.6 / sd_adj, alpha=alpha, power=power, ratio=1.0), rel=1e-5)
    p = plan(30, 60, rho=0.7, mde_rel=0.02)
    assert p.n_per_arm == math.ceil(n) and p.mde_abs == pytest.approx(0.6)


def test_mann_whitney_from_rank_sums(tmp_path):
    rng = np.random.default_rng(5)
    c, t = rng.poisson(2, 300).astype(float), rng.poisson(2.4, 280).astype(float)
    ref = scipy.stats.mannwhitneyu(t, c, method="asymptotic")
    rs, ties = rank_sums(c, t)
    r = mann_whitney(rs, len(c), len(t), ties)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12) and r.u == pytest.approx(ref.statistic)
    pd.DataFrame({"user_id": range(580), "variant": ["control"] * 300 + ["t"] * 280, "y": np.r_[c, t]}).to_parquet(tmp_path / "u.parquet")
    report = build_report(tmp_path / "u.parquet", ReportConfig(metrics=("y",), mann_whitney=True))
    assert report.metrics[0].mann_whitney_p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_winsorisation_thresholds_are_pooled_and_skip_zeros(tmp_path):
    y = np.r_[np.zeros(995), np.arange(1, 6.0)]
    cap = cap_threshold(y, 0.99)
    assert cap.on_nonzero and cap.value == pytest.approx(np.quantile(np.arange(1, 6.0), 0.99))
    rng = np.random.default_rng(2)
    big = rng.lognormal(0, 1, 2000)
    df = pd.DataFrame({"user_id": range(2000), "variant": ["control", "treatment"] * 1000, "y": big})
    df.to_parquet(tmp_path / "u.parquet")
    report = build_report(tmp_path / "u.parquet", ReportConfig(metrics=("y",), winsorize=0.95))
    q = np.quantile(big, 0.95)
    capped = np.minimum(big, q)
    assert report.metrics[0].control_mean == pytest.approx(capped[::2].mean(), rel=1e-9)


def test_lin_adjustment_against_statsmodels():
    rng = np.random.default_rng(11)
    n = 3000
    t = rng.random(n) < 0.3
    x = rng.gamma(2, 3, n)
    has = rng.random(n) > 0.3
    y = 1 + np.where(t, 1.2, 0.8) * x + 0.5 * t + rng.normal(0, 2 + 0.3 * x)
    xf = np.where(has, x, 0.0)
    cov = np.column_stack([xf, has.astype(float)])
    centred = cov - cov.mean(0)
    design = sm.add_constant(np.column_stack([t, centred, centred * t[:, None]]).astype(float))
    fit = sm.OLS(y, design).fit(cov_type="HC2")
    z = np.column_stack([y, xf, has.astype(float)])
    r = compare(Moments.from_columns(z[~t]), Moments.from_columns(z[t]), Layout((0, None), ((1, None), (2, None))), "lin")
    assert float(r.abs.estimate) == pytest.approx(fit.params[1], rel=1e-9)  # Lin's estimator exactly
    assert float(r.abs.se) == pytest.approx(fit.bse[1], rel=0.01)  # HC2 vs the delta (superpopulation) variance


def test_guards_flag_instead_of_silent_numbers(tmp_path):
    df = pd.DataFrame({"user_id": range(8), "variant": ["control"] * 4 + ["treatment"] * 4,
                       "flat": [2.0] * 8, "neg": [-1.0, -2, -3, -1, 1, 2, 3, 2], "num": [1.0, 2, 1, 2, 1, 2, 3, 1],
                       "den": [0.0] * 4 + [1.0] * 4})
    df.to_parquet(tmp_path / "u.parquet")
    report = build_report(tmp_path / "u.parquet", ReportConfig(metrics=("flat", "neg"), ratios=(("r", "num", "den"),)))
    flat, neg, ratio = report.metrics
    assert flat.p_value is None and flat.abs_ci is None and "zero variance: no test" in flat.flags
    assert neg.rel_effect is None and neg.rel_ci is None and neg.p_value is not None
    assert any("control mean <= 0" in f for f in neg.flags)
    assert ratio.abs_effect is None and ratio.p_value is None and any("denominator 'den' is 0" in f for f in ratio.flags)
    assert flat.p_value_adjusted is None and neg.p_value_adjusted == pytest.approx(neg.p_value)  # flagged tests leave the family


def test_flag_kinds_decide_what_is_withheld_and_keep_their_texts(tmp_path):
    from abtest.report import NO_REL, NO_REL_CI, NO_TEST, Flag, FlagKind

    # the texts the report's JSON has always written
    assert Flag.of(FlagKind.NO_RATIO, den="den", arm="control").text == "denominator 'den' is 0 in the control arm: no ratio"
    assert Flag.of(FlagKind.PRE_IMBALANCE, p=3.4e-34).text == "pre-period imbalance between arms (p=3.4e-34): check the assignment"
    assert NO_TEST < NO_REL < NO_REL_CI and FlagKind.PRE_IMBALANCE not in NO_REL_CI
    df = pd.DataFrame({"user_id": range(8), "variant": ["control"] * 4 + ["treatment"] * 4,
                       "tneg": [1.0, 2, 1, 2, -1, -2, -3, -1]})
    df.to_parquet(tmp_path / "u.parquet")
    (m,) = build_report(tmp_path / "u.parquet", ReportConfig(metrics=("tneg",))).metrics
    assert m.flags == ("treatment mean <= 0: no relative interval",)
    assert m.rel_ci is None and m.rel_se_log is None and m.p_value is not None and m.abs_ci is not None


def test_proportion_kind(tmp_path):
    df = pd.DataFrame({"user_id": range(6), "variant": ["control"] * 3 + ["treatment"] * 3,
                       "converted": [0, 1, 0, 1, 1, 0], "y": [0.5, 1, 0, 1, 1, 0]})
    df.to_parquet(tmp_path / "u.parquet")
    report = build_report(tmp_path / "u.parquet", ReportConfig(metrics=("converted", "y")))
    assert [m.kind for m in report.metrics] == ["proportion", "mean"]


def test_nan_covariate_is_missing_pre_period(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(8)
    n = 400
    pre = rng.gamma(2, 5, n)
    y = 2 + 0.8 * pre + rng.normal(0, 3, n)
    pre[::5] = np.nan  # NaN, not NULL: pyarrow keeps it
    pq.write_table(pa.table({"user_id": np.arange(n), "variant": np.where(np.arange(n) % 2, "treatment", "control"),
                             "y": y, "pre": pa.array(pre, from_pandas=False)}), tmp_path / "u.parquet")
    report = build_report(tmp_path / "u.parquet", ReportConfig(metrics=("y",), covariates=(("y", "pre", None),)))
    m = report.metrics[0]
    assert m.adjustment == "lin-has-pre" and m.variance_reduction > 0.3
    assert any("80 of 400 units (20.0%) have no pre-period value" in w for w in report.warnings)


@pytest.mark.parametrize("module", ["stats", "welch", "ratio", "srm", "multiple", "power"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"abtest.{module}"))
    assert result.attempted > 0 and result.failed == 0
