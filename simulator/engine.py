"""The discrete-event platform: one simpy process per user, day by day.

Scenario
--------
A user wakes up for a session, asks the feed for a slate of videos and scrolls through it: each
video is an impression, maybe a play with a watch time, and after a play maybe a visit to the comment
section, whose ranked slate the user reads as a cascade (read time per comment, likes, replies)
until bored. Every impression spends temper; enjoyment refunds some. When temper runs out the
session ends, and the next one starts after a gap that is shorter when the session was satisfying.

World state that other users create — like counts, play counts, comments posted — becomes visible
at the next day boundary (as in a platform whose counters refresh daily). Within a day users are
therefore independent, which makes sharding by user exact: shards exchange only each day's deltas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import simpy

from . import rng as streams
from .behaviour import open_logit, return_gap_mean_s, sigmoid, video_utility
from .config import SimConfig
from .batching import Batcher, is_batched
from .lexicon import make_comment
from .policy import CommentRequest, History, Policy, UserTruth, VideoRequest, WorldView
from .schema import EVENT_TYPES, POSTED_COMMENT_BASE, POSTS_PER_USER
from .world import World

DAY_S = 86400.0
SESSION_ID_STRIDE = 1 << 20
REQUEST_ID_STRIDE = 1 << 24  # request_id = user_id * stride + k-th policy request of that user
EV = {name: i for i, name in enumerate(EVENT_TYPES)}


class CommentStore:
    """Every comment row (initial world, then posts in id order at each day boundary)."""

    def __init__(self, world: World):
        n = len(world.comment_video)
        self.ids = np.arange(n, dtype=np.int64)
        self.video = world.comment_video.copy()
        self.topic = world.comment_topic.copy()
        self.style = world.comment_style.copy()
        self.quality = world.comment_quality.copy()
        self.likes = world.comment_likes.copy()
        self.created_ts = world.comment_created_ts.copy()
        self.author = np.full(n, -1, dtype=np.int64)
        self.text = list(world.comment_text)
        self.words = [t.count(" ") + 1 for t in self.text]
        self._mirror()
        self.rows_of_video = [np.flatnonzero(self.video == v) for v in range(world.n_videos)]

    def _mirror(self) -> None:
        """Python-list copies of the truth for the engine's scalar hot loop."""
        self.topic_list = self.topic.tolist()
        self.style_list = self.style.tolist()
        self.quality_list = self.quality.tolist()

    def add(self, posts: list["Post"]) -> None:
        posts = sorted(posts, key=lambda p: p.comment_id)
        if not posts:
            return
        start = len(self.ids)
        self.ids = np.concatenate([self.ids, [p.comment_id for p in posts]])
        self.video = np.concatenate([self.video, [p.video_id for p in posts]])
        self.topic = np.concatenate([self.topic, [p.topic for p in posts]])
        self.style = np.concatenate([self.style, [p.style for p in posts]])
        self.quality = np.concatenate([self.quality, [p.quality for p in posts]])
        self.likes = np.concatenate([self.likes, np.zeros(len(posts), dtype=np.int64)])
        self.created_ts = np.concatenate([self.created_ts, [p.ts for p in posts]])
        self.author = np.concatenate([self.author, [p.author for p in posts]])
        self.text.extend(p.text for p in posts)
        self.words.extend(p.text.count(" ") + 1 for p in posts)
        self._mirror()
        for i, p in enumerate(posts):
            self.rows_of_video[p.video_id] = np.append(self.rows_of_video[p.video_id], start + i)


@dataclass(frozen=True)
class Post:
    comment_id: int
    video_id: int
    author: int
    ts: float
    topic: int
    style: int
    quality: float
    text: str


@dataclass
class DayDelta:
    """What one day of one shard changes in the shared world."""

    likes: list[int] = field(default_factory=list)  # comment rows, one entry per like
    plays: list[int] = field(default_factory=list)  # video ids, one entry per play
    posts: list[Post] = field(default_factory=list)


