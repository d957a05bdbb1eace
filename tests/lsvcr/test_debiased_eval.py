"""`lsvcr evaluate --protocol ips`: the estimator against a known truth, end to end on a simulated
world, and the clear error on a dataset without logged propensities."""
from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from lsvcr.metrics import ips_difference, ips_metrics, item_gain
from simulator import SimConfig, simulate

NAMES = ("recall@1", "recall@3", "dcg@3")


# ------------------------------------------------------------------------------------------
# (1) unbiased on a synthetic problem: Plackett–Luce logger, position-based clicks
# ------------------------------------------------------------------------------------------
def pl_marginals(w: np.ndarray, K: int) -> np.ndarray:
    """[n, K] exact P(item i at position j) under Plackett–Luce with weights w, by enumeration."""
    n = len(w)
    out = np.zeros((n, K))
    for perm in itertools.permutations(range(n), K):
        p, left = 1.0, w.sum()
        for a in perm:
            p *= w[a] / left
            left -= w[a]
        out[list(perm), np.arange(K)] += p
    return out


def test_ips_is_unbiased_for_the_full_information_metric_under_a_position_based_model():
    rng = np.random.default_rng(7)
    U, n, K, R = 300, 6, 4, 300  # requests, candidates, slate size, replications
    theta = 1.0 / (1.0 + np.arange(K))  # examination by position only
    logit = rng.normal(0, 1.0, (U, n))  # the logger's scores (popularity-like)
    rho = 1 / (1 + np.exp(-(0.8 * logit + rng.normal(0, 1.0, (U, n)) - 0.5)))  # relevance, correlated with the logger
    P = np.stack([pl_marginals(np.exp(l), K) for l in logit])  # [U, n, K]
    targets = {"logger's own order": logit, "oracle": rho, "anti-logger": -logit}  # scores, higher first
    rank = {k: np.argsort(np.argsort(-s, axis=1), axis=1) + 1 for k, s in targets.items()}  # [U, n] 1-based
    truth = {k: {m: float((rho * item_gain(m, r)).sum() / rho.sum()) for m in NAMES} for k, r in rank.items()}

    est = {k: {m: [] for m in NAMES} for k in targets}
    naive = {k: {m: [] for m in NAMES} for k in targets}
    unnorm = {k: [] for k in targets}  # sum c / P / sum(theta): unbiased for sum rho c, no ratio
    ses = []
    for _ in range(R):
        shown = np.argsort(-(logit + rng.gumbel(size=(U, n))), axis=1)[:, :K]  # [U, K] Gumbel top-K = PL
        r_shown = np.take_along_axis(rho, shown, 1)
        click = rng.random((U, K)) < theta * r_shown
        u, j = np.nonzero(click)
        item = shown[u, j]
        prop = P[u, item, j]
        for k in targets:
            rk = rank[k][u, item]
            m = ips_metrics(rk, prop, u, NAMES)
            m0 = ips_metrics(rk, np.ones_like(prop), u, NAMES)
            for name in NAMES:
                est[k][name].append(m[name])
                naive[k][name].append(m0[name])
            unnorm[k].append(float(np.sum(item_gain("recall@1", rk) / prop) / theta.sum()))
            if k == "oracle":
                ses.append(m["recall@3_se"])
    for k in targets:
        for name in NAMES:
            e = np.array(est[k][name]) - truth[k][name]
            assert abs(e.mean()) < 2 * e.std(ddof=1) / np.sqrt(R), (k, name, e.mean(), truth[k][name])
        exact = float((rho * item_gain("recall@1", rank[k])).sum())
        e = np.array(unnorm[k]) - exact
        assert abs(e.mean()) < 2 * e.std(ddof=1) / np.sqrt(R), (k, e.mean(), exact)
    # the naive average over logged positives favours the logger's own order and penalises its opposite
    b = np.mean(naive["logger's own order"]["recall@1"]) - truth["logger's own order"]["recall@1"]
    assert b > 0.05, b
    assert np.mean(naive["anti-logger"]["recall@1"]) < truth["anti-logger"]["recall@1"] - 0.02
    # the paired difference is the difference of the two estimates (same weights, same denominator)
    d = ips_difference(rank["oracle"][u, item], rank["anti-logger"][u, item], prop, u, NAMES)
    a, b = ips_metrics(rank["oracle"][u, item], prop, u, NAMES), ips_metrics(rank["anti-logger"][u, item], prop, u, NAMES)
    assert d["dcg@3"] == pytest.approx(a["dcg@3"] - b["dcg@3"]) and 0 < d["dcg@3_se"]
    # the reported standard error is the spread over replications
    sd = np.std(est["oracle"]["recall@3"], ddof=1)
    assert 0.8 < np.mean(ses) / sd < 1.25, (np.mean(ses), sd)


# ------------------------------------------------------------------------------------------
# (2) end to end: simulate --temperature 1, data build, evaluate --protocol ips
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def logged_world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ips")
    run = tmp / "run"
    simulate(SimConfig().replace(n_users=150, n_videos=200, days=1), run, "popularity", temperature=1.0)
    r = CliRunner().invoke(app, ["data", "build", str(run), "--out", str(tmp / "data")])
    assert r.exit_code == 0, r.output
    return run, tmp / "data"


