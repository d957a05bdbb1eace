"""The behaviour model's pieces: configuration, relevance, world generation."""
import numpy as np
import pytest

from simulator import InputError, SimConfig, WorldConfig
from simulator.behaviour import comment_relevance
from simulator.engine import CommentStore
from simulator.world import generate_world


def test_engine_relevance_equals_behaviour_relevance():
    """The engine's scalar hot path and the oracle's vectorised formula are the same function."""
    cfg = SimConfig()
    b = cfg.behaviour
    world = generate_world(WorldConfig(n_users=5, n_videos=50), seed=0)
    store = CommentStore(world)
    taste, style = world.taste[3], world.style_taste[3]
    T, S = len(taste), len(style)
    topic_term = (b.comment_topic_weight * (np.sqrt(T * taste) - 1.0)).tolist()
    style_term = (b.comment_style_weight * (np.sqrt(S * style) - 1.0)).tolist()
    rows = np.arange(len(store.ids))
    scalar = [b.comment_quality_weight * store.quality_list[r] + topic_term[store.topic_list[r]]
              + style_term[store.style_list[r]] for r in rows]
    vector = comment_relevance(b, taste, style, store.topic[rows], store.style[rows], store.quality[rows])
    np.testing.assert_allclose(scalar, vector, rtol=1e-12)


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
