"""The behaviour model's pieces: configuration, relevance, world generation, and that the engine's
events come from behaviour.py's functions (each test runs the engine's own code on a tiny world)."""
import math

import numpy as np
import pytest

from simulator import InputError, SimConfig, WorldConfig
from simulator import behaviour, engine
from simulator.behaviour import comment_relevance, relevance_terms, relevances
from simulator.engine import CommentStore, Platform
from simulator.eventlog import COLUMNS
from simulator.policy import PopularityPolicy
from simulator.schema import Event
from simulator.world import generate_world

EVENT, VALUE, VIDEO = COLUMNS.index("event"), COLUMNS.index("value"), COLUMNS.index("video_id")
SESSION = COLUMNS.index("session_id")


def platform_rows(n_users: int = 40, seed: int = 0) -> tuple[list[tuple], Platform]:
    """The engine's raw event rows (append order) for a tiny one-day run with the popularity policy."""
    cfg = SimConfig().replace(n_users=n_users, n_videos=80, days=1, seed=seed)
    world = generate_world(cfg.world, cfg.seed)
    platform = Platform(world, cfg, {"control": PopularityPolicy()}, lambda user: "control", np.arange(n_users))
    platform.run()
    return platform.rows, platform


def of(rows, event: Event) -> list[tuple]:
    return [r for r in rows if r[EVENT] == event]


def recording(monkeypatch, name: str, replace=None) -> list:
    """Route the engine's calls of ``behaviour.<name>`` through a recorder (optionally replacing it)."""
    calls = []
    real = getattr(behaviour, name)

    def wrapper(*args):
        out = (replace or real)(*args)
        calls.append((args, out))
        return out

    monkeypatch.setattr(engine, name, wrapper)
    return calls


def test_engine_relevance_equals_behaviour_relevance():
    """The scalar relevances the engine computes per slate and the oracle's vectorised formula agree."""
    cfg = SimConfig()
    b = cfg.behaviour
    world = generate_world(WorldConfig(n_users=5, n_videos=50), seed=0)
    store = CommentStore(world)
    taste, style = world.taste[3], world.style_taste[3]
    rows = np.arange(len(store.ids))
    scalar = relevances(b, relevance_terms(b, taste, style), rows.tolist(), store.topic_list, store.style_list,
                        store.quality_list)
    vector = comment_relevance(b, taste, style, store.topic[rows], store.style[rows], store.quality[rows])
    np.testing.assert_allclose(scalar, vector, rtol=1e-12)


def test_engine_plays_and_reads_with_behaviours_probabilities(monkeypatch):
    """Every impression asks behaviour.p_play and every comment impression behaviour.p_read; the realised
    counts match the sums of those probabilities (Bernoulli draws), and the logged watch / read seconds
    are exactly behaviour.watch_fraction × duration and behaviour.read_seconds."""
    plays_p = recording(monkeypatch, "p_play")
    reads_p = recording(monkeypatch, "p_read")
    fractions = recording(monkeypatch, "watch_fraction")
    read_s = recording(monkeypatch, "read_seconds")
    rows, platform = platform_rows()
    impressions, plays = of(rows, Event.impression), of(rows, Event.play)
    assert len(plays_p) == len(impressions) > 1000
    assert len(reads_p) == len(of(rows, Event.comment_impression)) > 300
    for calls, n in ((plays_p, len(plays)), (reads_p, len(of(rows, Event.comment_read)))):
        p = np.array([out for _, out in calls])
        assert abs(n - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum())
    duration = platform.world.duration_s
    assert len(fractions) == len(plays)
    assert [r[VALUE] for r in plays] == [duration[r[VIDEO]] * f for r, (_, f) in zip(plays, fractions)]
    assert [r[VALUE] for r in of(rows, Event.comment_read)] == [s for _, s in read_s]


def test_changing_a_behaviour_function_changes_the_engine(monkeypatch):
    """The engine has no copy of the formulas: replacing them in behaviour's place changes its events."""
    monkeypatch.setattr(engine, "p_continue", lambda b, r, read: 0.0)  # stop after the first comment
    monkeypatch.setattr(engine, "p_like", lambda b, r: 1.0)  # like every comment read
    rows, _ = platform_rows()
    opens, shown = of(rows, Event.comment_open), of(rows, Event.comment_impression)
    assert len(opens) == len(shown) > 20
    assert len(of(rows, Event.comment_like)) == len(of(rows, Event.comment_read)) > 0


def test_temper_runs_out_after_as_many_skips_as_it_holds(monkeypatch):
    """With a temper of 3 and nothing played, every session is exactly 3 impressions and no plays."""
    monkeypatch.setattr(engine, "initial_temper", lambda patience, z: 3.0)
    monkeypatch.setattr(engine, "p_play", lambda b, x, seen, pos: 0.0)
    rows, _ = platform_rows(n_users=20)
    starts = of(rows, Event.session_start)
    assert len(starts) > 10 and not of(rows, Event.play)
    per_session = np.unique([r[SESSION] for r in of(rows, Event.impression)], return_counts=True)[1]
    assert len(per_session) == len(starts) and set(per_session.tolist()) == {3}


def test_world_has_real_text_and_valid_truth():
    w = generate_world(WorldConfig(n_users=20, n_videos=40), seed=1)
    assert all(len(t.split()) >= 3 for t in w.titles)
    np.testing.assert_allclose(w.video_topics.sum(axis=1), 1.0)
    np.testing.assert_allclose(w.taste.sum(axis=1), 1.0)
    assert (w.comment_likes >= 0).all() and len(w.comment_text) == len(w.comment_video)
    # likes follow the crowd: higher-quality comments collect more likes on average
    q = w.comment_quality
    assert w.comment_likes[q > 1].mean() > w.comment_likes[q < -1].mean()
    assert w.duration_s.min() >= 5.0 and w.duration_s.max() <= 300.0


def test_toml_overrides_and_validation(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[run]\ndays = 3\n[world]\nn_users = 12\n[behaviour]\nopen_intercept = -1\n")
    cfg = SimConfig.from_toml(path)
    assert (cfg.days, cfg.world.n_users, cfg.behaviour.open_intercept) == (3, 12, -1.0)
    path.write_text("[world]\nn_userz = 12\n")
    with pytest.raises(InputError, match="n_userz"):
        SimConfig.from_toml(path)
    path.write_text("[world\n")
    with pytest.raises(InputError, match="malformed"):
        SimConfig.from_toml(path)
    with pytest.raises(InputError, match="n_videos"):
        SimConfig().replace(n_videos=-5)
    with pytest.raises(InputError, match="unknown"):
        SimConfig().replace(colour="blue")


def test_comment_open_rows_carry_the_section_seconds_and_their_request(runs):
    """schema.EVENTS: a comment_open row's value is the seconds spent in the section, and its
    request_id is the comment request whose slate the section showed."""
    import pyarrow.parquet as pq

    t = pq.read_table(runs["popularity"][0] / "events.parquet").to_pandas()
    t["event"] = t.event.astype(str)
    opens = t[t.event == "comment_open"]
    assert len(opens) > 100
    shown = t[t.event == "comment_impression"].groupby("request_id").ts.agg(["min", "count"])
    assert opens.request_id.isin(shown.index).all()
    scans = shown.loc[opens.request_id, "count"].to_numpy()
    # at least the scanning time of every comment shown, plus whatever was read
    assert (opens.value.to_numpy() >= 0.4 * scans - 1e-9).all()