def test_end_to_end_popularity_on_logged_slates(logged_world):
    _, data = logged_world
    r = CliRunner().invoke(app, ["evaluate", "--model", "popularity", "--data", str(data), "--protocol", "ips",
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)["tasks"]["comment"]
    assert res["requests"] > 0 and res["positives"] >= res["requests"]
    for m in ("recall@1", "recall@5", "recall@10", "dcg@5", "dcg@10"):
        assert np.isfinite(res[m]) and 0 <= res[m] <= 1 and res[m + "_se"] > 0, (m, res)

    # the same numbers from the dataset files by hand: popularity = photo.json comment_list order
    photos = json.loads((data / "photo.json").read_text())
    num = {m: 0.0 for m in ("recall@1", "dcg@10")}
    den = naive1 = npos = 0.0
    for line in (data / "comm_slates.test.json").read_text().splitlines():
        row = json.loads(line)
        order = {c: k for k, c in enumerate(photos[row["target_photo"]]["comment_list"])}
        ranked = sorted(row["candidates"], key=order.__getitem__)  # most liked first
        for c, p, pos in zip(row["shown"], row["propensities"], row["positives"]):
            if pos:
                rk = ranked.index(c) + 1
                num["recall@1"] += (rk == 1) / p
                num["dcg@10"] += (rk <= 10) / np.log2(rk + 1) / p
                den += 1 / p
                naive1 += rk == 1
                npos += 1
    assert res["recall@1"] == pytest.approx(num["recall@1"] / den)
    assert res["dcg@10"] == pytest.approx(num["dcg@10"] / den)
    assert res["naive"]["recall@1"] == pytest.approx(naive1 / npos)
    # the logger put the most liked comment first most of the time, so unweighted it looks far better
    # than it is; the weights take that back
    assert res["naive"]["recall@1"] > res["recall@1"] + res["naive"]["recall@1_se"]

    t = CliRunner().invoke(app, ["evaluate", "--model", "popularity", "--data", str(data), "--protocol", "ips"])
    assert t.exit_code == 0 and "IPS" in t.output and "naive" in t.output and "± " in t.output, t.output


# ------------------------------------------------------------------------------------------
# (3) no propensities: one line, exit 2
# ------------------------------------------------------------------------------------------
def test_dataset_without_logged_propensities_is_a_one_line_input_error(logged_world, tmp_path):
    run, _ = logged_world
    plain = tmp_path / "run"
    shutil.copytree(run, plain, ignore=shutil.ignore_patterns("feedback"))  # as a deterministic run writes
    r = CliRunner().invoke(app, ["data", "build", str(plain), "--out", str(tmp_path / "data")])
    assert r.exit_code == 0, r.output
    assert not list((tmp_path / "data").glob("comm_slates.*"))
    r = CliRunner().invoke(app, ["evaluate", "--model", "popularity", "--data", str(tmp_path / "data"),
                                 "--protocol", "ips"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "comm_slates.test.json" in lines[0] and "--temperature" in lines[0], r.output


# ------------------------------------------------------------------------------------------
# (slow) on a simulated world the debiased protocol ranks the truth oracle above ranking by likes
# ------------------------------------------------------------------------------------------
class TruthOracle:
    """Comments by the simulator's latent relevance for the user (simulator/behaviour.py terms)."""

    name = "oracle"

    def __init__(self, run, ds, split):
        import pyarrow.parquet as pq

        ct = pq.read_table(run / "truth" / "comment_truth.parquet").to_pandas().set_index("comment_id")
        self.users = pq.read_table(run / "truth" / "user_truth.parquet").to_pandas().set_index("user_id")
        cid = np.array([-1] + [int(x) for x in ds.comment_ids[1:]])
        t = ct.reindex(cid)
        self.quality = t["quality"].fillna(0).to_numpy()
        self.topic, self.style = t["topic"].fillna(0).astype(int).to_numpy(), t["style"].fillna(0).astype(int).to_numpy()
        self.split_users = ds.splits["comment"][split].users
        self.b = SimConfig().behaviour

    def comment(self, batch, cand):
        import torch

        c, b = cand.numpy(), self.b
        out = np.zeros(c.shape)
        for i, row in enumerate(batch.rows):
            u = self.users.loc[int(self.split_users[row])]
            taste, style = np.asarray(u["taste"]), np.asarray(u["style_taste"])
            topic_term = b.comment_topic_weight * (np.sqrt(len(taste) * taste) - 1.0)
            style_term = b.comment_style_weight * (np.sqrt(len(style) * style) - 1.0)
            out[i] = b.comment_quality_weight * self.quality[c[i]] + topic_term[self.topic[c[i]]] + style_term[self.style[c[i]]]
        return torch.from_numpy(out).float()


@pytest.mark.slow
def test_ips_ranks_the_truth_oracle_above_ranking_by_likes(tmp_path):
    from lsvcr.data.layout import read_dataset
    from lsvcr.evaluate import EvalConfig, Popularity, evaluate

    run = tmp_path / "run"
    simulate(SimConfig().replace(n_users=600, days=2), run, "popularity", temperature=1.0)
    r = CliRunner().invoke(app, ["data", "build", str(run), "--out", str(tmp_path / "data")])
    assert r.exit_code == 0, r.output
    ds = read_dataset(tmp_path / "data")
    ips = evaluate(TruthOracle(run, ds, "test"), ds, EvalConfig(protocol="ips"))["tasks"]["comment"]
    d = ips["minus_popularity"]
    assert d["dcg@10"] > 2 * d["dcg@10_se"], d  # the oracle beats likes, debiased
    full = {s.name: evaluate(s, ds, EvalConfig(protocol="full"), ("comment",))["tasks"]["comment"]["ndcg@10"]
            for s in (TruthOracle(run, ds, "test"), Popularity(ds))}
    print("full ndcg@10", full, "ips dcg@10 oracle - popularity", d["dcg@10"], "±", d["dcg@10_se"])
