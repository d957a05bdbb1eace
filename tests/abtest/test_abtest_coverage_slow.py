"""Coverage of 95% intervals and false-positive rates under peeking, over many simulated experiments.

Every replication is analysed from sufficient statistics, so a whole batch of replications is one
vectorised call (Moments with a leading batch dimension). Run with ``pytest -m slow``.
"""
from __future__ import annotations

import numpy as np
import pytest

from abtest.compare import Layout, compare
from abtest.sequential import asymptotic_cs, msprt
from abtest.stats import Moments

pytestmark = pytest.mark.slow

REPS = 10_000  # ≥ 2,000 required; 10,000 puts the binomial sd of a 95% coverage at 0.22%
CHUNK = 1_000
LOW, HIGH = 0.94, 0.96


def coverage(simulate, layout, adjustment, truth_abs, truth_rel, seed, reps=REPS):
    """Share of replications whose absolute and relative 95% CIs contain the truth."""
    rng = np.random.default_rng(seed)
    hits_abs = hits_rel = 0
    for _ in range(reps // CHUNK):
        zc, zt = simulate(rng, CHUNK)  # [R, n, k] per arm
        r = compare(Moments.from_columns(zc), Moments.from_columns(zt), layout, adjustment)
        hits_abs += int(np.sum((r.abs.ci_low <= truth_abs) & (truth_abs <= r.abs.ci_high)))
        hits_rel += int(np.sum((r.rel.ci_low <= truth_rel) & (truth_rel <= r.rel.ci_high)))
    cov = hits_abs / reps, hits_rel / reps
    print(f"coverage abs {cov[0]:.4f} rel {cov[1]:.4f}")
    return cov


def check(cov):
    assert LOW <= cov[0] <= HIGH and LOW <= cov[1] <= HIGH, cov


def test_plain_means():
    n = 500

    def sim(rng, r):
        return rng.exponential(10.0, (r, n, 1)), rng.exponential(11.0, (r, n, 1))

    check(coverage(sim, Layout((0, None)), "none", 1.0, 0.1, seed=1))


def test_ratio_metric():
    n = 500

    def arm(rng, r, per_session):
        d = 1 + rng.poisson(3, (r, n))
        y = rng.gamma(d, per_session)  # watch time: a Gamma(d, scale) sum over d sessions
        return np.stack([y, d.astype(float)], axis=-1)

    def sim(rng, r):
        return arm(rng, r, 5.0), arm(rng, r, 5.5)

    check(coverage(sim, Layout((0, 1)), "none", 0.5, 0.1, seed=2))


def cuped_arm(rng, r, n, lift, noise, missing=0.0):
    x = rng.gamma(25.0, 0.4, (r, n))  # pre-period value: mean 10, sd 2
    y = (1 + lift) * (x + rng.normal(0, noise, (r, n)))
    if not missing:
        return np.stack([y, x], axis=-1)
    has = rng.random((r, n)) >= missing
    return np.stack([y, np.where(has, x, 0.0), has.astype(float)], axis=-1)


@pytest.mark.parametrize("lift, noise, seed", [(0.05, 2.0, 3), (0.5, 2.0 * np.sqrt(1 / 0.99**2 - 1), 4)],
                         ids=["lift5%-rho0.71", "lift50%-rho0.99"])
def test_cuped_relative_lift(lift, noise, seed):
    n = 1000

    def sim(rng, r):
        return cuped_arm(rng, r, n, 0.0, noise), cuped_arm(rng, r, n, lift, noise)

    cov = coverage(sim, Layout((0, None), ((1, None),)), "cuped", 10.0 * lift, lift, seed=seed)
    check(cov)


def test_cuped_with_30_percent_missing_pre_period():
    n = 1000

    def sim(rng, r):
        return cuped_arm(rng, r, n, 0.0, 2.0, missing=0.3), cuped_arm(rng, r, n, 0.1, 2.0, missing=0.3)

    check(coverage(sim, Layout((0, None), ((1, None), (2, None))), "lin", 1.0, 0.1, seed=5))


def test_lognormal_small_samples():
    n = 200
    mean_c = np.exp(0.5)

    def sim(rng, r):
        return rng.lognormal(0.0, 1.0, (r, n, 1)), rng.lognormal(np.log(1.1), 1.0, (r, n, 1))

    check(coverage(sim, Layout((0, None)), "none", 0.1 * mean_c, 0.1, seed=6))


def test_sequential_false_positives_with_100_looks():
    """A/A: reject if any of 100 looks rejects. Naive t at every look must fail; both methods stay ≤ 5%."""
    looks, per_look, reps, chunk = 100, 50, 4_000, 500
    rng = np.random.default_rng(7)
    naive = ms = cs = 0
    for _ in range(reps // chunk):
        arms = []
        for _arm in range(2):
            y = rng.exponential(10.0, (chunk, looks, per_look))
            n = np.broadcast_to(per_look * np.arange(1, looks + 1.0), (chunk, looks))
            sums = np.cumsum(y.sum(-1), axis=1)[..., None]
            cross = np.cumsum((y**2).sum(-1), axis=1)[..., None, None]
            arms.append(Moments.from_sums(n, sums, cross))
        r = compare(arms[0], arms[1], Layout((0, None)))  # [chunk, looks]
        v = r.abs.se**2
        naive += int(np.sum(np.any(r.abs.p_value < 0.05, axis=1)))
        tau2 = (0.05 * r.control_mean) ** 2
        ms += int(np.sum(np.any(msprt(r.abs.estimate, v, tau2, 0.05).p_value <= 0.05, axis=1)))
        seq = asymptotic_cs(r.abs.estimate, v, r.n_control + r.n_treatment, 0.05, 5000)
        cs += int(np.sum(np.any((seq.ci_low > 0) | (seq.ci_high < 0), axis=1)))
    rates = naive / reps, ms / reps, cs / reps
    print(f"false positives with {looks} looks: naive {rates[0]:.4f} mSPRT {rates[1]:.4f} CS {rates[2]:.4f}")
    assert rates[0] > 0.2  # peeking with a fixed-horizon test is badly broken
    assert rates[1] <= 0.05 and rates[2] <= 0.05
