"""What a policy would have shown on each logged request: the counterfactual half of off-policy
evaluation, served from a feedback log (``abtest.offline.feedback``; a simulation writes one, so may
any team's logs).

Every logged request becomes the request a policy sees on the platform (``VideoRequest`` or
``CommentRequest``), read from the log and nothing else:

* the candidates are the logged ones, and each carries its logged features (``request.features``:
  ``popularity``, the counts the platform showed then; ``oracle`` on a simulator's logs);
* the history is rebuilt from the log up to the request's time: the plays whose impression came
  before it (video id, watch seconds over the video's duration) and the comment sections read before
  it ((video, [comments read, in position order]));
* comment rows index one ``WorldView`` of every comment the log lists (``items.parquet``), whose
  text a model reads for comments it has never seen.

Policies run day by day, the feed's requests of a day before its comment sections (a model's comment
ranking reuses the feed page it came from), in chunks of ``batch_size``. A stochastic target draws
from its own stream per user (``seed``, independent of the logging policy's); the target's
probabilities of the logged items are exact for deterministic policies (indicators) and for any
policy with ``slate_probabilities`` (random, ε-greedy, Plackett–Luce), else indicators of its one
sampled slate (``Target.sampled``).

The feedback object is duck-typed (its surfaces' arrays); this module never imports abtest.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import rng as streams
from .policy import CommentRequest, History, Policy, VideoRequest, WorldView

TARGET_STREAM = 1  # extra spawn-key element of a target policy's streams (independent of the logging policy's)
KINDS = {"feed": "video", "comments": "comment"}


class Target(NamedTuple):
    """A policy on one surface's logged requests ([n, K], K the surface's slate width)."""

    items: np.ndarray  # the slate it shows (sampled with its own stream if stochastic), −1 past the end
    marginal: np.ndarray  # its P(logged item at the logged position)
    prefix: np.ndarray  # its P(the logged prefix through the position)
    sampled: np.ndarray  # [n] bool: the probabilities are indicators of one sampled slate


class _Histories(NamedTuple):
    play_video: list
    play_frac: list
    records: list  # (video id, [comment ids read])
    play_span: np.ndarray  # [n, 2] per request of the surface: its history's plays [start, end)
    record_span: np.ndarray  # [n, 2]


class LoggedRequests:
    """A feedback log's requests as the simulator's policies see them (built once per log)."""

    def __init__(self, feedback, features: dict | None = None):
        self.feedback = feedback
        self.surfaces = {name: feedback.surfaces[name] for name in KINDS if name in feedback.surfaces}
        self.extra = features or {}  # surface -> {name: flat values aligned with cand_flat}
        self.world, self.comment_row = self._world()
        self.histories = self._histories()

    # -- the world every request shares ------------------------------------------------------------
    def _world(self) -> tuple[WorldView, dict]:
        fb = self.feedback
        feed, com = self.surfaces.get("feed"), self.surfaces.get("comments")
        videos = fb.items.get("feed")
        comments = fb.items.get("comments")
        ids = [np.zeros(1, np.int64)]
        if feed is not None:
            ids.append(feed.cand_flat)
        if videos is not None:
            ids.append(videos.ids)
        if com is not None:
            ids.append(com.video)
        V = int(max(int(np.max(a)) if len(a) else 0 for a in ids)) + 1
        duration = np.full(V, np.nan)
        if videos is not None:
            duration[videos.ids] = videos.duration_s
        if comments is not None:
            cids, cvideo, ctext = comments.ids, np.maximum(comments.video, 0), list(comments.text)
        else:  # no items table: the comments the log names, text unknown
            cids = np.unique(com.cand_flat) if com is not None else np.zeros(0, np.int64)
            cvideo, ctext = np.zeros(len(cids), np.int64), [""] * len(cids)
        row = {int(c): r for r, c in enumerate(cids.tolist())}
        by_video = [[] for _ in range(V)]
        for r, v in enumerate(cvideo.tolist()):
            if v < V:
                by_video[v].append(r)
        world = WorldView(np.zeros(V), duration, np.asarray(cids, np.int64), np.asarray(cvideo, np.int64),
                          np.zeros(len(cids), np.int64), [np.asarray(r, np.int64) for r in by_video], ctext)
        return world, row

    def comment_rows(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        out = np.full(ids.shape, -1, np.int64)
        flat, rows = ids.ravel(), out.ravel()
        for k, c in enumerate(flat.tolist()):
            if c >= 0:
                r = self.comment_row.get(c)
                if r is None:
                    raise KeyError(f"comment {c} is not listed in the log's items")
                rows[k] = r
        return out

    # -- histories from the log ---------------------------------------------------------------------
    def _histories(self) -> dict[str, _Histories]:
        feed, com = self.surfaces.get("feed"), self.surfaces.get("comments")
        duration = self.world.video_duration_s
        plays_u, plays_t, plays_v, plays_f = [], [], [], []
        if feed is not None and "plays" in feed.rewards and "watch_s" in feed.rewards:
            i, j = np.nonzero((feed.rewards["plays"] > 0) & (feed.items >= 0))  # log order: user, time, position
            t = np.where(np.isfinite(feed.shown_ts[i, j]), feed.shown_ts[i, j], feed.ts[i])
            v = feed.items[i, j]
            plays_u, plays_t, plays_v = feed.user[i], t, v
            plays_f = feed.rewards["watch_s"][i, j] / duration[v]
        rec_u, rec_t, records = [], [], []
        if com is not None and "reads" in com.rewards:
            read = (com.rewards["reads"] > 0) & (com.items >= 0)
            rows = np.flatnonzero(read.any(axis=1))
            rec_u, rec_t = com.user[rows], com.ts[rows]
            records = [(int(com.video[r]), com.items[r][read[r]].tolist()) for r in rows]
        plays_u, plays_t = np.asarray(plays_u, np.int64), np.asarray(plays_t, np.float64)
        rec_u, rec_t = np.asarray(rec_u, np.int64), np.asarray(rec_t, np.float64)
        out = {}
        for name, s in self.surfaces.items():
            out[name] = _Histories(np.asarray(plays_v, np.int64).tolist(), np.asarray(plays_f, np.float64).tolist(),
                                   records, _spans(plays_u, plays_t, s.user, s.ts), _spans(rec_u, rec_t, s.user, s.ts))
        return out

    def request(self, name: str, i: int, rng=None):
        """The i-th logged request of surface ``name`` as a policy sees it."""
        s, h = self.surfaces[name], self.histories[name]
        (p0, p1), (r0, r1) = h.play_span[i], h.record_span[i]
        history = History(h.play_video[p0:p1], h.play_frac[p0:p1], h.records[r0:r1])
        lo, hi = s.cand_off[i], s.cand_off[i + 1]
        features = {k: v[lo:hi] for k, v in s.features.items()}
        features.update({k: v[lo:hi] for k, v in self.extra.get(name, {}).items()})
        k = int((s.items[i] >= 0).sum())
        if name == "feed":
            return VideoRequest(int(s.user[i]), float(s.ts[i]), s.cand_flat[lo:hi], k, history, self.world, rng,
                                None, features)
        return CommentRequest(int(s.user[i]), float(s.ts[i]), int(s.video[i]), self.comment_rows(s.cand_flat[lo:hi]),
                              k, history, self.world, rng, None, features)


def _spans(event_user: np.ndarray, event_t: np.ndarray, user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """[n, 2] per request: the range of its user's events (sorted by user, then time) before ``ts``."""
    order = np.lexsort((event_t, event_user))
    if not np.array_equal(order, np.arange(len(order))):
        raise ValueError("history events must come in (user, time) order")
    start = np.searchsorted(event_user, user, "left")
    end = start.copy()
    for k in range(len(user)):
        hi = np.searchsorted(event_user, user[k], "right")
        end[k] = start[k] + np.searchsorted(event_t[start[k]:hi], ts[k], "left")
    return np.stack([start, end], axis=1)


