"""The offline A/B prediction: per-unit sums, the difference of two targets with its own interval, and
that interval's coverage of the true relative lift over replications of a synthetic section problem."""
from __future__ import annotations

import math

import numpy as np
import pytest

from abtest.offline import prediction as offline_ab
from tests.abtest.test_cascade import ALL, K, LOG_LOGITS, P, REL, draw_rewards, pl_sample, slate_reward_mean


def pl_prefix_batch(logits: np.ndarray, slates: np.ndarray) -> np.ndarray:
    """[n, K] Plackett–Luce prefix probabilities of ordered slates over one candidate set."""
    w = np.exp(logits - logits.max())
    ws = w[slates]
    left = w.sum() - np.concatenate([np.zeros((len(slates), 1)), np.cumsum(ws, axis=1)[:, :-1]], axis=1)
    return np.cumprod(ws / left, axis=1)


def true_value(logits: np.ndarray) -> float:
    slates = np.array(ALL)
    probs = pl_prefix_batch(logits, slates)[:, -1]
    return float(sum(p * slate_reward_mean(s).sum() for p, s in zip(probs, slates)))


CONTROL, TREATMENT = 1.0 * REL, 2.5 * REL  # two stochastic rankers by relevance


def synthetic(rng, n_users: int, n_days: int = 2):
    """Each user-day has Poisson(1.5) sections; both targets are replayed on every logged section."""
    counts = rng.poisson(1.5, size=n_users * n_days)
    unit = np.repeat(np.arange(n_users * n_days), counts)
    n = len(unit)
    slates = pl_sample(LOG_LOGITS, n, rng)
    log = {"items": slates, "logging_prefix": pl_prefix_batch(LOG_LOGITS, slates),
           "logging_marginal": np.full((n, K), np.nan), "user_id": unit // n_days, "day": unit % n_days,
           "rewards": {"read_s": draw_rewards(slates, rng)}}
    targets = []
    for logits in (CONTROL, TREATMENT):
        targets.append({"items": pl_sample(logits, n, rng), "prefix": pl_prefix_batch(logits, slates),
                        "marginal": np.full((n, K), np.nan)})
    return {"comment": log}, {"comment": targets[0]}, {"comment": targets[1]}


def run(rng, estimator: str, n_users: int = 300):
    logged, c, t = synthetic(rng, n_users)
    (m,) = offline_ab.predict(logged, c, t, units=offline_ab.Units(n_users, 2, {}), preview=P, metrics=("comment_watch_time",),
                              estimator=estimator)
    return m


def test_per_unit_values_and_a_policy_against_itself():
    rng = np.random.default_rng(0)
    logged, c, _ = synthetic(rng, 50)
    (m,) = offline_ab.predict(logged, c, c, units=offline_ab.Units(50, 2, {}), preview=P, metrics=("comment_watch_time",),
                              estimator="cascade-ips")
    # the per-unit mean is the sum of the per-request terms over all 100 user-days
    w = c["comment"]["prefix"] / logged["comment"]["logging_prefix"]
    block = np.maximum(np.arange(K), P - 1)
    terms = (w[:, block] * logged["comment"]["rewards"]["read_s"]).sum(axis=1)
    assert m.control.value == pytest.approx(terms.sum() / 100)
    assert m.n_units == 100 and m.n_requests == len(terms)
    assert m.rel_effect == 0.0 and m.rel_ci == (0.0, 0.0) and m.abs_effect == 0.0


def test_unknown_metric_or_estimator_or_foreign_users_raise():
    logged, c, t = synthetic(np.random.default_rng(1), 10)
    with pytest.raises(ValueError, match="not a metric of these logs"):
        offline_ab.predict(logged, c, t, units=offline_ab.Units(10, 2, {}), preview=P, metrics=("clicks",))
    with pytest.raises(ValueError, match="estimator must be"):
        offline_ab.predict(logged, c, t, units=offline_ab.Units(10, 2, {}), preview=P, estimator="magic", metrics=("comment_watch_time",))
    with pytest.raises(ValueError, match="outside the log.s population"):
        offline_ab.predict(logged, c, t, units=offline_ab.Units(5, 2, {}), preview=P, metrics=("comment_watch_time",))


