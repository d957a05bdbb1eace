"""Replay a logged run: rebuild every policy request as the engine made it, and ask any policy what
it would have shown (the counterfactual half of off-policy evaluation).

A run written by a stochastic logging policy (``lsvcr simulate --explore EPS`` or ``--temperature T``)
keeps ``slates.parquet``: every request's shown items, their marginal and prefix propensities and,
for video requests, the candidates. The rest of each request is rebuilt from the run directory:

* the world regenerates exactly from ``manifest.json`` (its config and seed);
* comment rows: ``comments.parquet`` lists the engine's CommentStore rows in order (the initial
  world's comments, then each day's posts in id order), ``truth/comment_truth.parquet`` their latent
  topic, style and quality (what the oracle ranks by); a comment request's candidates are the rows of
  its video that existed that day, exactly the array object of the day's ``WorldView``;
* the daily ``WorldView``: recent plays start at the world's prior plays (``truth/video_truth.parquet``) and
  become ``popularity_decay · recent + plays of the day`` at each day boundary; like counts start at
  the world's and add each day's logged likes; the comments visible on day d are the rows posted
  before its start. A day's likes, posts and plays count from the day the engine processed them: the
  day of the video request they follow. As in the engine, plays of a session that crosses midnight
  count only while the session's start day lasts (the engine's play list is the start day's);
* histories: the plays before the request (video ids, watch seconds / duration) and, per comment
  request that had reads, (video id, [comment ids read]) — a comment request's history includes the
  play that opened it.

Caveats: oracle policies get each user's *initial* latent taste (the simulator's tastes drift
slowly, ``taste_drift_sd`` per session), so the oracle replayed here is a slightly stale oracle.
Watch fractions are recomputed from watch seconds (equal to rounding). A run served by a batching
policy processed requests at the next tick: near midnight its views may differ from the replay's.

The target's randomness comes from a per-user stream independent of the logging policy's
(``same_streams=True`` reuses the engine's streams: replaying the logging policy itself then
reproduces every logged slate). Target probabilities of the logged items are exact for
deterministic policies (indicators), ``RandomPolicy``, ``EpsilonGreedy``, ``Softmax`` and any policy
with ``slate_probabilities(request, items) -> (marginals, prefix)`` (``items`` entries of the
request's candidates, in logged order); for other stochastic policies they are indicators of one
sampled slate (unbiased, noisier) and ``Target.sampled`` says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import rng as streams
from .config import SimConfig
from .engine import DAY_S, REQUEST_ID_STRIDE, CommentStore, Post, day_view, next_day_counts
from .errors import InputError
from .experiment import check_world, world_config
from .policy import CommentRequest, History, Policy, UserTruth, VideoRequest, WorldView
from .schema import SLATE_KINDS
from .world import World, generate_world

KINDS = SLATE_KINDS
METRICS = {"video": ("watch_s", "plays"), "comment": ("read_s", "reads", "likes")}
# besides the metrics, per position: comment impressions (the positions a user reached in an opened section)
REPLAY_STREAM = 1  # extra spawn-key element of the target policy's streams (independent of the logging policy's)


class Logged(NamedTuple):
    """One kind of logged request, in request-id order ([n] or [n, K], K the configured slate size)."""

    kind: str
    request_id: np.ndarray  # [n]
    user_id: np.ndarray  # [n]
    day: np.ndarray  # [n] the day whose WorldView the request saw
    items: np.ndarray  # [n, K] shown ids (video ids | comment ids), −1 past the slate's end
    logging_marginal: np.ndarray  # [n, K] P(item at its position) under the logging policy (1 past the end)
    logging_prefix: np.ndarray  # [n, K] P(prefix through the position) under the logging policy
    rewards: dict[str, np.ndarray]  # metric -> [n, K]: watch_s, plays, comment_read_s (of the section after the play) | read_s, reads, likes, impressions


class Target(NamedTuple):
    """A replayed policy on one kind of logged request."""

    items: np.ndarray  # [n, K] the slate it shows (sampled with its own stream if stochastic), −1 past the end
    marginal: np.ndarray  # [n, K] its P(logged item at the logged position)
    prefix: np.ndarray  # [n, K] its P(the logged prefix through the position)
    sampled: np.ndarray  # [n] bool: the probabilities are indicators of one sampled slate


class Requests(NamedTuple):
    """slates.parquet in request-id order (user-major, then time), both kinds: [N] or [N, K]."""

    rid: np.ndarray  # [N]
    user: np.ndarray  # [N]
    ts: np.ndarray  # [N]
    is_comment: np.ndarray  # [N] bool
    video: np.ndarray  # [N] the video whose comments were ranked (−1 for video requests)
    items: np.ndarray  # [N, K] shown ids, −1 past the slate's end
    length: np.ndarray  # [N] slate lengths
    marginal: np.ndarray  # [N, K] logging marginals (1 past the end)
    prefix: np.ndarray  # [N, K] logging prefix probabilities (1 past the end)
    parent: np.ndarray  # [N] the video request each request follows (itself for video requests)
    day: np.ndarray  # [N] the day the engine processed it: its parent video request's
    cand_off: np.ndarray  # [N + 1] offsets of each request's candidates in cand_flat (video requests)
    cand_flat: np.ndarray


class EventRows(NamedTuple):
    """The rows of one event type, ordered by (request, position), and their requests' indices."""

    at: np.ndarray  # rows of the event log
    request: np.ndarray  # index into Requests of each row's request