class UserState:
    __slots__ = (
        "user", "taste", "style", "affinity", "activity", "patience", "next_start", "n_sessions",
        "n_posts", "n_requests", "history", "session", "video", "comment", "candidates", "policy_video",
        "policy_comment", "session_days", "truth",
    )

    def __init__(self, world: World, user: int, seed: int):
        self.user = user
        self.taste = world.taste[user].copy()
        self.style = world.style_taste[user]
        self.affinity = float(world.comment_affinity[user])
        self.activity = float(world.activity[user])
        self.patience = float(world.patience[user])
        self.n_sessions = 0
        self.n_posts = 0
        self.n_requests = 0
        self.history = History([], [], [])
        self.session = streams.Draws(streams.generator(seed, user, streams.SESSION))
        self.video = streams.Draws(streams.generator(seed, user, streams.VIDEO))
        self.comment = streams.Draws(streams.generator(seed, user, streams.COMMENT))
        self.candidates = streams.generator(seed, user, streams.CANDIDATES)
        self.policy_video = streams.LazyGenerator(seed, user, streams.POLICY_VIDEO)
        self.policy_comment = streams.LazyGenerator(seed, user, streams.POLICY_COMMENT)
        gap = -math.log(1.0 - self.session.uniforms(1)[0]) * DAY_S / self.activity
        self.next_start = gap
        self.session_days: list[int] = []
        self.truth = UserTruth(self.taste, self.style)


