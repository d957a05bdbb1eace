"""A team's own logs in the feedback format (abtest.offline.feedback): a hand-built log with a known
click model, the ``table:`` and ``scores:`` policies on it, and every bad log refused in one line.

The world: 10 items, 3 positions, a position-based click model P(click) = θ_item κ_position, logged by a
uniformly random ranking (marginal 1/10 at every position), no users (each request is a unit)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import pipeline
from abtest.errors import InputError
from abtest.offline.feedback import read_feedback, write_feedback
from cli import app

N_ITEMS, K = 10, 3
THETA = np.linspace(0.05, 0.5, N_ITEMS)
KAPPA = np.array([1.0, 0.6, 0.3])
runner = CliRunner()


def target_table() -> list[tuple[int, int, float]]:
    """A target that favours good items, more so at the top: per position a softmax over θ."""
    rows = []
    for k in range(K):
        w = np.exp(THETA * (8 - 2 * k) / THETA.std())
        rows += [(i, k, float(p)) for i, p in enumerate(w / w.sum())]
    return rows


def enumerated_value(rows) -> float:
    """Σ_position Σ_item π(item at position) θ_item κ_position: the target's expected clicks per request."""
    return float(sum(p * THETA[i] * KAPPA[k] for i, k, p in rows))


def write_table(path: Path, rows, request_ids=None) -> Path:
    cols = {"item_id": [i for i, _, _ in rows], "position": [k for _, k, _ in rows], "probability": [p for _, _, p in rows]}
    if request_ids is not None:
        cols = {"request_id": request_ids, **cols}
    pq.write_table(pa.table(cols), path)
    return path


def tables(rng, n: int):
    """(requests, impressions, outcomes) of n uniformly random rankings with clicks from the model."""
    shown = np.stack([rng.permutation(N_ITEMS)[:K] for _ in range(n)])
    clicks = rng.random((n, K)) < THETA[shown] * KAPPA
    rid = np.arange(n, dtype=np.int64)
    requests = pa.table({"request_id": rid, "ts": rid * 10.0, "surface": ["feed"] * n,
                         "candidates": pa.array([list(range(N_ITEMS))] * n, pa.list_(pa.int64()))})
    prefix = np.cumprod(1.0 / (N_ITEMS - np.arange(K)))
    impressions = pa.table({"request_id": np.repeat(rid, K), "position": np.tile(np.arange(K), n),
                            "item_id": shown.ravel(), "propensity": np.full(n * K, 1.0 / N_ITEMS),
                            "prefix_propensity": np.tile(prefix, n)})
    outcomes = pa.table({"request_id": np.repeat(rid, K), "item_id": shown.ravel(), "click": clicks.ravel().astype(float)})
    return requests, impressions, outcomes


def write_log(out: Path, rng, n: int) -> Path:
    write_feedback(out, *tables(rng, n), {"logging_policy": "uniform"})
    return out


def test_estimates_on_a_foreign_log_are_unbiased_for_the_enumerated_truth(tmp_path):
    """100 logs of 400 requests: each estimator's mean over the logs is within 2 standard errors (of that
    mean) of the enumerated truth, for the table target and for the logging policy itself."""
    rows = target_table()
    table = write_table(tmp_path / "target.parquet", rows)
    truth = enumerated_value(rows)
    uniform = float(THETA.mean() * KAPPA.sum())
    rng = np.random.default_rng(30)
    est = {e: [] for e in ("ips", "snips", "dr")}
    logged = []
    for r in range(100):
        logs = write_log(tmp_path / f"logs{r}", rng, 400)
        for e in est:
            m = pipeline.offline_prediction(logs, "logged", f"table:{table}", metrics=["click"], estimator=e,
                                            hold_sessions=True, bootstrap=0).metrics[0]
            est[e].append(m["treatment_mean"])
        logged.append(m["control_mean"])
    for e, values in est.items():
        values = np.asarray(values)
        se = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 2 * se, (e, values.mean(), truth, se)
    logged = np.asarray(logged)
    assert abs(logged.mean() - uniform) < 2 * logged.std(ddof=1) / np.sqrt(len(logged))