class Events(NamedTuple):
    """The event-log columns replay needs (one entry per event row) and the rows of each event type."""

    rid: np.ndarray  # request_id (−1: none)
    pos: np.ndarray  # position (−1: none)
    vid: np.ndarray  # video_id (−1: none)
    cid: np.ndarray  # comment_id (−1: none)
    val: np.ndarray  # value
    play: EventRows
    comment_impression: EventRows
    comment_read: EventRows
    comment_like: EventRows
    comment_post: EventRows


class Histories(NamedTuple):
    """Each request's history as slices of its user's plays and comment records (all users, in order)."""

    play_video: list[int]
    play_frac: list[float]
    play_start: np.ndarray  # [N] the user's first play
    play_end: np.ndarray  # [N] one past the last play in the request's history
    records: list[tuple[int, list[int]]]  # (video id, [comment ids read]) per comment request with reads
    rec_start: np.ndarray  # [N]
    rec_end: np.ndarray  # [N]


@dataclass
class RunLog:
    """A logged run, reconstructed: world, comment store, daily views, logged requests."""

    run_dir: Path
    config: SimConfig
    manifest: dict
    world: World
    comments: CommentStore
    views: list[WorldView]
    video: Logged
    comment: Logged
    requests: Requests  # both kinds, request-id order
    histories: Histories
    index: dict[str, np.ndarray]  # kind -> its requests' indices into ``requests``
    shown_rows: np.ndarray  # [N, K] comment-store rows of the shown comments (−1 elsewhere)

    def logged(self, kind: str) -> Logged:
        return self.video if kind == "video" else self.comment

    def comment_rows(self, ids: np.ndarray) -> np.ndarray:
        """Comment-store rows of comment ids (any shape; −1 stays −1)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.full(ids.shape, -1, dtype=np.int64)
        shown = ids >= 0
        rows[shown] = _row_lookup(self.comments.ids)(ids[shown])
        return rows

    def comment_likes_by_day(self) -> np.ndarray:
        """[days, comment rows] each comment's like count in each day's view (0 before it existed)."""
        out = np.zeros((len(self.views), len(self.comments.ids)), dtype=np.int64)
        for d, view in enumerate(self.views):
            out[d, : len(view.comment_likes)] = view.comment_likes
        return out

    def request(self, kind: str, i: int, rng=None, truth: UserTruth | None = None) -> VideoRequest | CommentRequest:
        """The i-th logged request of ``kind`` as the engine passed it to the logging policy."""
        q, h = self.requests, self.histories
        j = int(self.index[kind][i])
        user, day = int(q.user[j]), int(q.day[j])
        view = self.views[day]
        history = History(
            h.play_video[h.play_start[j]: h.play_end[j]],
            h.play_frac[h.play_start[j]: h.play_end[j]],
            h.records[h.rec_start[j]: h.rec_end[j]],
        )
        k = int(q.length[j])
        if kind == "video":
            cands = q.cand_flat[q.cand_off[j]: q.cand_off[j + 1]]
            return VideoRequest(user, float(q.ts[j]), cands, k, history, view, rng, truth)
        video = int(q.video[j])
        return CommentRequest(user, float(q.ts[j]), video, view.video_comment_rows[video], k, history, view, rng, truth)

    def logged_comment_rows(self) -> np.ndarray:
        """[n comment requests, K] store rows of each logged comment slate (−1 past its end)."""
        return self.shown_rows[self.index["comment"]]


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def _read(run: Path, name: str, columns=None) -> pa.Table | None:
    """``NAME.parquet`` or the shards under ``NAME/``."""
    path = run / f"{name}.parquet"
    if not path.is_file():
        path = run / name
        if not (path.is_dir() and any(path.glob("*.parquet"))):
            return None
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException, KeyError) as e:
        raise InputError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None


def _ints(col, fill: int = -1) -> np.ndarray:
    return pc.fill_null(col, fill).to_numpy().astype(np.int64)


def _strings(col) -> np.ndarray:
    return np.asarray(pc.cast(col, pa.string()).to_pylist(), dtype=object)


def _lists(col, K: int, fill: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A list column → ([n, K] padded with ``fill``, lengths)."""
    arr = col.combine_chunks()
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets)
    values = arr.flatten().to_numpy().astype(dtype)
    out = np.full((len(arr), K), fill, dtype=dtype)
    rows = np.repeat(np.arange(len(arr)), lengths)
    cols = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)
    out[rows, cols] = values
    return out, lengths


