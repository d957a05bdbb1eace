"""The world: topics, videos with titles, comment sections, users — observable tables plus the
latent truth (kept apart in ``truth/`` so no model reads it by accident)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import rng as streams
from .config import WorldConfig
from .lexicon import STYLE_NAMES, TOPIC_NAMES, TOPICS, make_comment, make_title, worded
from .schema import COMMENTS, USERS, VIDEOS


@dataclass
class World:
    """Everything generated before the first session. Arrays are indexed by id (videos, users) or
    by comment row (comment ids of the initial world equal their rows)."""

    config: WorldConfig
    # videos
    titles: list[str]
    duration_s: np.ndarray  # [V]
    creator_id: np.ndarray  # [V]
    video_topics: np.ndarray  # [V, T] topic weights, rows sum to 1 (truth)
    video_quality: np.ndarray  # [V] (truth)
    prior_plays: np.ndarray  # [V] "recent plays" before the run (what popularity sees on day 0)
    # comments (initial world)
    comment_video: np.ndarray  # [C]
    comment_text: list[str]
    comment_topic: np.ndarray  # [C] (truth)
    comment_style: np.ndarray  # [C] (truth)
    comment_quality: np.ndarray  # [C] (truth)
    comment_likes: np.ndarray  # [C] like counts at the start
    comment_created_ts: np.ndarray  # [C] seconds, negative: before the run
    # users
    taste: np.ndarray  # [U, T] Dirichlet (truth)
    style_taste: np.ndarray  # [U, S] Dirichlet (truth)
    comment_affinity: np.ndarray  # [U] (truth)
    activity: np.ndarray  # [U] sessions per day (truth)
    patience: np.ndarray  # [U] temper budget (truth)

    @property
    def n_videos(self) -> int:
        return len(self.titles)

    @property
    def n_users(self) -> int:
        return len(self.activity)

    def activity_segment(self) -> np.ndarray:
        """Observable coarse activity segment (what a platform knows): low / mid / high."""
        cuts = np.array([0.7, 1.4]) * self.config.activity_median
        return np.array(["low", "mid", "high"])[np.searchsorted(cuts, self.activity)]


def generate_world(config: WorldConfig, seed: int) -> World:
    """Generate a world. Users come from per-user streams: adding users never changes existing ones."""
    T, S, V = config.n_topics, len(STYLE_NAMES), config.n_videos
    g = streams.generator(seed, streams.WORLD, 0)
    topic_share = g.dirichlet(np.full(T, config.topic_popularity_concentration))
    primary = g.choice(T, size=V, p=topic_share)
    has_second = g.random(V) < config.secondary_topic_prob
    second = (primary + 1 + g.integers(0, T - 1, size=V)) % T
    video_topics = np.zeros((V, T))
    video_topics[np.arange(V), primary] = np.where(has_second, 0.7, 1.0)
    video_topics[np.arange(V)[has_second], second[has_second]] = 0.3
    video_quality = g.standard_normal(V)
    duration = np.exp(np.log(config.duration_median_s) + config.duration_sigma * g.standard_normal(V))
    duration = np.clip(duration, config.duration_min_s, config.duration_max_s).round(1)
    n_creators = max(1, int(V * config.n_creators_per_video))
    creator = g.integers(0, n_creators, size=V)
    # the wording's own stream (spawn key (WORLD, 0, 1)), drawn only when text_fidelity < 1
    g_text = streams.generator(seed, streams.WORLD, 0, 1) if config.text_fidelity < 1.0 else None
    title_primary = worded(g_text, config.text_fidelity, primary, T)
    title_second = worded(g_text, config.text_fidelity, second, T)
    titles = [
        make_title(g, [int(title_primary[v])] + ([int(title_second[v])] if has_second[v] else []))
        for v in range(V)
    ]
    mass_appeal = video_quality + np.log(topic_share[primary] * T)  # what a crowd rewards
    prior_plays = g.poisson(20.0 * np.exp(0.6 * mass_appeal)).astype(np.float64)

    # comment sections
    n_comm = np.exp(np.log(config.comments_median) + config.comments_sigma * g.standard_normal(V))
    n_comm = np.clip(n_comm.astype(np.int64), config.comments_min, config.comments_max)
    comment_video = np.repeat(np.arange(V), n_comm)
    C = len(comment_video)
    on_topic = g.random(C) < config.comment_on_topic_prob
    comment_topic = np.where(on_topic, primary[comment_video], g.integers(0, T, size=C))
    style_pop = np.asarray(config.style_popularity) / np.sum(config.style_popularity)
    comment_style = g.choice(S, size=C, p=style_pop)
    comment_quality = g.standard_normal(C)
    log_likes = (
        config.like_base
        + config.like_quality * comment_quality
        + config.like_style * np.log(style_pop[comment_style] * S)
        + 0.3 * on_topic
        + config.like_sigma * g.standard_normal(C)
    )
    comment_likes = np.floor(np.expm1(np.maximum(log_likes, 0.0))).astype(np.int64)
    words_topic = worded(g_text, config.text_fidelity, comment_topic, T)
    words_style = worded(g_text, config.text_fidelity, comment_style, S)
    comment_text = [make_comment(g, int(t), int(s)) for t, s in zip(words_topic, words_style)]
    created = -g.uniform(3600.0, 30 * 86400.0, size=C).round(0)

    # users: one stream each
    U = config.n_users
    taste = np.empty((U, T))
    style_taste = np.empty((U, S))
    affinity = np.empty(U)
    activity = np.empty(U)
    patience = np.empty(U)
    alpha_style = config.style_concentration * S * style_pop
    for u in range(U):
        gu = streams.generator(seed, u, streams.TRUTH)
        taste[u] = gu.dirichlet(np.full(T, config.taste_concentration) + 1e-3)
        style_taste[u] = gu.dirichlet(alpha_style)
        affinity[u] = gu.beta(config.comment_affinity_a, config.comment_affinity_b)
        activity[u] = config.activity_median * np.exp(config.activity_sigma * gu.standard_normal())
        patience[u] = gu.gamma(config.patience_shape, config.patience_scale)
    taste = np.maximum(taste, 1e-9)
    taste /= taste.sum(axis=1, keepdims=True)

    return World(
        config=config,
        titles=titles,
        duration_s=duration,
        creator_id=creator.astype(np.int64),
        video_topics=video_topics,
        video_quality=video_quality,
        prior_plays=prior_plays,
        comment_video=comment_video.astype(np.int64),
        comment_text=comment_text,
        comment_topic=comment_topic.astype(np.int64),
        comment_style=comment_style.astype(np.int64),
        comment_quality=comment_quality,
        comment_likes=comment_likes,
        comment_created_ts=created,
        taste=taste,
        style_taste=style_taste,
        comment_affinity=affinity,
        activity=activity,
        patience=patience,
    )


def write_tables(world: World, out: Path, comments: pa.Table, store) -> None:
    """Write the observable world and ``truth/`` into ``out`` (a directory being assembled)."""
    V = world.n_videos
    n_initial = np.bincount(world.comment_video, minlength=V)
    videos = pa.table(
        {
            "video_id": np.arange(V, dtype=np.int64),
            "title": world.titles,
            "duration_s": world.duration_s,
            "creator_id": world.creator_id,
            "n_comments": n_initial.astype(np.int64),
        },
        schema=VIDEOS,
    )
    users = pa.table(
        {"user_id": np.arange(world.n_users, dtype=np.int64), "activity_segment": world.activity_segment()},
        schema=USERS,
    )
    assert comments.schema == COMMENTS
    pq.write_table(videos, out / "videos.parquet")
    pq.write_table(users, out / "users.parquet")
    pq.write_table(comments, out / "comments.parquet")

    truth = out / "truth"
    truth.mkdir(exist_ok=True)
    (truth / "topics.json").write_text(
        json.dumps(
            {"topics": {n: list(TOPICS[n]) for n in TOPIC_NAMES[: world.config.n_topics]}, "styles": list(STYLE_NAMES)},
            indent=1,
        )
    )
    pq.write_table(
        pa.table(
            {
                "video_id": np.arange(V, dtype=np.int64),
                "topics": list(world.video_topics),
                "quality": world.video_quality,
                "prior_plays": world.prior_plays,
            }
        ),
        truth / "video_truth.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": np.arange(world.n_users, dtype=np.int64),
                "taste": list(world.taste),
                "style_taste": list(world.style_taste),
                "comment_affinity": world.comment_affinity,
                "activity": world.activity,
                "patience": world.patience,
            }
        ),
        truth / "user_truth.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "comment_id": store.ids,
                "topic": store.topic,
                "style": store.style,
                "quality": store.quality,
            }
        ),
        truth / "comment_truth.parquet",
    )
