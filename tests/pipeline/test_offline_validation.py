"""The offline prediction validated against the online A/B on the simulator, where the truth is known
(the small version of bench/ope_validation.py): one logging run, one pair, both routes."""
from __future__ import annotations

import json

import pytest

import pipeline
from abtest.render import to_json
from abtest.report import ReportConfig, build_report
from simulator import SimConfig, simulate

USERS = 200


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("validation") / "world"
    simulate(SimConfig().replace(n_users=USERS, n_videos=400, days=1, seed=11), out, "popularity", temperature=1.0)
    return out


def online_lift(world, tmp_path, control, treatment):
    pipeline.run_ab(world, tmp_path / "ab", control, treatment, users=USERS, pre_days=1, days=1, seed=12)
    report = json.loads(to_json(build_report(tmp_path / "ab", ReportConfig())))
    rows = [m for m in report["metrics"] if m["name"] == "comment_watch_time" and m["variant"] == "treatment"]
    return next((m for m in rows if m.get("cuped")), rows[0])


@pytest.mark.parametrize("control, treatment", [("random", "popularity"), ("popularity", "popularity@1")])
def test_offline_prediction_covers_the_online_lift(world, tmp_path, control, treatment):
    """The online A/B's lift of comment watch time per user is large and significant; the default
    offline prediction (the cascade model with position-wise weights, the session model) has its sign
    and its interval covers the online point."""
    online = online_lift(world, tmp_path, control, treatment)
    assert online["p_value"] < 0.05 and abs(online["rel_effect"]) > 0.3, online
    offline = pipeline.offline_prediction(world, control, treatment, metrics=["comment_watch_time"]).as_dict()
    (m,) = offline["metrics"]
    assert offline["estimator"] == pipeline.DEFAULT_OFFLINE_ESTIMATOR == "model-pcm" and "session_model" in m["flags"]
    lo, hi = m["rel_ci"]
    assert (m["rel_effect"] > 0) == (online["rel_effect"] > 0)
    assert lo <= online["rel_effect"] <= hi
