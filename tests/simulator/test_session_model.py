"""The offline session model (abtest.sessions) against the simulator's truth: fitted on one policy's
logs alone, it recovers the platform's temper refund and return slope, and given another policy's
per-impression engagement it predicts that policy's sessions per day and session length."""
from __future__ import annotations

import pytest

from abtest.offline import sessions as S
from abtest.offline.feedback import read_feedback
from simulator import SimConfig

B = SimConfig().behaviour


def session_log(path):
    return S.from_feedback(read_feedback(path))


@pytest.fixture(scope="module")
def logs(runs):
    return {p: session_log(runs[p][0]) for p in ("random", "popularity", "oracle")}


def test_fit_on_popularity_recovers_the_platform_s_parameters(logs):
    m = S.fit(logs["popularity"])
    assert m.beta == pytest.approx(B.temper_enjoy / B.temper_base, abs=0.08)
    assert m.w == pytest.approx(B.satisfaction_weight, abs=0.8)
    assert m.gamma > 0  # reading comments refunds temper


def test_fitted_model_predicts_other_policies_sessions(logs):
    """Fitted on popularity's logs; each policy's own logged engagement in, its sessions out."""
    m = S.fit(logs["popularity"])
    fitted = logs["popularity"]
    for policy, lg in logs.items():
        per_day, sessions, length = S.impressions_per_day(m, fitted, S.logged_engagement(lg))
        actual_sessions = len(lg.n) / len(S._first_sessions(lg))
        assert sessions == pytest.approx(actual_sessions, rel=0.08), policy
        if policy == "oracle":
            # the cost model refunds comment reading per read second; the platform refunds per read
            # comment by its relevance, which the oracle's sections have more of: length is under-
            # predicted (53 vs 78 impressions on this world), in the right direction
            assert lg.n.mean() * 0.55 < length < lg.n.mean()
            assert length > 1.5 * S.expected_length(m, *_e(logs["popularity"]))
        else:
            assert length == pytest.approx(lg.n.mean(), rel=0.08), policy


def _e(lg):
    e = S.logged_engagement(lg)
    return e.frac, e.read_s