def _row_lookup(ids: np.ndarray):
    """Comment id → store row."""
    sorter = np.argsort(ids, kind="stable")

    def rows(query: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(ids, query, sorter=sorter), len(ids) - 1)
        row = sorter[pos]
        if np.any(ids[row] != query):
            bad = query[ids[row] != query][0]
            raise InputError(f"comment id {bad} of the event log is not in comments.parquet")
        return row

    return rows


def _comment_store(world: World, run: Path) -> CommentStore:
    """The engine's CommentStore at the end of the run (posts included, rows in the engine's order)."""
    try:
        table = pq.read_table(run / "comments.parquet")
        truth = pq.read_table(run / "truth" / "comment_truth.parquet")
    except FileNotFoundError as e:
        raise InputError(f"not a complete run directory: missing {e.filename}") from None
    ids = table.column("comment_id").to_numpy()
    n_init = len(world.comment_video)
    if not np.array_equal(ids[:n_init], np.arange(n_init)) or not np.array_equal(truth.column("comment_id").to_numpy(), ids):
        raise InputError(f"{run / 'comments.parquet'} does not match the world regenerated from manifest.json")
    store = CommentStore(world)
    video = table.column("video_id").to_numpy()
    ts = table.column("created_ts").to_numpy()
    author = _ints(table.column("author_id"))
    text = table.column("text").to_pylist()
    topic, style, quality = (truth.column(c).to_numpy() for c in ("topic", "style", "quality"))
    posts = [Post(int(ids[r]), int(video[r]), int(author[r]), float(ts[r]), int(topic[r]), int(style[r]),
                  float(quality[r]), text[r]) for r in range(n_init, len(ids))]
    start = 0  # add() sorts by id: add each increasing run of ids separately to keep the rows' order
    for end in [i + 1 for i in range(len(posts) - 1) if posts[i + 1].comment_id < posts[i].comment_id] + [len(posts)]:
        store.add(posts[start:end])
        start = end
    store.likes = table.column("like_count").to_numpy().astype(np.int64)
    return store


