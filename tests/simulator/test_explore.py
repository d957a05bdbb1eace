"""Logged propensities equal the wrappers' true probabilities."""
import itertools

import numpy as np
import pytest

from simulator.explore import EpsilonGreedy, Softmax, plackett_luce_marginals, standardize
from simulator.policy import RandomPolicy, ScoringPolicy, Slate


class Fixed(ScoringPolicy):
    name = "fixed"

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def score_videos(self, request):
        return self.scores[request.candidates // 10]

    score_comments = score_videos


class Req:
    def __init__(self, n, k, seed):
        self.candidates = np.arange(n) * 10  # ids differ from positions
        self.k = k
        self.rng = np.random.default_rng(seed)


def exact_plackett_luce(w, k):
    """P(item at position) and P(prefix) by enumerating every ordering (sums, no cancellation)."""
    n = len(w)
    marg = np.zeros((n, k))
    for perm in itertools.permutations(range(n), k):
        p = 1.0
        for j, a in enumerate(perm):
            p *= w[a] / w[[i for i in range(n) if i not in perm[:j]]].sum()
        for j, a in enumerate(perm):
            marg[a, j] += p
    return marg


@pytest.mark.parametrize("scale", [0.3, 2.0, 8.0])
def test_plackett_luce_marginals_match_enumeration(scale):
    rng = np.random.default_rng(1)
    w = np.exp(scale * rng.standard_normal(6))
    exact = exact_plackett_luce(w, 6)
    items = np.array([4, 0, 5, 1, 3, 2])
    np.testing.assert_allclose(plackett_luce_marginals(w, items), exact[items, np.arange(6)], rtol=1e-9, atol=1e-13)


def frequencies(policy, n, k, draws):
    counts = np.zeros((n, k))
    logged = {}
    for s in range(draws):
        slate = policy.rank_videos(Req(n, k, s))
        for j, (item, p) in enumerate(zip(slate.items // 10, slate.propensities)):
            counts[item, j] += 1
            logged[(item, j)] = p
    return counts / draws, logged


def test_epsilon_greedy_propensities_are_true_frequencies():
    n, k, eps = 5, 3, 0.3
    policy = EpsilonGreedy(Fixed([5, 4, 3, 2, 1]), eps)
    freq, logged = frequencies(policy, n, k, 20000)
    for (item, j), p in logged.items():
        expected = (1 - eps) * (item == j) + eps / n  # base ranks item j at position j
        assert p == pytest.approx(expected, abs=1e-15)
        assert freq[item, j] == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / 20000) + 1e-9)


def test_softmax_propensities_are_true_frequencies():
    n, k, T = 5, 3, 0.7
    scores = np.array([1.0, 0.2, -0.5, 0.8, 0.0])
    policy = Softmax(Fixed(scores), T)
    freq, logged = frequencies(policy, n, k, 20000)
    exact = exact_plackett_luce(np.exp(standardize(scores) / T), k)
    for (item, j), p in logged.items():
        assert p == pytest.approx(exact[item, j], rel=1e-9)
        assert freq[item, j] == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / 20000) + 1e-9)


def test_softmax_prefix_is_product_of_sequential_choices():
    scores = np.array([1.0, 0.2, -0.5, 0.8, 0.0])
    slate = Softmax(Fixed(scores), 0.5).rank_videos(Req(5, 4, 3))
    w = np.exp(standardize(scores) / 0.5)
    shown = slate.items // 10
    expected, left = [], w.sum()
    p = 1.0
    for a in shown:
        p *= w[a] / left
        left -= w[a]
        expected.append(p)
    np.testing.assert_allclose(slate.prefix_propensities, expected, rtol=1e-12)


def test_random_policy_propensities():
    slate = RandomPolicy().rank_videos(Req(10, 4, 0))
    np.testing.assert_allclose(slate.propensities, 0.1)
    np.testing.assert_allclose(slate.prefix_propensities, np.cumprod([1 / 10, 1 / 9, 1 / 8, 1 / 7]))
    assert len(set(slate.items)) == 4


def test_deterministic_slate():
    s = Slate.deterministic(np.array([3, 1]))
    assert s.propensities.tolist() == [1.0, 1.0] and s.prefix_propensities.tolist() == [1.0, 1.0]
