"""The session model (abtest.sessions): its maximum-likelihood fit recovers known parameters, its
expected length and session counts match Monte Carlo. (Against the simulator's own parameters:
tests/simulator/test_session_model.py.)"""
from __future__ import annotations

import math

import numpy as np
import pytest

from abtest.offline import sessions as S

CAP = 400


def synthetic_log(rng, n_users=400, beta=0.8, gamma=0.1, mu=2.6, sigma=0.5, alpha=11.0, w=2.5, days=3):
    """Sessions drawn from the model itself: per-impression watch fractions and read seconds, a
    log-normal budget, first passage; gaps exponential in the session's satisfaction, each user
    coming back until the run's end."""
    run_s = days * S.DAY_S
    rows = []
    for user in range(n_users):
        taste = 0.2 + 0.4 * ((user % 5) / 4)
        t = rng.uniform(0, 20000)
        while t < run_s:
            played = rng.random(CAP) < 0.5
            f = np.where(played, rng.beta(4 * taste + 0.5, 2.0, CAP), 0.0)
            g = np.where(played & (rng.random(CAP) < 0.2), rng.exponential(3.0, CAP), 0.0)
            tau = math.exp(mu + sigma * rng.standard_normal())
            hit = np.flatnonzero(np.cumsum(1 - beta * f - gamma * g) >= tau)
            n = hit[0] + 1 if len(hit) else CAP
            rows.append((user, t, t + 10.0 * n, bool(len(hit)) and n < CAP, n, f * (np.arange(CAP) < n),
                         g * (np.arange(CAP) < n)))
            t += 10.0 * n + 600.0 + rng.exponential(math.exp(alpha - w * f[:n].mean()))
    user, start, end, ended, n, frac, read = (np.asarray(c) for c in zip(*rows))
    return S.SessionLog(user, start, end, ended, n, np.stack(frac), np.stack(read), run_s, CAP, 600.0)


def test_fit_recovers_known_parameters():
    log = synthetic_log(np.random.default_rng(0))
    m = S.fit(log)
    assert m.beta == pytest.approx(0.8, abs=0.06)  # ~2 SE at 3,300 sessions
    assert m.gamma == pytest.approx(0.1, abs=0.03)
    assert m.mu == pytest.approx(2.6, abs=0.08)
    assert m.sigma == pytest.approx(0.5, abs=0.05)
    assert m.w == pytest.approx(2.5, abs=0.5)


def test_expected_length_matches_monte_carlo():
    m = S.SessionModel(0.8, 0.1, 2.6, 0.5, 10.0, 2.5, CAP, 600.0)
    rng = np.random.default_rng(1)
    tau = np.exp(2.6 + 0.5 * rng.standard_normal(200_000))
    cost = 1 - 0.8 * 0.4 - 0.1 * 0.5
    mc = np.minimum(CAP, np.ceil(tau / cost)).mean()
    assert S.expected_length(m, 0.4, 0.5) == pytest.approx(mc, rel=0.01)
    assert S.expected_length(m, 1.3, 0.0) == CAP  # an impression refunds more than it costs: the cap


def test_expected_sessions_match_a_simulated_renewal_process():
    m = S.SessionModel(0.8, 0.1, 2.6, 0.5, 10.0, 2.5, CAP, 600.0)
    rng = np.random.default_rng(2)
    first = np.array([3600.0, 40000.0])
    duration, sat = 900.0, 0.3
    mean_gap = math.exp(10.0 - 2.5 * sat)
    got = S.expected_sessions(m, first, S.DAY_S, duration, sat)
    for f, g in zip(first, got):
        counts = []
        for _ in range(20000):
            t, k = f, 1
            while True:
                t += duration + 600.0 + rng.exponential(mean_gap)
                if t >= S.DAY_S:
                    break
                k += 1
            counts.append(k)
        assert g == pytest.approx(np.mean(counts), abs=4 * np.std(counts) / math.sqrt(len(counts)) + 1e-3)


def test_no_sessions_is_a_clear_error():
    log = S.SessionLog(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0, np.int64),
                       np.zeros((0, 1)), np.zeros((0, 1)), S.DAY_S, CAP, 600.0)
    with pytest.raises(S.InputError, match="no sessions"):
        S.fit(log)


def test_a_log_without_sessions_is_a_clear_error(tmp_path):
    import pyarrow as pa

    from abtest.offline.feedback import read_feedback, write_feedback

    requests = pa.table({"request_id": [1], "ts": [0.0], "surface": ["feed"], "user_id": [0],
                         "candidates": pa.array([[7, 8]], pa.list_(pa.int64()))})
    impressions = pa.table({"request_id": [1], "position": [0], "item_id": [7], "propensity": [0.5]})
    write_feedback(tmp_path / "logs", requests, impressions, pa.table({"request_id": [1], "item_id": [7], "click": [1.0]}), {})
    with pytest.raises(S.InputError, match="the session model needs sessions.parquet"):
        S.from_feedback(read_feedback(tmp_path / "logs"))


def test_the_likelihood_gradient_is_the_derivative():
    log = synthetic_log(np.random.default_rng(5), n_users=40)
    J, F, G, valid = S._budget_terms(log)
    args = (J, F, G, valid, log.n, log.ended, np.ones(len(log.n)))
    theta = np.array([0.7, 0.05, 2.5, math.log(0.55)])
    _, grad = S._budget_nll(theta, *args)
    h = 1e-6
    numeric = [(S._budget_nll(theta + h * e, *args)[0] - S._budget_nll(theta - h * e, *args)[0]) / (2 * h) for e in np.eye(4)]
    assert np.allclose(grad, numeric, rtol=1e-5, atol=1e-4)