def load_run(run_dir: Path) -> RunLog:
    """Reconstruct a logged run (see the module docstring). Raises InputError for unusable input."""
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"not a run directory: {run}")
    config = world_config(run)
    manifest = json.loads((run / "manifest.json").read_text())
    slates = _read(run, "slates")
    if slates is None:
        raise InputError(f"{run} has no slates.parquet: was this run logged with --explore/--temperature?")
    events = _read(run, "events", ["event", "video_id", "comment_id", "position", "value", "request_id"])
    if events is None:
        raise InputError(f"{run} has no events.parquet")
    world = generate_world(config.world, config.seed)
    check_world(run, world)
    store = _comment_store(world, run)
    q = _requests(run, slates, config)
    ev = _events(run, events, q.rid)
    views, rows_at_day = _views(run, config, world, store, q, ev)
    histories = _histories(run, q, ev, world)
    shown_rows = _check_slates(run, config, store, views, rows_at_day, q)

    kind_index = {"video": np.flatnonzero(~q.is_comment), "comment": np.flatnonzero(q.is_comment)}
    local = np.empty(len(q.rid), dtype=np.int64)
    for idx in kind_index.values():
        local[idx] = np.arange(len(idx))
    K = q.items.shape[1]

    def per_position(rows: EventRows, kind: str, values=None):
        """[n, K] sums of ``values`` (default 1 per event) of one event type at each request's positions."""
        out = np.zeros((len(kind_index[kind]), K))
        np.add.at(out, (local[rows.request], ev.pos[rows.at]), 1.0 if values is None else values[rows.at])
        return out

    rewards = {
        "video": {"watch_s": per_position(ev.play, "video", ev.val), "plays": per_position(ev.play, "video")},
        "comment": {"read_s": per_position(ev.comment_read, "comment", ev.val),
                    "reads": per_position(ev.comment_read, "comment"), "likes": per_position(ev.comment_like, "comment"),
                    "impressions": per_position(ev.comment_impression, "comment")},
    }
    # each video position's downstream comment read seconds: the section opened after that play
    c_idx = kind_index["comment"]
    parent = q.parent[c_idx]
    at = np.argmax(q.items[parent] == q.video[c_idx][:, None], axis=1)
    downstream = np.zeros((len(kind_index["video"]), K))
    np.add.at(downstream, (local[parent], at), rewards["comment"]["read_s"].sum(axis=1))
    rewards["video"]["comment_read_s"] = downstream
    width = {"video": config.video_slate_size, "comment": config.comment_slate_size}
    logged = {
        kind: Logged(kind, q.rid[i], q.user[i], q.day[i], q.items[i, : width[kind]],
                     q.marginal[i, : width[kind]], q.prefix[i, : width[kind]],
                     {m: r[:, : width[kind]] for m, r in rewards[kind].items()})
        for kind, i in kind_index.items()
    }
    return RunLog(run, config, manifest, world, store, views, logged["video"], logged["comment"], q, histories,
                  kind_index, shown_rows)


def _requests(run: Path, slates: pa.Table, config: SimConfig) -> Requests:
    """slates.parquet in request-id order (user-major, then time), with the day each was processed."""
    slates = slates.take(pa.array(np.argsort(slates.column("request_id").to_numpy(), kind="stable")))
    K = max(config.video_slate_size, config.comment_slate_size)
    items, length = _lists(slates.column("items"), K, -1, np.int64)
    marginal, _ = _lists(slates.column("propensities"), K, 1.0, np.float64)
    prefix, _ = _lists(slates.column("prefix_propensities"), K, 1.0, np.float64)
    bad = (items >= 0) & ~((marginal > 0) & (prefix > 0))  # NaN included
    if np.any(bad):
        raise InputError(f"{run}: {int(bad.sum()):,} logged propensities in slates.parquet are NaN or not positive "
                         f"(did the logging policy's probabilities underflow? try a higher --temperature)")
    rid = slates.column("request_id").to_numpy()
    user = slates.column("user_id").to_numpy()
    is_comment = _strings(slates.column("kind")) == "comment"
    N = len(rid)
    if (N and is_comment[0]) or np.any(np.diff(rid) <= 0):
        raise InputError(f"{run}: slates do not start with a video request or repeat a request id")
    parent = np.maximum.accumulate(np.where(is_comment, 0, np.arange(N)))  # the video request a comment one follows
    if np.any(user[parent] != user):
        raise InputError(f"{run}: a user's first logged request is a comment request")
    ts = slates.column("ts").to_numpy()
    cands = slates.column("candidates").combine_chunks()
    return Requests(
        rid=rid, user=user, ts=ts, is_comment=is_comment, video=_ints(slates.column("video_id")),
        items=items, length=length, marginal=marginal, prefix=prefix, parent=parent,
        day=np.floor(ts[parent] / DAY_S).astype(np.int64),  # when the engine processed it
        cand_off=cands.offsets.to_numpy().astype(np.int64), cand_flat=cands.flatten().to_numpy().astype(np.int64),
    )


def _events(run: Path, events: pa.Table, rid: np.ndarray) -> Events:
    """The event columns replay needs, and each needed event type's rows by (request, position)."""
    kind = _strings(events.column("event"))
    cols = {"rid": _ints(events.column("request_id")), "pos": _ints(events.column("position")),
            "vid": _ints(events.column("video_id")), "cid": _ints(events.column("comment_id")),
            "val": events.column("value").to_numpy()}

    def rows(name: str) -> EventRows:
        sel = np.flatnonzero(kind == name)
        at = sel[np.lexsort((cols["pos"][sel], cols["rid"][sel]))]
        return EventRows(at, _request_index(run, rid, cols["rid"][at]))

    return Events(**cols, **{name: rows(name) for name in
                             ("play", "comment_impression", "comment_read", "comment_like", "comment_post")})