class Platform:
    """Simulates ``users`` (this shard's) over ``config.days`` days.

    ``variant_of(user_id)`` names the arm a user is in (the ``variant`` column), ``policies`` maps
    arm names to policies, and ``pre_policy`` (if given) serves everyone during the pre-period. ``exchange(day, delta)`` returns the list of all shards'
    deltas for that day (just ``[delta]`` when unsharded).
    """

    def __init__(
        self,
        world: World,
        config: SimConfig,
        policies: dict[str, Policy],
        variant_of: Callable[[int], str],
        users: np.ndarray,
        pre_policy: Policy | None = None,
        comments: CommentStore | None = None,
        exchange: Callable[[int, DayDelta], list[DayDelta]] | None = None,
        log_slates: bool = False,
    ):
        self.world, self.config, self.b = world, config, config.behaviour
        self.policies, self.variant_of, self.pre_policy = policies, variant_of, pre_policy
        self.exchange = exchange or (lambda day, delta: [delta])
        self.comments = comments if comments is not None else CommentStore(world)
        self.recent_plays = world.prior_plays.copy()
        self.view = self._view()
        self.users = [UserState(world, int(u), config.behaviour_seed) for u in users]
        self.delta = DayDelta()
        self.rows: list[tuple] = []
        # every policy request with its slate and propensities (and video candidates), for OPE
        self.slates: list[tuple] | None = [] if log_slates else None
        self.variants = sorted(policies)
        self.variant_code = {v: i for i, v in enumerate(self.variants)}
        self.env = simpy.Environment()
        self.batchers = {
            name: Batcher(self.env, p, config.batch_tick_s) for name, p in policies.items() if is_batched(p)
        }
        self.pre_batcher = (
            Batcher(self.env, pre_policy, config.batch_tick_s) if pre_policy is not None and is_batched(pre_policy) else None
        )

    def _view(self) -> WorldView:
        c = self.comments
        return WorldView(
            video_recent_plays=self.recent_plays.copy(),
            video_duration_s=self.world.duration_s,
            comment_ids=c.ids,
            comment_video=c.video,
            comment_likes=c.likes.copy(),
            video_comment_rows=list(c.rows_of_video),
            comment_text=c.text,
        )

    # ----------------------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None) -> None:
        """Simulate every day; ``progress(days_done)`` is called every simulated hour."""
        for st in self.users:
            self.env.process(self.user_process(st))
        for day in range(self.config.days):
            for hour in range(1, 25):
                self.env.run(until=day * DAY_S + hour * 3600.0)
                if progress:
                    progress(day + hour / 24)
            self.end_of_day(day)

    def end_of_day(self, day: int) -> None:
        deltas = self.exchange(day, self.delta)
        self.delta = DayDelta()
        likes = [r for d in deltas for r in d.likes]
        plays = [v for d in deltas for v in d.plays]
        c = self.comments
        c.likes += np.bincount(np.asarray(likes, dtype=np.int64), minlength=len(c.likes))
        self.recent_plays = self.config.popularity_decay * self.recent_plays + np.bincount(
            np.asarray(plays, dtype=np.int64), minlength=self.world.n_videos
        )
        c.add([p for d in deltas for p in d.posts])
        self.view = self._view()

    # ----------------------------------------------------------------------------------------
    def user_process(self, st: UserState):
        env = self.env
        while True:
            yield env.timeout(max(0.0, st.next_start - env.now))
            yield from self.session(st)

    def session(self, st: UserState):
        env, b, cfg, world = self.env, self.b, self.config, self.world
        log = self.rows.append
        user = st.user
        sid = user * SESSION_ID_STRIDE + st.n_sessions
        st.n_sessions += 1
        period = 0 if env.now < cfg.pre_days * DAY_S else 1
        variant = self.variant_of(user)
        vcode = self.variant_code[variant]
        policy = self.pre_policy if (period == 0 and self.pre_policy is not None) else self.policies[variant]
        truth = st.truth if policy.needs_truth else None
        st.session_days.append(int(env.now // DAY_S))

        T = len(st.taste)
        z = st.session.normals(T + 1)
        if b.taste_drift_sd > 0:
            st.taste *= np.exp(b.taste_drift_sd * np.asarray(z[:T]))
            st.taste /= st.taste.sum()
        temper = st.patience * math.exp(0.3 * z[T] - 0.045)
        # this session's comment-relevance terms per topic and per style (see behaviour.comment_relevance)
        terms = (
            (b.comment_topic_weight * (np.sqrt(T * st.taste) - 1.0)).tolist(),
            (b.comment_style_weight * (np.sqrt(len(st.style) * st.style) - 1.0)).tolist(),
        )
        u_gap = st.session.uniforms(1)[0]
        # The session runs on its own clock t; the process sleeps once per slate. Within a day
        # nothing another user does is visible, so this equals one simpy event per impression at a
        # fraction of the cost. A batching policy's queueing delay is not added to t: inference is
        # instantaneous in simulated time, whatever the batch.
        batcher = self.batchers.get(variant) if period == 1 or self.pre_policy is None else self.pre_batcher
        start = t = env.now
        log((user, start, sid, period, vcode, 0, -1, -1, -1, math.nan, math.nan, 0.0, -1))

        exp = math.exp
        history = st.history
        max_impressions, skip_seconds = b.max_impressions, b.skip_seconds
        play_intercept, play_fatigue, play_position = b.play_intercept, b.play_fatigue, b.play_position
        watch_intercept, watch_slope, watch_sd = b.watch_intercept, b.watch_slope, b.watch_sd
        temper_base, temper_enjoy = b.temper_base, b.temper_enjoy
        V = world.n_videos
        seen_mask = np.zeros(V, dtype=bool)
        seen = 0
        enjoyment = 0.0
        while temper > 0 and seen < b.max_impressions:
            if cfg.n_candidates:
                cands = st.candidates.choice(V, size=min(cfg.n_candidates, V), replace=False)
                cands = cands[~seen_mask[cands]]
            else:
                cands = np.flatnonzero(~seen_mask)
            if len(cands) == 0:
                break
            k = min(cfg.video_slate_size, len(cands))
            rid = user * REQUEST_ID_STRIDE + st.n_requests
            st.n_requests += 1
            request = VideoRequest(user, t, cands, k, st.history, self.view, st.policy_video, truth)
            if batcher is None:
                slate = policy.rank_videos(request)
            else:
                yield env.timeout(max(0.0, t - env.now))
                slate = yield batcher.videos(request)
            items = slate.items
            if self.slates is not None:
                self.slates.append((rid, user, sid, t, 0, -1, items, slate.propensities,
                                    slate.prefix_propensities, cands))
            seen_mask[items] = True
            x_slate = video_utility(b, st.taste, world.video_topics[items], world.video_quality[items]).tolist()
            props, prefix = slate.propensities.tolist(), slate.prefix_propensities.tolist()
            durations = world.duration_s[items].tolist()
            for pos, v in enumerate(items.tolist()):
                if temper <= 0 or seen >= max_impressions:
                    break
                prop, pre = props[pos], prefix[pos]
                log((user, t, sid, period, vcode, 1, v, -1, pos, prop, pre, 0.0, rid))
                u_play, u_open = st.video.uniforms(2)
                z_watch = st.video.normals(1)[0]
                x = x_slate[pos]
                p_play = 1.0 / (1.0 + exp(-(play_intercept + x - play_fatigue * seen - play_position * pos)))
                seen += 1
                if u_play >= p_play:
                    temper -= temper_base
                    t += skip_seconds
                    continue
                frac = 1.0 / (1.0 + exp(-(watch_intercept + watch_slope * x + watch_sd * z_watch)))
                watch = durations[pos] * frac
                log((user, t, sid, period, vcode, 2, v, -1, pos, prop, pre, watch, rid))
                self.delta.plays.append(v)  # the delta of the day this slate is processed in
                history.video_ids.append(v)
                history.watch_fraction.append(frac)
                enjoyment += frac
                temper -= temper_base - temper_enjoy * frac
                t += watch
                rows = self.view.video_comment_rows[v]
                if len(rows):
                    crid = user * REQUEST_ID_STRIDE + st.n_requests
                    st.n_requests += 1
                    k = min(cfg.comment_slate_size, len(rows))
                    request = CommentRequest(user, t, v, rows, k, st.history, self.view, st.policy_comment, truth)
                    if batcher is None:
                        cslate = policy.rank_comments(request)
                    else:
                        yield env.timeout(max(0.0, t - env.now))
                        cslate = yield batcher.comments(request)
                    seconds, refund = self.comment_section(
                        st, cslate, crid, terms, sid, period, vcode, v, pos, x, t, u_open
                    )
                    temper += refund
                    t += seconds
            yield env.timeout(max(0.0, t - env.now))
        end = t
        log((user, end, sid, period, vcode, 8, -1, -1, -1, math.nan, math.nan, end - start, -1))
        satisfaction = enjoyment / max(seen, 1)
        gap = -math.log(1.0 - u_gap) * return_gap_mean_s(b, st.activity, satisfaction)
        st.next_start = end + b.min_gap_s + gap

    def comment_section(self, st, slate, rid, terms, sid, period, vcode, v, vpos, x, t, u_open):
        """Maybe open the section (decided by the previewed top of ``slate``) and read it as a cascade.

        Returns the seconds spent in the section and the temper its comments refunded.
        """
        b, c = self.b, self.comments
        if self.slates is not None:
            self.slates.append((rid, st.user, sid, t, 1, v, c.ids[slate.items], slate.propensities,
                                slate.prefix_propensities, None))
        shown = slate.items.tolist()
        topic_term, style_term = terms
        tl, sl, ql, wq = c.topic_list, c.style_list, c.quality_list, b.comment_quality_weight
        rel = [wq * ql[r] + topic_term[tl[r]] + style_term[sl[r]] for r in shown]
        preview = rel[: b.comment_preview]
        appeal = sum(preview) / len(preview)
        if u_open >= sigmoid(open_logit(b, st.affinity, x, appeal)):
            return 0.0, 0.0
        log = self.rows.append
        user = st.user
        log((user, t, sid, period, vcode, 3, v, -1, vpos, math.nan, math.nan, 0.0, rid))
        open_row = len(self.rows) - 1
        ids = c.ids[slate.items].tolist()
        props, prefix = slate.propensities.tolist(), slate.prefix_propensities.tolist()
        now = t
        refund = 0.0
        interacted: list[int] = []
        for pos, row in enumerate(shown):
            u_read, u_g1, u_g2, u_like, u_post, u_cont = st.comment.uniforms(6)
            cid, r = ids[pos], rel[pos]
            log((user, now, sid, period, vcode, 4, v, cid, pos, props[pos], prefix[pos], 0.0, rid))
            now += b.scan_seconds
            read = u_read < sigmoid(b.read_intercept + b.read_slope * r)
            if read:
                secs = b.read_seconds * (c.words[row] / 10.0) * math.exp(0.3 * r) * 0.5 * (
                    -math.log(1.0 - u_g1) - math.log(1.0 - u_g2)
                )  # Gamma(2) with mean read_seconds * length * exp(0.3 r)
                log((user, now, sid, period, vcode, 5, v, cid, pos, props[pos], prefix[pos], secs, rid))
                now += secs
                refund += b.temper_comment * max(r, 0.0)
                if u_like < sigmoid(b.like_intercept + b.like_slope * r):
                    log((user, now, sid, period, vcode, 6, v, cid, pos, props[pos], prefix[pos], 0.0, rid))
                    self.delta.likes.append(row)
                if u_post < sigmoid(b.post_intercept + b.post_slope * r):
                    post = self._post(st, v, now)
                    log((user, now, sid, period, vcode, 7, v, post.comment_id, pos, props[pos], prefix[pos], 0.0, rid))
                    self.delta.posts.append(post)
                interacted.append(cid)
            p_cont = sigmoid(b.continue_intercept + b.continue_slope * (r if read else -1.0))
            if u_cont >= p_cont:
                break
        self.rows[open_row] = self.rows[open_row][:-1] + (now - t,)
        if interacted:
            st.history.comment_records.append((v, interacted))
        return now - t, refund

    def _post(self, st: UserState, video: int, ts: float) -> Post:
        k = st.n_posts
        st.n_posts += 1
        if k >= POSTS_PER_USER:
            raise RuntimeError(f"user {st.user} posted more than {POSTS_PER_USER} comments")
        g = streams.generator(self.config.behaviour_seed, st.user, streams.POST, k)
        primary = int(np.argmax(self.world.video_topics[video]))
        topic = primary if g.random() < 0.5 else int(g.choice(len(st.taste), p=st.taste))
        style = int(g.choice(len(st.style), p=st.style))
        quality = float(g.normal(-0.3, 1.0))
        return Post(
            comment_id=POSTED_COMMENT_BASE + st.user * POSTS_PER_USER + k,
            video_id=video, author=st.user, ts=ts, topic=topic, style=style, quality=quality,
            text=make_comment(g, topic, style),
        )