def test_sessions_are_not_identified_by_weights():
    logged, c, t = synthetic(np.random.default_rng(2), 10)
    (m,) = offline_ab.predict(logged, c, t, units=offline_ab.Units(10, 2, {}), preview=P, metrics=("sessions",))
    assert m.flags == ("not_identified",) and math.isnan(m.rel_effect) and m.control is None


@pytest.mark.parametrize("estimator", ["cascade-ips", "cascade-dr"])
def test_difference_interval_covers_the_true_relative_lift(estimator):
    """300 replications: the 95% interval of the relative lift (delta method on paired per-unit terms,
    clustered by user) covers the enumerated truth at a rate inside the binomial band, and the point
    estimate is unbiased to first order (mean error within 3 SE)."""
    truth = true_value(TREATMENT) / true_value(CONTROL) - 1.0
    rng = np.random.default_rng(3 if estimator == "cascade-ips" else 4)
    reps = 300
    results = [run(rng, estimator) for _ in range(reps)]
    covered = np.mean([m.rel_ci[0] <= truth <= m.rel_ci[1] for m in results])
    assert 0.91 <= covered <= 0.985, covered
    est = np.array([m.rel_effect for m in results])
    assert abs(est.mean() - truth) < 3 * est.std(ddof=1) / math.sqrt(reps), (est.mean(), truth)
    assert truth > 0.05  # the problem has a real lift to find


def test_model_pcm_difference_interval_covers_under_the_click_model():
    """model-pcm on comment sections (abtest.cascade.cascade_model): 40 candidates for 5 positions, one
    previewed comment, two Plackett–Luce rankers by relevance. Over 200 replications the interval of
    the relative lift covers the Monte Carlo truth at a rate inside the binomial band."""
    from tests.abtest.test_cascade import click_model_draw, pl_marginals_mc

    rng = np.random.default_rng(8)
    n_cand, k, preview, n_users = 40, 5, 1, 400
    rel = rng.normal(0.0, 0.8, n_cand)
    log_logits, arms = 0.3 * rng.normal(size=n_cand), (0.7 * rel, 1.5 * rel)
    log_marg = pl_marginals_mc(log_logits, k, rng)
    marg = [pl_marginals_mc(a, k, rng) for a in arms]
    values = []
    for a in arms:
        own = np.argsort(-(a[None, :] + rng.gumbel(size=(400_000, n_cand))), axis=1)[:, :k]
        values.append(click_model_draw(rel, own, preview, rng)[0].sum(axis=1).mean())
    truth = values[1] / values[0] - 1.0
    pos = np.arange(k)[None, :]
    covered, est = [], []
    for _ in range(200):
        counts = rng.poisson(2.0, size=n_users)
        user = np.repeat(np.arange(n_users), counts)
        slates = np.argsort(-(log_logits[None, :] + rng.gumbel(size=(len(user), n_cand))), axis=1)[:, :k]
        r, reached = click_model_draw(rel, slates, preview, rng)
        logged = {"comment": {"items": slates, "logging_marginal": log_marg[slates, pos], "logging_prefix": np.ones(r.shape),
                              "user_id": user, "day": np.zeros(len(user), np.int64),
                              "rewards": {"read_s": r, "impressions": reached.astype(float)}}}
        c, t = ({"comment": {"items": slates, "marginal": m[slates, pos], "prefix": np.ones(r.shape)}} for m in marg)
        (m,) = offline_ab.predict(logged, c, t, units=offline_ab.Units(n_users, 1, {}), preview=preview,
                                  metrics=("comment_watch_time",), estimator="model-pcm")
        covered.append(m.rel_ci[0] <= truth <= m.rel_ci[1])
        est.append(m.rel_effect)
    assert truth > 0.1
    assert 0.91 <= np.mean(covered) <= 0.985, np.mean(covered)
    assert abs(np.mean(est) - truth) < 3 * np.std(est, ddof=1) / math.sqrt(200) + 0.003, (np.mean(est), truth)