def _request_index(run: Path, rid: np.ndarray, rids: np.ndarray) -> np.ndarray:
    i = np.minimum(np.searchsorted(rid, rids), max(len(rid) - 1, 0))
    if len(rids) and (len(rid) == 0 or np.any(rid[i] != rids)):
        raise InputError(f"{run}: events refer to requests missing from slates.parquet")
    return i


def _views(run: Path, config: SimConfig, world: World, store: CommentStore, q: Requests, ev: Events):
    """The WorldView of every day (the engine's daily-visibility rule, ``engine.day_view`` and
    ``engine.next_day_counts``, fed with the logged events), and how many comment rows each day could see."""
    n_rows, n_init, day = len(store.ids), len(world.comment_video), q.day
    row_of = _row_lookup(store.ids)
    n_days = max(config.days, int(day.max()) + 1 if len(day) else 0)
    # posts: visible from the day after the one that processed them; rows follow the days
    post_rows = row_of(ev.cid[ev.comment_post.at])
    if not np.array_equal(np.sort(post_rows), np.arange(n_init, n_rows)):
        raise InputError(f"{run}: comment_post events do not match the posted rows of comments.parquet")
    post_day = np.empty(n_rows - n_init, dtype=np.int64)
    post_day[post_rows - n_init] = day[ev.comment_post.request]
    if np.any(np.diff(post_day) < 0):
        raise InputError(f"{run}: posted comments are not in the order of the days they were posted")
    rows_at_day = n_init + np.searchsorted(post_day, np.arange(n_days), side="left")
    # likes: the world's, then each day's
    like_rows, like_day = row_of(ev.cid[ev.comment_like.at]), day[ev.comment_like.request]
    likes = np.zeros(n_rows, dtype=np.int64)
    likes[:n_init] = world.comment_likes
    if not np.array_equal(likes + np.bincount(like_rows, minlength=n_rows), store.likes):
        raise InputError(f"{run}: logged comment likes do not add up to comments.parquet like_count")
    # plays: counted on the day their slate was requested (the engine's delta of that day)
    play_video, play_day = ev.vid[ev.play.at], day[ev.play.request]
    recent = world.prior_plays.copy()
    views = []
    for d in range(n_days):
        views.append(day_view(world, store, recent, likes, int(rows_at_day[d])))
        recent, likes = next_day_counts(recent, likes, play_video[play_day == d], like_rows[like_day == d],
                                        config.popularity_decay)
    return views, rows_at_day


def _histories(run: Path, q: Requests, ev: Events, world: World) -> Histories:
    """Where each request's history ends in the user's plays and comment records."""
    rid, video, parent = q.rid, q.video, q.parent
    plays = ev.play.at
    p_rid, p_vid = ev.rid[plays], ev.vid[plays]
    first_of_user = q.user * REQUEST_ID_STRIDE
    play_end = np.searchsorted(p_rid, rid)
    play_at = {key: i for i, key in enumerate(zip(p_rid.tolist(), p_vid.tolist()))}
    for j in np.flatnonzero(q.is_comment):  # a comment request's history includes the play that opened it
        i = play_at.get((int(rid[parent[j]]), int(video[j])))
        if i is None:
            raise InputError(f"{run}: comment request {rid[j]} follows no logged play of video {video[j]}")
        play_end[j] = i + 1
    reads = ev.comment_read.at
    rec_rid, first = np.unique(ev.rid[reads], return_index=True)
    cids = ev.cid[reads].tolist()
    bounds = list(first) + [len(reads)]
    rec_video = video[_request_index(run, rid, rec_rid)]
    return Histories(
        play_video=p_vid.tolist(), play_frac=(ev.val[plays] / world.duration_s[p_vid]).tolist(),
        play_start=np.searchsorted(p_rid, first_of_user), play_end=play_end,
        records=[(int(v), cids[bounds[i]: bounds[i + 1]]) for i, v in enumerate(rec_video.tolist())],
        rec_start=np.searchsorted(rec_rid, first_of_user), rec_end=np.searchsorted(rec_rid, rid),
    )