def test_the_cli_json_and_units_of_a_log_without_users(tmp_path):
    logs = write_log(tmp_path / "logs", np.random.default_rng(1), 300)
    table = write_table(tmp_path / "t.parquet", target_table())
    r = runner.invoke(app, ["abtest", "offline", "--logs", str(logs), "--control", "logged", "--treatment",
                            f"table:{table}", "--metric", "click", "--estimator", "snips", "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["unit"] == "request" and out["n_units"] == 300 and out["logging_policy"] == "uniform"
    (m,) = out["metrics"]
    clicks = pq.read_table(logs / "outcomes.parquet").column("click").to_numpy()
    assert m["name"] == "click" and m["control_mean"] == pytest.approx(clicks.sum() / 300, rel=1e-12)
    assert m["rel_ci"][0] < m["rel_effect"] < m["rel_ci"][1]
    # every reward column by default; a prefix estimator refuses a target without prefix probabilities
    r = runner.invoke(app, ["abtest", "offline", "--logs", str(logs), "--control", "logged", "--treatment",
                            f"table:{table}", "--estimator", "cascade-ips"])
    assert r.exit_code == 2 and "whole prefixes" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_deterministic_scores_equal_the_same_ranking_as_a_table(tmp_path):
    """scores:FILE ranks each request's candidates by score: with θ as the score, the best three items in
    order; the same policy written as a table of 0/1 probabilities gives the same IPS estimate."""
    logs = write_log(tmp_path / "logs", np.random.default_rng(2), 500)
    fb = read_feedback(logs)
    s = fb.surfaces["feed"]
    request = np.repeat(s.request_id, np.diff(s.cand_off))
    pq.write_table(pa.table({"request_id": request, "item_id": s.cand_flat, "score": THETA[s.cand_flat]}),
                   tmp_path / "scores.parquet")
    best = np.argsort(-THETA)[:K]
    table = write_table(tmp_path / "t.parquet", [(int(i), k, 1.0) for k, i in enumerate(best)])
    a = pipeline.offline_prediction(logs, "logged", f"scores:{tmp_path / 'scores.parquet'}", metrics=["click"],
                                    estimator="ips", hold_sessions=True, bootstrap=0).metrics[0]
    b = pipeline.offline_prediction(logs, "logged", f"table:{table}", metrics=["click"], estimator="ips",
                                    hold_sessions=True, bootstrap=0).metrics[0]
    assert a["treatment_mean"] == pytest.approx(b["treatment_mean"], rel=1e-12) and a["treatment_mean"] > 0
    # sampled at a temperature the scores give a stochastic policy with exact probabilities
    c = pipeline.offline_prediction(logs, "logged", f"scores:{tmp_path / 'scores.parquet'}@0.5", metrics=["click"],
                                    estimator="ips", hold_sessions=True, bootstrap=0).metrics[0]
    assert b["control_mean"] < c["treatment_mean"] < b["treatment_mean"]


def spoil_impressions(d: Path, **changes):
    t = pq.read_table(d / "impressions.parquet").to_pydict()
    for col, (row, value) in changes.items():
        t.setdefault(col, [None] * len(t["request_id"]))[row] = value
    pq.write_table(pa.table(t), d / "impressions.parquet")


BAD_LOGS = {
    "missing propensity": (lambda d: spoil_impressions(d, propensity=(4, None)), "propensity is missing or not finite"),
    "non-finite propensity": (lambda d: spoil_impressions(d, propensity=(4, float("nan"))), "propensity is missing or not finite"),
    "propensity outside (0, 1]": (lambda d: spoil_impressions(d, propensity=(4, 1.5)), "is outside (0, 1]"),
    "zero propensity": (lambda d: spoil_impressions(d, propensity=(4, 0.0)), "is outside (0, 1]"),
    "duplicate (request, position)": (lambda d: spoil_impressions(d, position=(1, 0)), "position 0 is logged more than once"),
    "outcome on an unshown item": (
        lambda d: pq.write_table(pa.concat_tables([pq.read_table(d / "outcomes.parquet"), pa.table(
            {"request_id": [0], "item_id": [int(np.setdiff1d(np.arange(N_ITEMS), pq.read_table(
                d / "impressions.parquet").filter(pa.compute.equal(pa.compute.field("request_id"), 0)).column(
                "item_id").to_numpy())[0])], "click": [1.0]})]), d / "outcomes.parquet"),
        "which that request did not show"),
    "shown item not a candidate": (lambda d: spoil_impressions(d, item_id=(2, 99)), "not among its candidates"),
    "missing column": (lambda d: pq.write_table(pq.read_table(d / "requests.parquet").drop(["candidates"]),
                                                d / "requests.parquet"), "no column 'candidates'"),
    "unknown surface": (lambda d: pq.write_table(pq.read_table(d / "requests.parquet").set_column(
        2, "surface", pa.array(["homepage"] * 50)), d / "requests.parquet"), "'homepage' is neither"),
    "corrupt file": (lambda d: (d / "outcomes.parquet").write_bytes(b"not parquet"), "outcomes.parquet: cannot read"),
    "not a feedback log": (lambda d: (d / "meta.json").write_text('{"format": "other"}'), "not a feedback log"),
}


@pytest.mark.parametrize("name", list(BAD_LOGS))
def test_each_bad_log_is_one_line_and_exit_2(tmp_path, name):
    spoil, message = BAD_LOGS[name]
    logs = write_log(tmp_path / "logs", np.random.default_rng(3), 50)
    spoil(logs)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_feedback(logs)
    r = runner.invoke(app, ["abtest", "offline", "--logs", str(logs), "--control", "logged", "--treatment", "random"])
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and message in r.stderr, r.output


@pytest.mark.parametrize("rows, message", [
    ([(0, 0, 0.7), (1, 0, 0.6)], "the probabilities of position 0 sum to 1.3, past 1"),
    ([(0, 0, -0.1)], "is outside [0, 1]"),
    ([(0, 0, 0.5), (0, 0, 0.5)], "is listed twice"),
])
def test_bad_tables_are_one_line(tmp_path, rows, message):
    logs = write_log(tmp_path / "logs", np.random.default_rng(4), 20)
    table = write_table(tmp_path / "t.parquet", rows)
    r = runner.invoke(app, ["abtest", "offline", "--logs", str(logs), "--control", "logged", "--treatment",
                            f"table:{table}", "--estimator", "ips"])
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output


def test_a_metric_the_logs_do_not_carry_is_one_line(tmp_path):
    logs = write_log(tmp_path / "logs", np.random.default_rng(5), 20)
    r = runner.invoke(app, ["abtest", "offline", "--logs", str(logs), "--control", "logged", "--treatment", "random",
                            "--metric", "watch_s"])
    assert r.exit_code == 2 and "not a metric of these logs (their rewards: feed.click)" in r.stderr
