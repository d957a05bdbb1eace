"""Off-policy estimators: hand-checked formulas, then unbiasedness on synthetic bandit and slate
problems whose true value is known exactly (200 seeded replications each)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from abtest.offline import ope

R = 200  # replications


def unbiased(estimates: np.ndarray, truth: float) -> None:
    """Mean error within 2 standard errors of the replication mean."""
    estimates = np.asarray(estimates)
    assert np.all(np.isfinite(estimates))
    se = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert abs(estimates.mean() - truth) < 2 * se + 1e-12, (estimates.mean(), truth, se)


# ----------------------------------------------------------------------------------------------
# Hand-checked tiny examples
# ----------------------------------------------------------------------------------------------
R4 = np.array([1.0, 0.0, 2.0, 3.0])
P0 = np.array([0.5, 0.25, 0.5, 1.0])
PE = np.array([1.0, 0.0, 0.5, 0.5])  # w = [2, 0, 1, 0.5]; the last item was certain under logging


def test_ips_by_hand():
    est = ope.ips(R4, P0, PE)
    assert est.value == pytest.approx((2 + 0 + 2 + 1.5) / 4)
    terms = np.array([2, 0, 2, 1.5])
    assert est.se == pytest.approx(np.sqrt(np.sum((terms - terms.mean()) ** 2) / (4 * 3)))
    assert est.ess == pytest.approx(3.5**2 / (4 + 0 + 1 + 0.25))
    z = 1.959963984540054
    assert est.ci == pytest.approx((est.value - z * est.se, est.value + z * est.se))
    # the logging policy showed item 3 with probability 1: the target's other 0.5 there is unsupported
    assert est.support == pytest.approx(1 - 0.5 / 4)
    assert "no_support" in est.flags


def test_snips_by_hand():
    est = ope.snips(R4, P0, PE)
    w = np.array([2, 0, 1, 0.5])
    v = (2 + 0 + 2 + 1.5) / 3.5
    assert est.value == pytest.approx(v)
    # delta method: sd of w (r − V) / mean(w)
    assert est.se == pytest.approx(np.sqrt(np.sum((w * (R4 - v)) ** 2) / (4 * 3)) / w.mean())
    assert np.mean(est.terms) == pytest.approx(v)


def test_dm_and_dr_by_hand():
    assert ope.dm([1.0, 2.0, 3.0, 4.0]).value == pytest.approx(2.5)
    q_logged = np.array([0.5, 1.0, 1.0, 1.0])
    q_target = np.ones(4)
    # terms: 1 + 2(1 − 0.5), 1 + 0, 1 + 1(2 − 1), 1 + 0.5(3 − 1)
    est = ope.dr(R4, P0, PE, q_logged, q_target)
    assert est.value == pytest.approx((2 + 1 + 2 + 2) / 4)
    np.testing.assert_allclose(est.terms, [2, 1, 2, 2])


def test_slate_estimators_by_hand():
    r = np.array([[1.0, 0.0], [0.0, 2.0]])
    p0_marg = np.array([[0.5, 0.5], [0.25, 0.5]])
    pe_marg = np.array([[1.0, 0.0], [0.0, 1.0]])
    # IIPS: w = [[2, 0], [0, 2]] → terms [2, 4]
    assert ope.independent_ips(r, p0_marg, pe_marg).value == pytest.approx(3.0)
    # SN-IIPS: per position Σ w r / Σ w = 2/2 + 4/2
    assert ope.independent_ips(r, p0_marg, pe_marg, self_normalize=True).value == pytest.approx(3.0)
    p0_pre = np.array([[0.5, 0.25], [0.25, 0.125]])
    pe_pre = np.array([[1.0, 0.5], [0.5, 0.5]])
    # RIPS: w = [[2, 2], [2, 4]] → terms [2, 8]
    assert ope.reward_interaction_ips(r, p0_pre, pe_pre).value == pytest.approx(5.0)
    # SN-RIPS: position 0: (2·1 + 2·0)/(2 + 2); position 1: (2·0 + 4·2)/(2 + 4)
    assert ope.reward_interaction_ips(r, p0_pre, pe_pre, self_normalize=True).value == pytest.approx(0.5 + 8 / 6)
    # standard IPS: whole-slate ratio [0.5/0.25, 0.5/0.125] times slate totals [1, 2]
    assert ope.standard_slate_ips(r, p0_pre[:, -1], pe_pre[:, -1]).value == pytest.approx((2 * 1 + 4 * 2) / 2)
    # DM and position-wise DR
    q_t = np.array([[1.0, 1.0], [0.5, 0.5]])
    q_l = np.array([[0.5, 0.0], [0.0, 1.0]])
    assert ope.slate_dm(q_t).value == pytest.approx((2 + 1) / 2)
    # terms: (1 + 2·0.5) + (1 + 0) ; (0.5 + 0) + (0.5 + 2·1)
    assert ope.slate_dr(r, p0_marg, pe_marg, q_l, q_t).value == pytest.approx((3 + 3) / 2)
    # a mask drops the second position of the second slate
    mask = np.array([[True, True], [True, False]])
    assert ope.independent_ips(r, p0_marg, pe_marg, mask=mask).value == pytest.approx(1.0)


def test_lift_by_hand():
    est = ope.ips(R4, P0, np.array([1.0, 0.0, 0.5, 1.0]))  # terms [2, 0, 2, 3]
    base = ope.on_policy(R4)
    lift = ope.lift(est, base)
    assert lift.abs_effect == pytest.approx(0.25)
    assert lift.rel_effect == pytest.approx(1.75 / 1.5 - 1)
    d = np.array([1.0, 0, 0, 0])
    half = 1.959963984540054 * np.sqrt(np.sum((d - d.mean()) ** 2) / 12)
    assert lift.abs_ci == pytest.approx((0.25 - half, 0.25 + half))
    assert lift.rel_ci[0] < lift.rel_effect < lift.rel_ci[1]


def test_cluster_standard_error_and_ess():
    # deviations [-1.5, -0.5, 0.5, 1.5]; cluster sums [-2, 2]; sqrt(G/(G−1) · 8) / n
    assert ope.standard_error(np.array([1.0, 2, 3, 4]), np.array([7, 7, 9, 9])) == pytest.approx(1.0)
    # one request per cluster = the plain formula
    t = np.array([1.0, 5, 2, 8, 3])
    assert ope.standard_error(t, np.arange(5)) == pytest.approx(ope.standard_error(t))
    assert ope.effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert ope.effective_sample_size(np.array([1.0, 0, 0, 0])) == pytest.approx(1)


def test_reward_model_by_hand():
    # position means 3 (top) and 1 → p = [1, 1/3]; r / p = [2, 3, 4]; μ = 3
    model = ope.fit_reward_model([1, 1, 2], [0, 1, 0], [2.0, 1.0, 4.0], prior_strength=0.0)
    np.testing.assert_allclose(model.position_effect, [1, 1 / 3])
    np.testing.assert_allclose(ope.predict(model, [1, 2, 9, 2], [0, 0, 0, 1]), [2.5, 4.0, 3.0, 4 / 3])
    shrunk = ope.fit_reward_model([1, 1, 2], [0, 1, 0], [2.0, 1.0, 4.0], prior_strength=1.0)
    np.testing.assert_allclose(shrunk.item_effect, [(5 + 3) / 3, (4 + 3) / 2])
    # cross-fitting: fold 0 is predicted by fold 1's model and vice versa
    (pred,) = ope.cross_fit([5, 5, 6, 6], [0, 0, 0, 0], [1.0, 3.0, 10.0, 20.0], [0, 1, 0, 1],
                            [(np.array([5, 6]), np.array([0, 0]), np.array([0, 1]))], prior_strength=0.0)
    np.testing.assert_allclose(pred, [3.0, 10.0])


def test_deterministic_logging_is_flagged_as_no_support():
    r = np.array([1.0, 2.0, 3.0, 4.0])
    ones = np.ones(4)
    target = np.array([1.0, 0.0, 0.0, 1.0])  # the target would have shown something else twice
    for est in (ope.ips(r, ones, target), ope.snips(r, ones, target), ope.dr(r, ones, target, r, r)):
        assert est.support == pytest.approx(0.5)
        assert "no_support" in est.flags
    same = ope.ips(r, ones, ones)
    assert same.support == 1 and "no_support" not in same.flags and same.value == pytest.approx(2.5)


def test_snips_without_weight_is_flagged_not_crashing():
    est = ope.snips([1.0, 2.0], [0.5, 0.5], [0.0, 0.0])
    assert np.isnan(est.value) and "no_weight" in est.flags
    assert est.as_dict()["value"] is None


def test_evaluate_runs_every_family_and_weights_one_reproduce_on_policy():
    rng = np.random.default_rng(0)
    n, K = 400, 4
    items = rng.integers(0, 30, size=(n, K))
    items[:50, 3] = -1  # shorter slates
    rewards = rng.exponential(size=(n, K))
    marg = rng.uniform(0.2, 0.9, size=(n, K))
    pre = np.cumprod(marg, axis=1)
    users = np.arange(n) // 4
    ev = ope.evaluate(rewards, items, marg, pre, items, marg, pre, clusters=users)
    names = [(r.level, r.estimator) for r in ev.results]
    assert names == [("item", e) for e in ("ips", "snips", "dm", "dr")] + [
        ("slate", e) for e in ("iips", "rips", "sips", "sn-iips", "sn-rips", "dm", "dr")]
    truth = {"item": rewards[:, 0].mean(), "slate": np.where(items >= 0, rewards, 0).sum(axis=1).mean()}
    for r in ev.results:
        if r.estimator != "dm":  # the logging policy as target: every weight is 1
            assert r.estimate.value == pytest.approx(truth[r.level]), r
            assert r.lift.abs_effect == pytest.approx(0.0, abs=1e-9)
            assert r.estimate.ess == pytest.approx(n)
    only = ope.evaluate(rewards, items, marg, pre, items, marg, pre, estimator="snips")
    assert [r.estimator for r in only.results] == ["snips", "sn-iips", "sn-rips"]
    with pytest.raises(ValueError):
        ope.evaluate(rewards, items, marg, pre, items, marg, pre, estimator="magic")


def test_evaluate_dispatches_from_the_estimator_tables():
    """Every estimator a --estimator choice names has a function, and each choice runs exactly its row."""
    for chosen, functions in ((ope.ITEM_ESTIMATORS, ope.ITEM_FUNCTIONS), (ope.SLATE_ESTIMATORS, ope.SLATE_FUNCTIONS)):
        assert set(chosen) == set(ope.ESTIMATORS) - {"all"}
        assert {e for names in chosen.values() for e in names} == set(functions)
    rng = np.random.default_rng(1)
    n, K = 60, 3
    items = rng.integers(0, 10, size=(n, K))
    rewards = rng.exponential(size=(n, K))
    marg = rng.uniform(0.2, 0.9, size=(n, K))
    pre = np.cumprod(marg, axis=1)
    for choice in ope.ITEM_ESTIMATORS:
        ev = ope.evaluate(rewards, items, marg, pre, items, marg, pre, clusters=np.arange(n) // 3, estimator=choice)
        assert [(r.level, r.estimator) for r in ev.results] == (
            [("item", e) for e in ope.ITEM_ESTIMATORS[choice]] + [("slate", e) for e in ope.SLATE_ESTIMATORS[choice]])


def test_compare_warns_about_support_and_sampled_targets():
    n, K = 20, 2
    items = np.tile(np.arange(K), (n, 1))
    logged = {"video": {"items": items, "logging_marginal": np.ones((n, K)), "logging_prefix": np.ones((n, K)),
                        "user_id": np.arange(n), "rewards": {"watch_s": np.ones((n, K))}}}
    other = {"items": items[:, ::-1].copy(), "marginal": np.zeros((n, K)), "prefix": np.zeros((n, K)),
             "sampled": np.ones(n, dtype=bool)}
    out = ope.compare(logged, {"other": {"video": other}}, {"video": ["watch_s"]}, estimator="ips")
    assert any("no support" in w and "100.0%" in w for w in out["warnings"])
    assert any("single-draw" in w for w in out["warnings"])
    ips = next(r for r in out["results"] if r["estimator"] == "ips")
    assert ips["support"] == 0 and {"no_support", "sampled_target"} <= set(ips["flags"])
    assert [d["level"] for d in out["logging"]] == ["item", "slate"]


# ----------------------------------------------------------------------------------------------
# Unbiasedness: contextual bandit
# ----------------------------------------------------------------------------------------------
def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def bandit(n=1000, seed=11, contextual=True):
    """3 contexts, 5 actions, softmax logging; Bernoulli rewards. Returns replicated logs [R, n]."""
    rng = np.random.default_rng(seed)
    C, A = 3, 5
    pi0 = softmax(rng.normal(size=(C, A)))
    pi_e = softmax(2.0 * rng.normal(size=(C, A)))
    mu = rng.uniform(0.1, 0.9, size=(C, A)) if contextual else np.tile(rng.uniform(0.1, 0.9, size=A), (C, 1))
    x = rng.integers(0, C, size=(R, n))
    a = (rng.random((R, n))[..., None] > np.cumsum(pi0, axis=1)[x]).sum(axis=-1)
    r = (rng.random((R, n)) < mu[x, a]).astype(float)
    return pi0, pi_e, mu, x, a, r


def test_ips_snips_unbiased_on_a_contextual_bandit():
    pi0, pi_e, mu, x, a, r = bandit()
    truth = np.mean(np.sum(pi_e * mu, axis=1))  # contexts are uniform
    ips = [ope.ips(r[i], pi0[x[i], a[i]], pi_e[x[i], a[i]]) for i in range(R)]
    snips = [ope.snips(r[i], pi0[x[i], a[i]], pi_e[x[i], a[i]]) for i in range(R)]
    unbiased([e.value for e in ips], truth)
    unbiased([e.value for e in snips], truth)
    # the normal-approximation SE matches the spread over replications, and CIs cover
    values = np.array([e.value for e in ips])
    assert np.mean([e.se for e in ips]) == pytest.approx(values.std(ddof=1), rel=0.15)
    covered = np.mean([e.ci[0] <= truth <= e.ci[1] for e in ips])
    assert 0.88 <= covered <= 0.99


def test_dm_unbiased_with_a_correct_model_and_dr_with_a_wrong_one():
    # DM: rewards depend on the action only, the model (per-action means, no shrinkage) is right
    pi0, pi_e, mu, x, a, r = bandit(contextual=False, seed=12)
    target = np.argmax(pi_e, axis=1)  # a deterministic target: its action per context
    truth = np.mean(mu[np.arange(3), target])
    dms = []
    for i in range(R):
        model = ope.fit_reward_model(a[i], np.zeros_like(a[i]), r[i], prior_strength=0.0)
        dms.append(ope.dm(ope.predict(model, target[x[i]], np.zeros_like(a[i]))).value)
    unbiased(dms, truth)
    # DR: rewards depend on the context, the context-free model is wrong; cross-fitting keeps it unbiased
    pi0, pi_e, mu, x, a, r = bandit(contextual=True, seed=13)
    target = np.argmax(pi_e, axis=1)
    truth = np.mean(mu[np.arange(3), target])
    drs, dms = [], []
    n = a.shape[1]
    folds = np.arange(n) % 2
    zeros = np.zeros(n, dtype=np.int64)
    for i in range(R):
        q_logged, q_target = ope.cross_fit(a[i], zeros, r[i], folds, [(a[i], zeros, folds), (target[x[i]], zeros, folds)])
        p_e = (a[i] == target[x[i]]).astype(float)
        drs.append(ope.dr(r[i], pi0[x[i], a[i]], p_e, q_logged, q_target).value)
        dms.append(ope.dm(q_target).value)
    unbiased(drs, truth)
    # DM alone is biased when its model is wrong
    assert abs(np.mean(dms) - truth) > 4 * np.std(dms, ddof=1) / np.sqrt(R)


# ----------------------------------------------------------------------------------------------
# Unbiasedness: slates (Plackett–Luce logging and target, 5 items, 3 positions, enumerated)
# ----------------------------------------------------------------------------------------------
N_ITEMS, K_POS = 5, 3
PERMS = np.array(list(itertools.permutations(range(N_ITEMS), K_POS)))  # [P, K]


def plackett_luce(w):
    """(P(perm) [P], marginals P(item at position) [N, K], prefix P(perm[:j+1]) [P, K])."""
    choice = np.empty(PERMS.shape)
    for p, perm in enumerate(PERMS):
        rest = w.sum()
        for j, item in enumerate(perm):
            choice[p, j] = w[item] / rest
            rest -= w[item]
    prefix = np.cumprod(choice, axis=1)
    prob = prefix[:, -1]
    marg = np.zeros((N_ITEMS, K_POS))
    for j in range(K_POS):
        np.add.at(marg[:, j], PERMS[:, j], prob)
    return prob, marg, prefix


THETA = np.array([0.7, 0.5, 0.35, 0.2, 0.1])  # item appeal
EXAMINE = np.array([1.0, 0.6, 0.35])  # position examination (independent model)


def expected_rewards(model):
    """E[r_j | slate] for every enumerated slate [P, K]."""
    theta = THETA[PERMS]
    if model == "independent":
        return theta * EXAMINE
    not_before = np.cumprod(np.concatenate([np.ones((len(PERMS), 1)), 1 - theta[:, :-1]], axis=1), axis=1)
    return theta * not_before  # cascade: the first click ends the scan


def slate_logs(model, seed, n=1000):
    rng = np.random.default_rng(seed)
    prob0, marg0, pre0 = plackett_luce(np.array([1.0, 2.0, 1.5, 3.0, 2.5]))
    prob_e, marg_e, pre_e = plackett_luce(np.array([6.0, 3.0, 1.5, 0.7, 0.3]))
    s = rng.choice(len(PERMS), size=(R, n), p=prob0)  # logged slates
    items = PERMS[s]  # [R, n, K]
    u = rng.random(items.shape)
    click = u < THETA[items] * (EXAMINE if model == "independent" else 1.0)
    if model == "cascade":
        click &= np.cumsum(click, axis=-1) == 1  # the scan ends at the first click
    pos = np.arange(K_POS)
    logs = {
        "items": items, "rewards": click.astype(float),
        "m0": marg0[items, pos], "me": marg_e[items, pos], "p0": pre0[s], "pe": pre_e[s],
        "target_slates": PERMS[rng.choice(len(PERMS), size=(R, n), p=prob_e)],
    }
    truth = float(prob_e @ expected_rewards(model).sum(axis=1))
    return logs, truth


@pytest.mark.parametrize("model", ["independent", "cascade"])
def test_slate_estimators_unbiased(model):
    logs, truth = slate_logs(model, seed=21 if model == "independent" else 23)
    g = {k: logs[k] for k in ("rewards", "m0", "me", "p0", "pe")}
    rips = [ope.reward_interaction_ips(g["rewards"][i], g["p0"][i], g["pe"][i]).value for i in range(R)]
    sips = [ope.standard_slate_ips(g["rewards"][i], g["p0"][i, :, -1], g["pe"][i, :, -1]).value for i in range(R)]
    iips = [ope.independent_ips(g["rewards"][i], g["m0"][i], g["me"][i]).value for i in range(R)]
    unbiased(rips, truth)  # cascade-style interactions are what RIPS allows
    unbiased([ope.reward_interaction_ips(g["rewards"][i], g["p0"][i], g["pe"][i], self_normalize=True).value
              for i in range(R)], truth)
    unbiased(sips, truth)  # any interaction
    if model == "independent":
        unbiased(iips, truth)
        sn = [ope.independent_ips(g["rewards"][i], g["m0"][i], g["me"][i], self_normalize=True).value for i in range(R)]
        unbiased(sn, truth)
        # position-wise DR with a cross-fitted (item × position) model; DM over the target's sampled slates
        n = g["rewards"].shape[1]
        pos = np.broadcast_to(np.arange(K_POS), (n, K_POS))
        folds = np.broadcast_to((np.arange(n) % 2)[:, None], (n, K_POS))
        drs, dms, sn_drs, sn_wrong = [], [], [], []
        for i in range(R):
            items, target = logs["items"][i], logs["target_slates"][i]
            q_l, q_t = ope.cross_fit(items.ravel(), pos.ravel(), g["rewards"][i].ravel(), folds.ravel(),
                                     [(items, pos, folds), (target, pos, folds)])
            drs.append(ope.slate_dr(g["rewards"][i], g["m0"][i], g["me"][i], q_l, q_t).value)
            dms.append(ope.slate_dm(q_t).value)
            # model-pdr's form: self-normalised per position, with the fitted model and with a wrong one
            # (a constant 0.5 everywhere: the weights alone must carry the value)
            sn_drs.append(ope.slate_dr(g["rewards"][i], g["m0"][i], g["me"][i], q_l, q_t, self_normalize=True).value)
            wrong = np.full(q_l.shape, 0.5)
            sn_wrong.append(ope.slate_dr(g["rewards"][i], g["m0"][i], g["me"][i], wrong, wrong, self_normalize=True).value)
        unbiased(drs, truth)
        unbiased(sn_drs, truth)
        unbiased(sn_wrong, truth)
        assert abs(np.mean(dms) - truth) < 0.05  # the (item × position) model is right here, up to shrinkage
    else:
        # the cascade breaks IIPS's assumption: its bias is far outside the replication noise
        se = np.std(iips, ddof=1) / np.sqrt(R)
        assert abs(np.mean(iips) - truth) > 4 * se