def _check_slates(run: Path, config: SimConfig, store: CommentStore, views: list[WorldView], rows_at_day,
                  q: Requests) -> np.ndarray:
    """Check that every logged slate fits the reconstruction (its length; comments its video had that
    day) and return the store rows of the shown comments ([N, K], −1 elsewhere)."""
    items, is_comment, video, day = q.items, q.is_comment, q.video, q.day
    shown_comments = is_comment[:, None] & (items >= 0)
    rows = np.full_like(items, -1)
    rows[shown_comments] = _row_lookup(store.ids)(items[shown_comments])
    n_rows_of_video = np.array([len(views[d].video_comment_rows[v]) if c else 0
                                for d, v, c in zip(day.tolist(), video.tolist(), is_comment.tolist())], dtype=np.int64)
    expected = np.where(is_comment, np.minimum(config.comment_slate_size, n_rows_of_video),
                        np.minimum(config.video_slate_size, np.diff(q.cand_off)))
    if np.any(q.length != expected):
        j = int(np.flatnonzero(q.length != expected)[0])
        raise InputError(f"{run}: request {q.rid[j]} shows {q.length[j]} items where the replay expects "
                         f"{expected[j]} (was the run made with this code's configuration?)")
    bad = shown_comments & ((rows >= rows_at_day[day][:, None]) | (store.video[np.maximum(rows, 0)] != video[:, None]))
    if np.any(bad):
        raise InputError(f"{run}: request {q.rid[np.flatnonzero(bad.any(axis=1))[0]]} shows a comment its "
                         f"video did not have that day")
    return rows


# ----------------------------------------------------------------------------------------------
# Replaying a policy
# ----------------------------------------------------------------------------------------------
def _probabilities(policy, kind: str, request, slate, logged: np.ndarray, marginals: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """The target's (marginal, prefix) probabilities of the logged candidate entries, and whether
    they are indicators of the one sampled ``slate``."""
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


def replay(log: RunLog, policy: Policy, *, same_streams: bool = False, batch_size: int = 1024,
           marginals: bool = True) -> dict[str, Target]:
    """Run ``policy`` on every logged request (day by day, each user's requests in order).

    ``marginals=False`` skips the position marginals of stochastic targets (NaN; exact Plackett–Luce
    marginals cost a numerical integral per slate, and only position-wise estimators use them).

    Uses ``rank_videos_batch`` / ``rank_comments_batch`` when the policy has them (chunks of
    ``batch_size`` requests of one day), else one call per request.
    """
    seed = log.config.behaviour_seed
    extra = () if same_streams else (REPLAY_STREAM,)
    gens: dict[tuple[int, int], streams.LazyGenerator] = {}
    truths: dict[int, UserTruth] = {}

    def rng(user: int, stream: int):
        g = gens.get((user, stream))
        if g is None:
            g = gens[(user, stream)] = streams.LazyGenerator(seed, user, stream, *extra)
        return g

    def truth(user: int):
        if not policy.needs_truth:
            return None
        t = truths.get(user)
        if t is None:
            t = truths[user] = UserTruth(log.world.taste[user], log.world.style_taste[user])
        return t

    out = {}
    for kind in KINDS:
        lg = log.logged(kind)
        n, K = lg.items.shape
        out[kind] = Target(np.full((n, K), -1, dtype=np.int64), np.zeros((n, K)), np.zeros((n, K)), np.zeros(n, dtype=bool))
    rows = log.logged_comment_rows()
    for day in range(len(log.views)):
        for kind, stream in (("video", streams.POLICY_VIDEO), ("comment", streams.POLICY_COMMENT)):
            lg, target = log.logged(kind), out[kind]
            batch = getattr(policy, f"rank_{kind}s_batch", None)
            rank = policy.rank_videos if kind == "video" else policy.rank_comments
            todo = np.flatnonzero(lg.day == day)
            for chunk in np.array_split(todo, max(1, -(-len(todo) // batch_size))) if len(todo) else []:
                requests = [log.request(kind, i, rng(int(lg.user_id[i]), stream), truth(int(lg.user_id[i]))) for i in chunk]
                slates = batch(requests) if batch is not None else [rank(r) for r in requests]
                for i, request, slate in zip(chunk.tolist(), requests, slates):
                    k = request.k
                    logged = lg.items[i, :k] if kind == "video" else rows[i, :k]
                    shown = np.asarray(slate.items)
                    target.items[i, : len(shown)] = shown if kind == "video" else log.comments.ids[shown]
                    m, p, sampled = _probabilities(policy, kind, request, slate, logged, marginals)
                    target.marginal[i, :k], target.prefix[i, :k], target.sampled[i] = m, p, sampled
    return out