def _probabilities(policy, request, slate, logged: np.ndarray, marginals: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """The target's (marginal, prefix) probabilities of the logged entries, and whether they are
    indicators of the one sampled ``slate``."""
    k = len(logged)
    shown = np.asarray(slate.items)
    deterministic = bool(np.all(np.asarray(slate.propensities) >= 1.0))
    if deterministic or not hasattr(policy, "slate_probabilities"):
        match = np.zeros(k, dtype=bool)
        m = min(k, len(shown))
        match[:m] = shown[:m] == logged[:m]
        return match.astype(np.float64), np.cumprod(match).astype(np.float64), not deterministic
    marginal, prefix = policy.slate_probabilities(request, logged, marginals=marginals)
    return np.asarray(marginal, np.float64), np.asarray(prefix, np.float64), False


def serve(requests: LoggedRequests, policy: Policy, *, seed: int = 0, batch_size: int = 1024,
          marginals: bool = True, same_streams: bool = False) -> dict[str, Target]:
    """Run ``policy`` on every logged request; returns each surface's ``Target``.

    ``marginals=False`` skips the position marginals of stochastic targets (NaN; exact Plackett–Luce
    marginals cost a numerical integral per slate, and only position-wise estimators use them).
    ``same_streams``: draw from the logging policy's own streams (a simulation's ``seed``), so that the
    logging policy served again shows every logged slate. Uses ``rank_videos_batch`` /
    ``rank_comments_batch`` when the policy has them."""
    gens: dict[tuple[int, int], streams.LazyGenerator] = {}
    extra = () if same_streams else (TARGET_STREAM,)

    def rng(unit: int, stream: int):
        g = gens.get((unit, stream))
        if g is None:
            g = gens[(unit, stream)] = streams.LazyGenerator(seed, unit, stream, *extra)
        return g

    out = {}
    for name, s in requests.surfaces.items():
        n, K = s.items.shape
        out[name] = Target(np.full((n, K), -1, dtype=np.int64), np.zeros((n, K)), np.zeros((n, K)), np.zeros(n, dtype=bool))
    n_days = int(max((int(s.day.max()) + 1 if len(s) else 0) for s in requests.surfaces.values())) if requests.surfaces else 0
    world = requests.world
    for day in range(n_days):
        for name, stream in (("feed", streams.POLICY_VIDEO), ("comments", streams.POLICY_COMMENT)):
            if name not in requests.surfaces:
                continue
            s, target = requests.surfaces[name], out[name]
            batch = getattr(policy, f"rank_{KINDS[name]}s_batch", None)
            rank = policy.rank_videos if name == "feed" else policy.rank_comments
            todo = np.flatnonzero(s.day == day)
            for chunk in np.array_split(todo, max(1, -(-len(todo) // batch_size))) if len(todo) else []:
                units = [int(s.user[i]) if s.user[i] >= 0 else i for i in chunk.tolist()]
                reqs = [requests.request(name, i, rng(u, stream)) for i, u in zip(chunk.tolist(), units)]
                slates = batch(reqs) if batch is not None else [rank(r) for r in reqs]
                for i, request, slate in zip(chunk.tolist(), reqs, slates):
                    k = request.k
                    logged = s.items[i, :k] if name == "feed" else requests.comment_rows(s.items[i, :k])
                    shown = np.asarray(slate.items)
                    target.items[i, : len(shown)] = shown if name == "feed" else world.comment_ids[shown]
                    m, p, sampled = _probabilities(policy, request, slate, logged, marginals)
                    target.marginal[i, :k], target.prefix[i, :k], target.sampled[i] = m, p, sampled
    return out
