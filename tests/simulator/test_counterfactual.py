"""Policies served on a feedback log (simulator.counterfactual): every request read back from the log as
the engine made it, policies run on them, off-policy estimates checked against the online truth, and
`lsvcr abtest offline` end to end."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from abtest.errors import InputError
from abtest.offline import ope
from abtest.offline.feedback import read_feedback
from cli import app
from simulator import SimConfig, simulate
from simulator.counterfactual import LoggedRequests, serve
from simulator.engine import REQUEST_ID_STRIDE, CommentStore
from simulator.explore import EpsilonGreedy, Softmax
from simulator.policy import PopularityPolicy, RandomPolicy
from simulator.run import execute, make_policy
from simulator.world import generate_world

CONFIG = SimConfig().replace(n_users=300, days=2, seed=7)
SURFACES = ("feed", "comments")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> Path:
    """A 300-user, 2-day run logged by ε-greedy popularity (ε = 0.2)."""
    out = tmp_path_factory.mktemp("counterfactual") / "explore"
    simulate(CONFIG, out, "popularity", explore=0.2)
    return out


@pytest.fixture(scope="module")
def log(logged_run):
    fb = read_feedback(logged_run)
    return fb, LoggedRequests(fb)


def run(log, policy, **kw):
    fb, requests = log
    return serve(requests, policy, seed=fb.meta["seed"], **kw)


# ----------------------------------------------------------------------------------------------
# Requests read back from the log
# ----------------------------------------------------------------------------------------------
class Recorder:
    """Serves the logging policy and keeps a copy of every request the engine makes."""

    def __init__(self, inner):
        self.inner, self.name, self.needs_truth = inner, inner.name, inner.needs_truth
        self.seen: dict[int, list] = {}

    def _keep(self, kind, r):
        h = r.history
        pop = (r.world.video_recent_plays[r.candidates] if kind == "feed"
               else r.world.comment_likes[r.candidates].astype(np.float64))
        self.seen.setdefault(r.user_id, []).append(
            (kind, r.ts, r.k, np.array(r.candidates), getattr(r, "video_id", None), list(h.video_ids),
             list(h.watch_fraction), [(v, list(c)) for v, c in h.comment_records], pop))

    def rank_videos(self, r):
        self._keep("feed", r)
        return self.inner.rank_videos(r)

    def rank_comments(self, r):
        self._keep("comments", r)
        return self.inner.rank_comments(r)


def test_every_request_reads_back_from_the_log_as_the_engine_made_it(tmp_path):
    """Candidates, histories (plays with their watch fractions, comment records) and the popularity the
    policy saw, for every request of a 2-day run, read from the feedback log alone."""
    config = SimConfig().replace(n_users=80, days=2, seed=9, log_slates=True)
    world = generate_world(config.world, config.seed)
    comments = CommentStore(world)
    recorder = Recorder(make_policy("popularity", world, comments, config, explore=0.3))
    execute(config, tmp_path / "run", world, comments, {recorder.name: recorder}, lambda u: recorder.name,
            manifest={"policy": recorder.name, "explore": 0.3, "temperature": None})
    fb = read_feedback(tmp_path / "run")
    requests = LoggedRequests(fb)
    n = 0
    for name in SURFACES:
        s = fb.surfaces[name]
        assert set(s.day.tolist()) == {0, 1}
        for i, rid in enumerate(s.request_id.tolist()):
            user, k = divmod(rid, REQUEST_ID_STRIDE)
            r_kind, ts, slate_k, cands, video, plays, fracs, records, pop = recorder.seen[user][k]
            req = requests.request(name, i)
            assert (r_kind, ts, slate_k, video) == (name, req.ts, req.k, getattr(req, "video_id", None))
            np.testing.assert_array_equal(req.candidates, cands)  # comment rows: the engine's store rows
            assert req.history.video_ids == plays
            np.testing.assert_allclose(req.history.watch_fraction, fracs, rtol=1e-12)
            assert req.history.comment_records == records
            np.testing.assert_array_equal(req.features["popularity"], pop)
            n += 1
    assert n == sum(len(v) for v in recorder.seen.values())


def test_base_policy_reproduces_every_unexplored_slate(log):
    fb, _ = log
    target = run(log, PopularityPolicy())
    for name in SURFACES:
        s, t = fb.surfaces[name], target[name]
        shown = s.items >= 0
        unexplored = np.all(np.where(shown, s.marginal > 0.5, True), axis=1)
        assert 0.7 < unexplored.mean() < 0.9 and np.any(s.day[unexplored] == 1)
        same = np.all(t.items == s.items, axis=1)
        assert same[unexplored].mean() > 0.95
        # the rest differ only in the order of equal scores at the slate's edge: policy.top_k and
        # EpsilonGreedy break such ties differently
        for i in np.flatnonzero(unexplored & ~same):
            m = shown[i]
            np.testing.assert_array_equal(np.sort(s.candidate_feature("popularity", s.items[i:i + 1])[0][m]),
                                          np.sort(s.candidate_feature("popularity", t.items[i:i + 1])[0][m]))
        # a deterministic target: its probabilities of the logged items are indicators
        np.testing.assert_array_equal(t.marginal[unexplored & same][shown[unexplored & same]], 1.0)
        assert not t.sampled.any()


def test_the_logging_policy_on_its_own_streams_reproduces_every_slate(log):
    fb, _ = log
    target = run(log, EpsilonGreedy(PopularityPolicy(), 0.2), same_streams=True)
    for name in SURFACES:
        s, t = fb.surfaces[name], target[name]
        np.testing.assert_array_equal(t.items, s.items)  # exploration draws included
        shown = s.items >= 0
        np.testing.assert_array_equal(t.marginal[shown], s.marginal[shown])
        np.testing.assert_array_equal(t.prefix[shown], s.prefix[shown])


def test_softmax_logging_is_served_exactly(tmp_path):
    config = SimConfig().replace(n_users=6, days=1, seed=4, n_videos=200, comments_max=30)
    simulate(config, tmp_path / "softmax", "popularity", temperature=20.0)
    fb = read_feedback(tmp_path / "softmax")
    target = serve(LoggedRequests(fb), Softmax(PopularityPolicy(), 20.0), seed=fb.meta["seed"], same_streams=True)
    for name in SURFACES:
        s, t = fb.surfaces[name], target[name]
        shown = s.items >= 0
        np.testing.assert_array_equal(t.items, s.items)
        np.testing.assert_allclose(t.marginal[shown], s.marginal[shown], rtol=1e-12)
        np.testing.assert_allclose(t.prefix[shown], s.prefix[shown], rtol=1e-12)


class Batched:
    """Popularity served in batches, as model policies are."""

    name, needs_truth = "batched", False

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def rank_videos(self, r):
        raise AssertionError("serve must use the batch method")

    rank_comments = rank_videos

    def rank_videos_batch(self, requests):
        self.calls.append(len(requests))
        return [self.inner.rank_videos(r) for r in requests]

    def rank_comments_batch(self, requests):
        self.calls.append(len(requests))
        return [self.inner.rank_comments(r) for r in requests]


def test_batching_policies_are_served_in_batches(log):
    fb, _ = log
    batched = Batched(PopularityPolicy())
    got = run(log, batched, batch_size=500)
    want = run(log, PopularityPolicy())
    assert sum(batched.calls) == sum(len(s) for s in fb.surfaces.values())
    assert max(batched.calls) <= 500 and len(batched.calls) < sum(batched.calls) / 100
    for name in SURFACES:
        np.testing.assert_array_equal(got[name].items, want[name].items)
        np.testing.assert_array_equal(got[name].marginal, want[name].marginal)


# ----------------------------------------------------------------------------------------------
# Off-policy estimates on the served targets
# ----------------------------------------------------------------------------------------------
def test_weights_average_one_and_the_logging_policy_estimates_its_own_value(log):
    fb, _ = log
    own = run(log, EpsilonGreedy(PopularityPolicy(), 0.2))  # its own stream: different draws, exact probabilities
    for name in SURFACES:
        s, t = fb.surfaces[name], own[name]
        shown = s.items >= 0
        np.testing.assert_allclose(t.marginal[shown], s.marginal[shown])
        metric = "watch_s" if name == "feed" else "read_s"
        ev = ope.evaluate(s.rewards[metric], s.items, s.marginal, np.where(shown, s.prefix, 1.0), t.items,
                          t.marginal, t.prefix, clusters=s.user, estimator="ips")
        for r in ev.results:
            assert r.estimate.value == pytest.approx(ev.logging[r.level].value)
    # E_π0[π_e / π_0] = 1 for any target the logging policy supports
    for policy in (PopularityPolicy(), RandomPolicy()):
        target = run(log, policy)
        for name in SURFACES:
            s, t = fb.surfaces[name], target[name]
            w = ope.ips(np.ones(len(s.items)), s.marginal[:, 0], t.marginal[:, 0], clusters=s.user)
            assert w.ci[0] < 1.0 < w.ci[1] and w.support == 1.0, (policy.name, name, w)


def online_video_values(run: Path) -> tuple[float, float]:
    """Per video request: watch seconds of the top video, and over the whole slate."""
    e = pq.read_table(run / "events.parquet", columns=["event", "position", "value", "request_id"]).to_pandas()
    event = e["event"].astype(str)
    n = e.loc[event == "impression", "request_id"].nunique()
    plays = e[event == "play"]
    return plays.loc[plays["position"] == 0, "value"].sum() / n, plays["value"].sum() / n


def test_random_policy_estimates_cover_its_online_value(log, tmp_path):
    """The random policy simulated online on the same world and seed: its per-request video value is
    inside the offline CIs (the estimand differs slightly: logged sessions, not random ones)."""
    fb, _ = log
    simulate(CONFIG, tmp_path / "random", "random")
    item, slate = online_video_values(tmp_path / "random")
    target = run(log, RandomPolicy())["feed"]
    s = fb.surfaces["feed"]
    ev = ope.evaluate(s.rewards["watch_s"], s.items, s.marginal, np.where(s.items >= 0, s.prefix, 1.0), target.items,
                      target.marginal, target.prefix, clusters=s.user)
    truth = {"item": item, "slate": slate}
    for r in ev.results:
        if r.estimator in ("ips", "snips", "dr", "iips", "rips", "sips", "sn-iips", "sn-rips"):
            assert r.estimate.ci[0] < truth[r.level] < r.estimate.ci[1], r
    assert ev.logging["slate"].value > slate  # the logging policy is better than random ...
    assert all(r.lift.abs_ci[1] < 0 for r in ev.results)  # ... and every estimator says so


def test_unusable_logs_are_input_errors(tmp_path, logged_run):
    simulate(SimConfig().replace(n_users=20, days=1, seed=1), tmp_path / "plain", "popularity")
    with pytest.raises(InputError, match="--temperature T or --explore EPS"):
        read_feedback(tmp_path / "plain")
    with pytest.raises(InputError, match="no such file or directory"):
        read_feedback(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------
# lsvcr abtest offline
# ----------------------------------------------------------------------------------------------
runner = CliRunner()


def offline(*args):
    return runner.invoke(app, ["abtest", "offline", *map(str, args)])


@pytest.fixture(scope="module")
def tempered_run(tmp_path_factory) -> Path:
    """120 users, 1 day, logged by popularity sampled as a Plackett–Luce ranking (T = 1)."""
    out = tmp_path_factory.mktemp("counterfactual") / "tempered"
    simulate(SimConfig().replace(n_users=120, n_videos=300, days=1, seed=5), out, "popularity", temperature=1.0)
    return out


def test_offline_prediction_of_the_logging_policy_is_its_logged_per_user_value(tempered_run, tmp_path):
    """The logging policy replayed as control has cascade weights exactly 1: its cascade-IPS value per
    user-day is the event log's own total over all user-days (read with pyarrow, not through replay)."""
    r = offline("--logs", tempered_run, "--control", "popularity@1", "--treatment", "oracle", "--format", "json",
                "--estimator", "cascade-ips", "--out", tmp_path / "ab.json")
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "ab.json").read_text())
    assert out["unit"] == "user-day" and out["n_units"] == 120
    assert [m["name"] for m in out["metrics"]] == ["comment_watch_time", "video_watch_time", "sessions"]
    events = pq.read_table(tempered_run / "events.parquet").to_pandas()
    by = {m["name"]: m for m in out["metrics"]}
    for name, event in (("comment_watch_time", "comment_read"), ("video_watch_time", "play")):
        m = by[name]
        assert m["control_mean"] == pytest.approx(events.loc[events.event == event, "value"].sum() / 120, rel=1e-9)
        # weights 1 everywhere: the ESS is the number of requests (the smaller kind for comment watch
        # time, which is valued on video requests and on comment requests)
        n = min(out["requests"].values()) if name == "comment_watch_time" else m["n_requests"]
        assert m["control"]["support"] == 1.0 and m["control"]["ess"] == pytest.approx(n)
        assert {"name", "variant", "rel_effect", "rel_ci", "abs_effect", "abs_ci", "p_value"} <= set(m)
        assert m["rel_ci"][0] <= m["rel_effect"] <= m["rel_ci"][1]
    # the session model predicts sessions (the logging policy's figures are its own: multiplier 1)
    sessions = by["sessions"]
    assert sessions["rel_ci"][0] <= sessions["rel_effect"] <= sessions["rel_ci"][1]
    assert "session_model" in sessions["flags"]
    assert sessions["sessions"]["control"]["impression_multiplier"] == pytest.approx(1.0, rel=1e-9)
    # holding the logged sessions fixed: the per-request quantity, with sessions not identified
    r = offline("--logs", tempered_run, "--control", "popularity@1", "--treatment", "oracle", "--format", "json",
                "--estimator", "cascade-ips", "--hold-sessions")
    assert r.exit_code == 0, r.output
    held = {m["name"]: m for m in json.loads(r.stdout)["metrics"]}
    assert held["sessions"]["rel_effect"] is None and held["sessions"]["flags"] == ["not_identified"]
    assert held["comment_watch_time"]["control_mean"] == pytest.approx(by["comment_watch_time"]["control_mean"], rel=1e-9)
    assert any("sessions: not identified" in w for w in json.loads(r.stdout)["warnings"])


