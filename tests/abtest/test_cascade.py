"""Cascade IPS / DR with a preview block: by hand, then unbiased on a synthetic section problem
whose true value is enumerated exactly (a preview decides the open, then a reading cascade)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from abtest import cascade, ope

C, K, P = 6, 4, 2  # candidates, slate size, preview
REL = np.array([1.2, 0.8, 0.3, -0.2, -0.6, -1.0])  # relevance of each candidate to the user


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def slate_reward_mean(slate) -> np.ndarray:
    """E[r_j | slate] for the section model: open on the preview's mean relevance, read as a cascade."""
    rel = REL[list(slate)]
    p_open = sigmoid(-0.5 + 1.5 * rel[:P].mean())
    read = sigmoid(0.2 + 1.0 * rel)
    secs = 2.0 * np.exp(0.3 * rel)
    cont = read * sigmoid(1.0 + 0.8 * rel) + (1 - read) * sigmoid(1.0 - 0.8)
    reach = np.concatenate([[1.0], np.cumprod(cont)[:-1]])
    return p_open * reach * read * secs


def draw_rewards(slates: np.ndarray, rng) -> np.ndarray:
    """One realisation per slate of the same model ([n, K])."""
    rel = REL[slates]
    n = len(slates)
    opened = rng.random(n) < sigmoid(-0.5 + 1.5 * rel[:, :P].mean(axis=1))
    out = np.zeros((n, K))
    alive = opened.copy()
    for j in range(K):
        read = rng.random(n) < sigmoid(0.2 + 1.0 * rel[:, j])
        out[:, j] = np.where(alive & read, 2.0 * np.exp(0.3 * rel[:, j]), 0.0)
        cont = rng.random(n) < np.where(read, sigmoid(1.0 + 0.8 * rel[:, j]), sigmoid(1.0 - 0.8))
        alive &= cont
    return out


def pl_prefix(logits: np.ndarray, slate) -> np.ndarray:
    """Prefix probabilities of an ordered slate under Plackett–Luce (written independently of the package)."""
    w = np.exp(logits - logits.max())
    left = w.sum()
    out, p = [], 1.0
    for a in slate:
        p *= w[a] / left
        left -= w[a]
        out.append(p)
    return np.array(out)


def pl_sample(logits, n, rng) -> np.ndarray:
    return np.argsort(-(logits[None, :] + rng.gumbel(size=(n, C))), axis=1)[:, :K]


ALL = list(itertools.permutations(range(C), K))
LOG_LOGITS = np.array([0.0, 0.3, 0.6, 0.2, -0.1, 0.4])  # the logger barely knows the user
TARGET_LOGITS = 2.0 * REL  # a stochastic target that ranks by relevance
DET_TARGET = (0, 1, 2, 3)  # a deterministic target: the ideal order


def truth(target) -> float:
    if isinstance(target, tuple):
        return float(slate_reward_mean(target).sum())
    return float(sum(pl_prefix(target, s)[-1] * slate_reward_mean(s).sum() for s in ALL))


def test_block_index_and_weights_by_hand():
    mask = np.array([[True, True, True, True], [True, False, False, False]])
    np.testing.assert_array_equal(cascade.block_index(mask, 2), [[1, 1, 2, 3], [0, 0, 0, 0]])
    lp = np.array([[0.5, 0.25, 0.1, 0.05], [0.5, 1, 1, 1]])
    tp = np.array([[1.0, 1.0, 0.5, 0.0], [0.25, 0, 0, 0]])
    w, unsupported = cascade.cascade_weights(lp, tp, mask, 2)
    np.testing.assert_allclose(w, [[4, 4, 5, 0], [0.5, 0, 0, 0]])
    assert unsupported.tolist() == [0, 0, 0, 0, 0]
    r = np.array([[1.0, 2.0, 0.0, 3.0], [2.0, 0, 0, 0]])
    est = cascade.cascade_ips(r, lp, tp, mask=mask, preview=2)
    np.testing.assert_allclose(est.terms, [4 * 1 + 4 * 2, 0.5 * 2])
    q_logged = np.full((2, 4), 0.5)
    q_target = np.ones((2, 4))
    dr = cascade.cascade_dr(r, lp, tp, q_logged, q_target, mask=mask, preview=2)
    # Σ q_target (4 positions, 1 position) + Σ (w / w̄) (r − 0.5), w̄ per position over the requests
    # that have it: (4 + 0.5) / 2, 4, 5, 0 (taken as 1)
    wbar = [2.25, 4.0, 5.0, 1.0]
    np.testing.assert_allclose(dr.terms, [4 + 4 / wbar[0] * 0.5 + 4 / wbar[1] * 1.5 + 5 / wbar[2] * -0.5 + 0,
                                          1 + 0.5 / wbar[0] * 1.5])


