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
from .batching import Batcher, is_batched
from .behaviour import (
    comment_relevance, drift_taste, initial_temper, open_logit, p_continue, p_like, p_play, p_post, p_read,
    read_seconds, relevance_terms, relevances, return_gap_s, sigmoid, slate_appeal, temper_after_play,
    temper_after_skip, temper_refund, video_utility, watch_fraction,
)
from .config import SimConfig
from .eventlog import COLUMNS, SlateRow, session_logger
from .lexicon import STYLE_NAMES, make_comment, worded
from .policy import CommentRequest, History, Policy, UserTruth, VideoRequest, WorldView
from .schema import POSTED_COMMENT_BASE, POSTS_PER_USER, SLATE_KINDS, Event
from .world import World

DAY_S = 86400.0
SESSION_ID_STRIDE = 1 << 20
REQUEST_ID_STRIDE = 1 << 24  # request_id = user_id * stride + k-th policy request of that user
# event codes as plain ints (module globals are faster to read in the hot loop than enum members)
SESSION_START, SESSION_END = Event.session_start.value, Event.session_end.value
IMPRESSION, PLAY, COMMENT_OPEN = Event.impression.value, Event.play.value, Event.comment_open.value
COMMENT_IMPRESSION, COMMENT_READ = Event.comment_impression.value, Event.comment_read.value
COMMENT_LIKE, COMMENT_POST = Event.comment_like.value, Event.comment_post.value
SLATE_VIDEO, SLATE_COMMENT = SLATE_KINDS.index("video"), SLATE_KINDS.index("comment")
VALUE_FIELD = COLUMNS.index("value")


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