def test_offline_prediction_of_a_policy_against_itself_is_exactly_zero(tempered_run):
    r = offline("--logs", tempered_run, "--control", "oracle@0.5", "--treatment", "oracle@0.5",
                "--metric", "comment_watch_time", "--metric", "plays", "--format", "json")
    assert r.exit_code == 0, r.output
    for m in json.loads(r.stdout)["metrics"]:
        assert m["rel_effect"] == 0.0 and m["rel_ci"] == [0.0, 0.0] and m["abs_effect"] == 0.0


def test_offline_detail_and_table(tempered_run):
    r = offline("--logs", tempered_run, "--control", "popularity", "--treatment", "oracle@1", "--estimator",
                "cascade-ips", "--metric", "comment_watch_time", "--detail", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["estimator"] == "cascade-ips" and [m["name"] for m in out["metrics"]] == ["comment_watch_time"]
    detail = out["detail"]
    assert {(d["kind"], d["metric"]) for d in detail["logging"]} == {("comment", "read_s")}
    assert {x["policy"] for x in detail["results"]} == {"control", "treatment"}
    r = offline("--logs", tempered_run, "--control", "popularity", "--treatment", "oracle", "--metric", "plays")
    assert r.exit_code == 0, r.output
    assert "offline A/B prediction" in r.stdout and "plays" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--control", "magic", "--treatment", "random"], "unknown policy spec"),
    (["--control", "oracle@hot", "--treatment", "random"], "temperature after @"),
    (["--control", "popularity", "--treatment", "random@1"], "unknown policy spec"),
    (["--control", "random", "--treatment", "oracle", "--estimator", "magic"], "--estimator"),
    (["--control", "random", "--treatment", "oracle", "--format", "xml"], "--format"),
    (["--control", "random", "--treatment", "oracle", "--metric", "clicks"], "--metric"),
])
def test_offline_bad_options_exit_2(logged_run, args, message):
    r = offline("--logs", logged_run, *args)
    assert r.exit_code == 2 and message in r.output, r.output


