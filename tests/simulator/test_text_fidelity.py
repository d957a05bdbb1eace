"""WorldConfig.text_fidelity: how much of the latent truth a title's or comment's words carry.

The wording is read back from the text itself (which style's template, which topic's lexicon), so
the checks do not trust the generator's own bookkeeping."""
import re

import numpy as np
import pytest

from simulator import InputError, SimConfig, WorldConfig
from simulator.engine import Platform
from simulator.lexicon import STYLE_NAMES, STYLES, TOPIC_NAMES, TOPICS
from simulator.policy import PopularityPolicy
from simulator.world import generate_world

_TEMPLATES = [(s, re.compile("^" + re.escape(t).replace(r"\{a\}", "(.+)").replace(r"\{b\}", "(.+)") + "$"))
              for s, name in enumerate(STYLE_NAMES) for t in STYLES[name]]
_WORD_TOPIC = {w: k for k, name in enumerate(TOPIC_NAMES) for w in TOPICS[name]}
WORLD = dict(n_users=30, n_videos=600)


def wording(text: str) -> tuple[int, int]:
    """(style, topic) a comment is worded in, parsed from its template and its first topic word."""
    hits = [(s, m) for s, rx in _TEMPLATES if (m := rx.match(text))]
    assert len({s for s, _ in hits}) == 1, text
    style, m = hits[0]
    return style, _WORD_TOPIC[m.group(1)]


def title_topics(text: str) -> set[int]:
    return {k for w, k in _WORD_TOPIC.items() if re.search(rf"(^|\W){re.escape(w)}(\W|$)", text)}


def test_the_calibrated_world_is_worded_by_its_truth():
    w = generate_world(WorldConfig(**WORLD), seed=1)
    words = np.array([wording(t) for t in w.comment_text])
    np.testing.assert_array_equal(words[:, 0], w.comment_style)
    np.testing.assert_array_equal(words[:, 1], w.comment_topic)
    primary = w.video_topics.argmax(1)
    assert all(int(p) in title_topics(t) for p, t in zip(primary, w.titles))


@pytest.mark.parametrize("fidelity", [0.0, 0.5])
def test_fidelity_changes_the_words_and_nothing_else(fidelity):
    """The truth (and the main stream's draws) are those of the calibrated world; the share of texts
    worded by their truth is fidelity + (1 - fidelity) / n (a uniform redraw can hit it), within 4 sd."""
    base = generate_world(WorldConfig(**WORLD), seed=1)
    w = generate_world(WorldConfig(**WORLD, text_fidelity=fidelity), seed=1)
    for field in ("video_topics", "video_quality", "prior_plays", "comment_video", "comment_topic", "comment_style",
                  "comment_quality", "comment_likes", "taste", "style_taste", "activity", "patience"):
        np.testing.assert_array_equal(getattr(w, field), getattr(base, field), err_msg=field)
    words = np.array([wording(t) for t in w.comment_text])
    T, S = w.config.n_topics, len(STYLE_NAMES)
    for got, truth, n in ((words[:, 0], w.comment_style, S), (words[:, 1], w.comment_topic, T)):
        p = fidelity + (1 - fidelity) / n
        assert abs(np.mean(got == truth) - p) < 4 * np.sqrt(p * (1 - p) / len(truth))
    primary = w.video_topics.argmax(1)
    share = np.mean([int(k) in title_topics(t) for k, t in zip(primary, w.titles)])
    # a title names its primary topic when that word is faithful or a redraw of either of its topics hits it
    assert share < fidelity + 3 / T + 4 * np.sqrt(0.25 / len(primary))
    assert share > fidelity - 4 * np.sqrt(0.25 / len(primary))


def test_posted_comments_follow_the_fidelity_too():
    """Comments users post during a run are worded by the same rule (at fidelity 0: by chance only)."""
    shares = {}
    for fidelity in (1.0, 0.0):
        cfg = SimConfig().replace(n_users=60, n_videos=80, days=1, seed=0, post_intercept=-1.0, text_fidelity=fidelity)
        platform = Platform(generate_world(cfg.world, cfg.seed), cfg, {"control": PopularityPolicy()}, lambda u: "control",
                            np.arange(60))
        platform.run()
        store = platform.comments
        posted = np.flatnonzero(store.author >= 0)
        assert len(posted) > 100
        shares[fidelity] = np.mean([wording(store.text[i])[0] == store.style[i] for i in posted])
    assert shares[1.0] == 1.0
    assert shares[0.0] < 0.2 + 4 * np.sqrt(0.2 * 0.8 / 100)  # 1 / 5 styles by chance


def test_fidelity_must_be_a_probability():
    with pytest.raises(InputError, match="text_fidelity"):
        WorldConfig(text_fidelity=1.5)