# ----------------------------------------------------------------------------------------------
# The daily-visibility rule
# ----------------------------------------------------------------------------------------------
def next_day_counts(recent_plays: np.ndarray, likes: np.ndarray, plays, liked_rows, decay: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The counters of the next day's view from one day's plays (video ids) and likes (comment rows),
    one entry per event of every shard: recent plays decay and add the day's, like counts add the day's."""
    recent = decay * recent_plays + np.bincount(np.asarray(plays, dtype=np.int64), minlength=len(recent_plays))
    return recent, likes + np.bincount(np.asarray(liked_rows, dtype=np.int64), minlength=len(likes))


def day_view(world: World, comments: CommentStore, recent_plays: np.ndarray, likes: np.ndarray, n_rows: int
             ) -> WorldView:
    """What every user sees during one day: the day's counters (copied) and the first ``n_rows`` comment
    rows of the store (the comments posted before the day began)."""
    whole = n_rows == len(comments.ids)
    return WorldView(
        video_recent_plays=recent_plays.copy(),
        video_duration_s=world.duration_s,
        comment_ids=comments.ids[:n_rows],
        comment_video=comments.video[:n_rows],
        comment_likes=likes[:n_rows].copy(),
        video_comment_rows=list(comments.rows_of_video) if whole
        else [r[: np.searchsorted(r, n_rows)] for r in comments.rows_of_video],
        comment_text=comments.text,
    )


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


@dataclass(slots=True)
class Session:
    """One session's running state, shared by its video and comment steps."""

    id: int
    policy: Policy
    batcher: Batcher | None
    truth: UserTruth | None
    log: Callable[..., None]  # eventlog.session_logger: one event row per call, by named fields
    terms: tuple[list[float], list[float]]  # behaviour.relevance_terms of this session's tastes
    temper: float
    u_gap: float  # the uniform that draws the return gap after the session
    start: float
    t: float = 0.0  # the session's clock
    seen: int = 0  # impressions so far
    enjoyment: float = 0.0  # sum of watch fractions

    def __post_init__(self) -> None:
        self.t = self.start


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
        return day_view(self.world, self.comments, self.recent_plays, self.comments.likes, len(self.comments.ids))

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
        c = self.comments
        self.recent_plays, c.likes = next_day_counts(
            self.recent_plays, c.likes, [v for d in deltas for v in d.plays], [r for d in deltas for r in d.likes],
            self.config.popularity_decay,
        )
        c.add([p for d in deltas for p in d.posts])  # posted today: visible from tomorrow
        self.view = self._view()

    # ----------------------------------------------------------------------------------------
    def user_process(self, st: UserState):
        env = self.env
        while True:
            yield env.timeout(max(0.0, st.next_start - env.now))
            yield from self.session(st)

    def session(self, st: UserState):
        """One session: ask for video slates and scroll through them until temper runs out.

        The session runs on its own clock ``s.t``; the process sleeps once per slate. Within a day
        nothing another user does is visible, so this equals one simpy event per impression at a
        fraction of the cost. A batching policy's queueing delay is not added to the clock: inference
        is instantaneous in simulated time, whatever the batch.
        """
        env, cfg, world = self.env, self.config, self.world
        s = self._open_session(st)
        watch, comment_section = self.watch, self.comment_section
        max_impressions = self.b.max_impressions
        V = world.n_videos
        seen_mask = np.zeros(V, dtype=bool)
        while s.temper > 0 and s.seen < max_impressions:
            if cfg.n_candidates:
                cands = st.candidates.choice(V, size=min(cfg.n_candidates, V), replace=False)
                cands = cands[~seen_mask[cands]]
            else:
                cands = np.flatnonzero(~seen_mask)
            if len(cands) == 0:
                break
            rid = self._request_id(st)
            request = VideoRequest(st.user, s.t, cands, min(cfg.video_slate_size, len(cands)), st.history,
                                   self.view, st.policy_video, s.truth)
            if s.batcher is None:
                slate = s.policy.rank_videos(request)
            else:
                yield env.timeout(max(0.0, s.t - env.now))
                slate = yield s.batcher.videos(request)
            items = slate.items
            if self.slates is not None:
                self.slates.append(SlateRow(
                    rid, st.user, s.id, s.t, SLATE_VIDEO, -1, items, slate.propensities, slate.prefix_propensities,
                    cands, self.view.video_recent_plays[cands],
                    video_utility(self.b, st.taste, world.video_topics[cands], world.video_quality[cands])))
            seen_mask[items] = True
            x_slate = video_utility(self.b, st.taste, world.video_topics[items], world.video_quality[items]).tolist()
            props, prefix = slate.propensities.tolist(), slate.prefix_propensities.tolist()
            durations = world.duration_s[items].tolist()
            for pos, v in enumerate(items.tolist()):
                if s.temper <= 0 or s.seen >= max_impressions:
                    break
                x = x_slate[pos]
                u_open = watch(st, s, v, pos, x, durations[pos], props[pos], prefix[pos], rid)
                if u_open is None:  # skipped
                    continue
                rows = self.view.video_comment_rows[v]
                if len(rows):
                    crid = self._request_id(st)
                    request = CommentRequest(st.user, s.t, v, rows, min(cfg.comment_slate_size, len(rows)),
                                             st.history, self.view, st.policy_comment, s.truth)
                    if s.batcher is None:
                        cslate = s.policy.rank_comments(request)
                    else:
                        yield env.timeout(max(0.0, s.t - env.now))
                        cslate = yield s.batcher.comments(request)
                    comment_section(st, s, cslate, crid, v, pos, x, u_open, rows)
            yield env.timeout(max(0.0, s.t - env.now))
        self._close_session(st, s)

    def _open_session(self, st: UserState) -> Session:
        """Start a session now: its policy, this session's taste drift and temper, session_start."""
        env, b, cfg = self.env, self.b, self.config
        user = st.user
        sid = user * SESSION_ID_STRIDE + st.n_sessions
        st.n_sessions += 1
        period = 0 if env.now < cfg.pre_days * DAY_S else 1
        variant = self.variant_of(user)
        policy = self.pre_policy if (period == 0 and self.pre_policy is not None) else self.policies[variant]
        batcher = self.batchers.get(variant) if period == 1 or self.pre_policy is None else self.pre_batcher
        st.session_days.append(int(env.now // DAY_S))
        T = len(st.taste)
        z = st.session.normals(T + 1)
        drift_taste(b, st.taste, z[:T])
        s = Session(
            id=sid, policy=policy, batcher=batcher, truth=st.truth if policy.needs_truth else None,
            log=session_logger(self.rows, user, sid, period, self.variant_code[variant]),
            terms=relevance_terms(b, st.taste, st.style),  # this session's comment-relevance terms
            temper=initial_temper(st.patience, z[T]), u_gap=st.session.uniforms(1)[0], start=env.now,
        )
        s.log(SESSION_START, s.start)
        return s

    def _close_session(self, st: UserState, s: Session) -> None:
        """session_end, and when the next session starts (sooner after a satisfying one)."""
        end = s.t
        s.log(SESSION_END, end, value=end - s.start)
        satisfaction = s.enjoyment / max(s.seen, 1)
        st.next_start = end + self.b.min_gap_s + return_gap_s(self.b, st.activity, satisfaction, s.u_gap)

    @staticmethod
    def _request_id(st: UserState) -> int:
        rid = st.user * REQUEST_ID_STRIDE + st.n_requests
        st.n_requests += 1
        return rid

    def watch(self, st: UserState, s: Session, v: int, pos: int, x: float, duration: float,
              prop: float, prefix: float, rid: int) -> float | None:
        """The video step: one impression of video ``v`` (utility ``x``) at slate position ``pos``.

        Logs the impression and maybe a play; spends temper and clock. Returns the uniform that
        decides whether the comment section opens after the play, or None when skipped.
        """
        b, log = self.b, s.log
        log(IMPRESSION, s.t, video=v, position=pos, propensity=prop, prefix=prefix, request=rid)
        u_play, u_open = st.video.uniforms(2)  # every impression draws the same, played or not
        z_watch = st.video.normals(1)[0]
        played = u_play < p_play(b, x, s.seen, pos)
        s.seen += 1
        if not played:
            s.temper = temper_after_skip(b, s.temper)
            s.t += b.skip_seconds
            return None
        frac = watch_fraction(b, x, z_watch)
        seconds = duration * frac
        log(PLAY, s.t, video=v, position=pos, propensity=prop, prefix=prefix, value=seconds, request=rid)
        self.delta.plays.append(v)  # the delta of the day this slate is processed in
        st.history.video_ids.append(v)
        st.history.watch_fraction.append(frac)
        s.enjoyment += frac
        s.temper = temper_after_play(b, s.temper, frac)
        s.t += seconds
        return u_open

    def comment_section(self, st: UserState, s: Session, slate, rid: int, v: int, vpos: int, x: float,
                        u_open: float, candidates: np.ndarray) -> None:
        """The comment step: maybe open the section after a play of ``v`` (decided by the previewed top
        of ``slate``) and read it as a cascade; spends the session's clock, refunds its temper."""
        b, c = self.b, self.comments
        t = s.t
        if self.slates is not None:
            self.slates.append(SlateRow(
                rid, st.user, s.id, t, SLATE_COMMENT, v, c.ids[slate.items], slate.propensities,
                slate.prefix_propensities, c.ids[candidates], self.view.comment_likes[candidates].astype(np.float64),
                comment_relevance(b, st.taste, st.style, c.topic[candidates], c.style[candidates],
                                  c.quality[candidates])))
        shown = slate.items.tolist()
        k = b.comment_preview  # the open decision sees only the preview: the rest is scored if opened
        rel = relevances(b, s.terms, shown[:k], c.topic_list, c.style_list, c.quality_list)
        if u_open >= sigmoid(open_logit(b, st.affinity, x, slate_appeal(b, rel))):
            return
        rel += relevances(b, s.terms, shown[k:], c.topic_list, c.style_list, c.quality_list)
        log = s.log
        log(COMMENT_OPEN, t, video=v, position=vpos, request=rid)
        open_row = len(self.rows) - 1
        ids = c.ids[slate.items].tolist()
        props, prefix = slate.propensities.tolist(), slate.prefix_propensities.tolist()
        words, scan_seconds = c.words, b.scan_seconds
        now = t
        refund = 0.0
        interacted: list[int] = []
        for pos, row in enumerate(shown):
            u_read, u_g1, u_g2, u_like, u_post, u_cont = st.comment.uniforms(6)
            cid, r, prop, pre = ids[pos], rel[pos], props[pos], prefix[pos]
            log(COMMENT_IMPRESSION, now, video=v, comment=cid, position=pos, propensity=prop, prefix=pre, request=rid)
            now += scan_seconds
            read = u_read < p_read(b, r)
            if read:
                secs = read_seconds(b, words[row], r, u_g1, u_g2)
                log(COMMENT_READ, now, video=v, comment=cid, position=pos, propensity=prop, prefix=pre, value=secs,
                    request=rid)
                now += secs
                refund += temper_refund(b, r)
                if u_like < p_like(b, r):
                    log(COMMENT_LIKE, now, video=v, comment=cid, position=pos, propensity=prop, prefix=pre, request=rid)
                    self.delta.likes.append(row)
                if u_post < p_post(b, r):
                    post = self._post(st, v, now)
                    log(COMMENT_POST, now, video=v, comment=post.comment_id, position=pos, propensity=prop, prefix=pre,
                        request=rid)
                    self.delta.posts.append(post)
                interacted.append(cid)
            if u_cont >= p_continue(b, r, read):
                break
        # the open row's value: the seconds spent in the section (schema.EVENTS), known only now
        row_open = self.rows[open_row]
        self.rows[open_row] = row_open[:VALUE_FIELD] + (now - t,) + row_open[VALUE_FIELD + 1:]
        if interacted:
            st.history.comment_records.append((v, interacted))
        s.temper += refund
        s.t += now - t

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
            text=self._worded_comment(g, st.user, k, topic, style),
        )

    def _worded_comment(self, g: np.random.Generator, user: int, k: int, topic: int, style: int) -> str:
        """A post's text, worded per ``WorldConfig.text_fidelity`` (its own stream: (user, POST, k, 1))."""
        fidelity = self.world.config.text_fidelity
        if fidelity < 1.0:
            gw = streams.generator(self.config.behaviour_seed, user, streams.POST, k, 1)
            topic = int(worded(gw, fidelity, np.array([topic]), self.world.config.n_topics)[0])
            style = int(worded(gw, fidelity, np.array([style]), len(STYLE_NAMES))[0])
        return make_comment(g, topic, style)