def test_offline_bad_logs_exit_2(tmp_path):
    simulate(SimConfig().replace(n_users=20, days=1, seed=1), tmp_path / "plain", "popularity")
    r = offline("--logs", tmp_path / "plain", "--control", "random", "--treatment", "popularity")
    assert r.exit_code == 2 and "--temperature T or --explore EPS" in r.output, r.output
    r = offline("--logs", tmp_path / "missing", "--control", "random", "--treatment", "popularity")
    assert r.exit_code == 2 and "no such file or directory" in r.output, r.output


def test_offline_flags_no_support(tmp_path):
    """Slates logged by the deterministic popularity policy: the oracle's other choices are unsupported,
    and the prediction says so instead of printing a silent number."""
    simulate(SimConfig().replace(n_users=40, days=1, seed=2, log_slates=True), tmp_path / "greedy", "popularity")
    r = offline("--logs", tmp_path / "greedy", "--control", "popularity", "--treatment", "oracle",
                "--estimator", "cascade-ips", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    comment = out["metrics"][0]
    assert "no_support" in comment["flags"] and comment["treatment"]["support"] < 0.5
    assert comment["control"]["support"] == 1.0  # the logging policy itself
    assert any("no support" in w and "treatment" in w for w in out["warnings"])


def test_the_feedback_alone_gives_the_same_prediction(tempered_run, tmp_path):
    """The run's feedback/ copied alone (no event log, manifest, world files or truth): every policy a
    team's logs can carry gives the same prediction, to the byte."""
    shutil.copytree(tempered_run / "feedback", tmp_path / "logs")
    for control, treatment in (("popularity@1", "random"), ("logged", "popularity")):
        outs = []
        for logs in (tempered_run, tmp_path / "logs"):
            r = offline("--logs", logs, "--control", control, "--treatment", treatment, "--format", "json",
                        "--bootstrap", "4")
            assert r.exit_code == 0, r.output
            outs.append({k: v for k, v in json.loads(r.stdout).items() if k != "logs"})
        assert outs[0] == outs[1]
    r = offline("--logs", tmp_path / "logs", "--control", "popularity", "--treatment", "oracle")
    assert r.exit_code == 2 and "latent truth" in r.stderr  # the oracle is simulator-only