def test_weights_one_reproduce_the_logged_total():
    rng = np.random.default_rng(0)
    slates = pl_sample(LOG_LOGITS, 500, rng)
    r = draw_rewards(slates, rng)
    prefix = np.array([pl_prefix(LOG_LOGITS, s) for s in slates])
    est = cascade.cascade_ips(r, prefix, prefix, preview=P)
    assert est.value == pytest.approx(r.sum(axis=1).mean())
    assert est.ess == pytest.approx(500)


@pytest.mark.parametrize("target", ["stochastic", "deterministic"])
def test_cascade_estimators_unbiased_where_independent_ips_is_not(target):
    """200 replications of 3,000 logged sections; mean error within 2 SE for cascade IPS and DR with a
    deliberately wrong reward model; position-wise (independent) IPS ignores the preview and is biased."""
    rng = np.random.default_rng(11 if target == "stochastic" else 12)
    true_value = truth(TARGET_LOGITS if target == "stochastic" else DET_TARGET)
    n, reps = 3000, 200
    est = {"ips": [], "dr": [], "iips": []}
    # marginals of the logger, by enumeration, for the independent-IPS comparison
    log_marg = np.zeros((C, K))
    tgt_marg = np.zeros((C, K))
    for s in ALL:
        pl, pt = pl_prefix(LOG_LOGITS, s)[-1], (pl_prefix(TARGET_LOGITS, s)[-1] if target == "stochastic" else float(s == DET_TARGET))
        for j, a in enumerate(s):
            log_marg[a, j] += pl
            tgt_marg[a, j] += pt
    for _ in range(reps):
        slates = pl_sample(LOG_LOGITS, n, rng)
        r = draw_rewards(slates, rng)
        lp = np.array([pl_prefix(LOG_LOGITS, s) for s in slates])
        if target == "stochastic":
            tp = np.array([pl_prefix(TARGET_LOGITS, s) for s in slates])
            own = pl_sample(TARGET_LOGITS, n, rng)  # the target's own draw, for the DM term
        else:
            tp = np.cumprod(slates == np.array(DET_TARGET)[None, :], axis=1).astype(float)
            own = np.broadcast_to(np.array(DET_TARGET), (n, K))
        q_item = np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])  # a wrong, context-free model
        est["ips"].append(cascade.cascade_ips(r, lp, tp, preview=P).value)
        est["dr"].append(cascade.cascade_dr(r, lp, tp, q_item[slates], q_item[own], preview=P).value)
        pos = np.arange(K)[None, :]
        est["iips"].append(ope.slate_ips(r, log_marg[slates, pos], tgt_marg[slates, pos]).value)
    for name in ("ips", "dr"):
        e = np.asarray(est[name])
        se = e.std(ddof=1) / math.sqrt(reps)
        assert abs(e.mean() - true_value) < 2 * se, (name, e.mean(), true_value, se)
    e = np.asarray(est["iips"])
    assert abs(e.mean() - true_value) > 4 * e.std(ddof=1) / math.sqrt(reps), (e.mean(), true_value)
    # DR with a wrong model is still no noisier than IPS here
    assert np.std(est["dr"]) <= 1.1 * np.std(est["ips"])


def test_no_support_is_flagged():
    lp = np.array([[1.0, 1.0], [1.0, 1.0]])  # a deterministic logger
    tp = np.array([[0.0, 0.0], [1.0, 1.0]])
    est = cascade.cascade_ips(np.ones((2, 2)), lp, tp, preview=1)
    assert "no_support" in est.flags and est.support == pytest.approx(0.5)
