"""A logging run's feedback, written in the toolkit's logged-feedback format (README "Bringing your own
logs"; read by ``abtest.offline.feedback``): the run directory's ``feedback/`` holds what the offline
comparison reads, in the same files a team's own logs would be written in, so that nothing offline
re-derives the engine's rules.

* ``requests.parquet``: every policy request the engine made (feed pages and comment sections), with
  the candidates it ranked and, per candidate, the ``popularity`` the platform showed publicly at the
  time (a video's decayed recent plays, a comment's likes: what the popularity policy ranks by);
* ``impressions.parquet``: every shown position with the logging policy's marginal and prefix
  probabilities and, where the user reached it, when;
* ``outcomes.parquet``: per shown item, what the user did — on the feed ``impressions`` (reached),
  ``plays``, ``watch_s`` and ``comment_read_s`` (the seconds read in the section opened after the
  play); in a section ``impressions``, ``reads``, ``read_s`` and ``likes``;
* ``items.parquet``: videos (title, duration) and comments (text, video) in the engine's row order;
* ``sessions.parquet``: each session's start, end and whether the user left (the session model);
* ``meta.json``: the population (users, days), the section preview and the session cap.

Latent truth stays apart, in ``truth/oracle_scores.parquet``: per request, each candidate's value to
the user at that moment (what the oracle ranks by), for simulator-only policies.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .config import SimConfig
from .engine import CommentStore
from .schema import SLATE_KINDS, Event
from .world import World

FEEDBACK_DIR = "feedback"
ORACLE_FILE = "oracle_scores.parquet"  # under truth/
FORMAT, VERSION = "lsvcr-feedback", 1  # the format abtest.offline.feedback reads
SURFACE = {SLATE_KINDS.index("video"): "feed", SLATE_KINDS.index("comment"): "comments"}


def write_feedback(folder: Path, truth: Path, config: SimConfig, world: World, comments: CommentStore,
                   arrays: dict[str, np.ndarray], slates: list[tuple], policy: str | None,
                   shard: tuple[int, int] | None = None) -> None:
    """The run's feedback directory into ``folder`` and the oracle's scores into ``truth``. A shard of a
    sharded run writes its users' rows as ``NAME.parquet/shard-i-of-n.parquet`` (a Parquet dataset the
    reader reads whole); the items and meta.json are every shard's same bytes."""
    import atomic

    slates = sorted(slates, key=lambda row: row[0])
    rid = np.array([s.request_id for s in slates], np.int64)
    kind = np.array([s.kind for s in slates], np.int8)
    ev = _events(arrays, rid)
    folder.mkdir(parents=True, exist_ok=True)

    def write(table: pa.Table, name: str, where: Path = folder) -> None:
        if shard is None:
            pq.write_table(table, where / name)
        else:
            with atomic.writing(where / name / f"shard-{shard[0]}-of-{shard[1]}.parquet", parents=True) as tmp:
                pq.write_table(table, tmp)

    write(_requests(slates, rid, kind), "requests.parquet")
    write(_impressions(slates, ev), "impressions.parquet")
    write(_outcomes(slates, rid, kind, ev, config.comment_slate_size), "outcomes.parquet")
    write(_sessions(arrays), "sessions.parquet")
    with atomic.writing(folder / "items.parquet") as tmp:
        pq.write_table(_items(world, comments), tmp)
    b = config.behaviour
    meta = {"format": FORMAT, "version": VERSION, "logging_policy": policy, "units": config.world.n_users,
            "days": config.days, "start_ts": 0.0, "comment_preview": b.comment_preview,
            "slate_sizes": {"feed": config.video_slate_size, "comments": config.comment_slate_size},
            "session": {"cap": b.max_impressions, "min_gap_s": b.min_gap_s}, "seed": config.behaviour_seed,
            "source": "lsvcr simulate (its manifest.json is the run's config)"}
    atomic.write_text(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True))
    truth.mkdir(parents=True, exist_ok=True)
    write(pa.table({"request_id": pa.array(rid, pa.int64()),
                    "oracle": pa.array([np.asarray(s.oracle, np.float64) for s in slates], pa.list_(pa.float64()))}),
          ORACLE_FILE, truth)


def _events(arrays: dict[str, np.ndarray], rid: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of the event log that belong to logged requests, with each row's request index."""
    req = arrays["request_id"]
    at = np.minimum(np.searchsorted(rid, req), max(len(rid) - 1, 0))
    mine = (req >= 0) & (rid[at] == req) if len(rid) else np.zeros(len(req), bool)
    return {"at": at[mine], **{k: arrays[k][mine] for k in ("event", "ts", "position", "video_id", "comment_id", "value")}}


def _requests(slates, rid, kind) -> pa.Table:
    video = np.array([s.video_id for s in slates], np.int64)
    return pa.table({
        "request_id": pa.array(rid, pa.int64()),
        "ts": pa.array([s.ts for s in slates], pa.float64()),
        "surface": pa.array([SURFACE[int(k)] for k in kind], pa.string()),
        "user_id": pa.array([s.user_id for s in slates], pa.int64()),
        "video_id": pa.array(video, pa.int64(), mask=video < 0),
        "session_id": pa.array([s.session_id for s in slates], pa.int64()),
        "candidates": pa.array([np.asarray(s.candidates, np.int64) for s in slates], pa.list_(pa.int64())),
        "popularity": pa.array([np.asarray(s.popularity, np.float64) for s in slates], pa.list_(pa.float64())),
    })


def _impressions(slates, ev) -> pa.Table:
    lengths = np.array([len(s.items) for s in slates], np.int64)
    n = int(lengths.sum())
    req = np.repeat(np.arange(len(slates)), lengths)
    pos = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    reached = np.full(n, np.nan)
    imp = (ev["event"] == Event.impression) | (ev["event"] == Event.comment_impression)
    start = np.cumsum(lengths) - lengths
    reached[start[ev["at"][imp]] + ev["position"][imp]] = ev["ts"][imp]
    cat = (lambda name, dtype: np.concatenate([np.asarray(getattr(s, name), dtype) for s in slates])  # noqa: E731
           if slates else np.zeros(0, dtype))
    return pa.table({
        "request_id": pa.array(np.array([s.request_id for s in slates], np.int64)[req], pa.int64()),
        "position": pa.array(pos, pa.int64()),
        "item_id": pa.array(cat("items", np.int64), pa.int64()),
        "propensity": pa.array(cat("propensities", np.float64), pa.float64()),
        "prefix_propensity": pa.array(cat("prefix_propensities", np.float64), pa.float64()),
        "ts": pa.array(reached, pa.float64(), mask=np.isnan(reached)),
    })


def _outcomes(slates, rid, kind, ev, width: int) -> pa.Table:
    """One row per shown position: the feed's and the sections' outcomes (zeros where none apply)."""
    lengths = np.array([len(s.items) for s in slates], np.int64)
    start = np.cumsum(lengths) - lengths
    n = int(lengths.sum())
    cols = {name: np.zeros(n) for name in ("impressions", "plays", "watch_s", "comment_read_s", "reads", "read_s", "likes")}
    e, at, pos, value = ev["event"], ev["at"], ev["position"], ev["value"]

    def add(code, name, values=None):
        sel = e == code
        np.add.at(cols[name], start[at[sel]] + pos[sel], 1.0 if values is None else values[sel])

    add(Event.impression, "impressions")
    add(Event.play, "plays")
    add(Event.play, "watch_s", value)
    add(Event.comment_impression, "impressions")
    add(Event.comment_read, "reads")
    add(Event.comment_read, "read_s", value)
    add(Event.comment_like, "likes")
    # each section's read seconds go to the feed position whose play opened it: the video in the
    # latest feed request before the section (request ids are per user, in time order); summed over
    # the section's positions as one row of the slate width (numpy's pairwise order, as analyses sum it)
    is_feed = kind == SLATE_KINDS.index("video")
    read_s = np.zeros(len(slates))
    sections = np.flatnonzero(~is_feed)
    per_position = np.zeros((len(sections), width))
    for row, j in enumerate(sections.tolist()):
        per_position[row, : lengths[j]] = cols["read_s"][start[j]: start[j] + lengths[j]]
    read_s[sections] = per_position.sum(axis=1)
    parent = np.maximum.accumulate(np.where(is_feed, np.arange(len(slates)), 0))
    for j in np.flatnonzero(~is_feed & (read_s > 0)):
        p = parent[j]
        k = int(np.flatnonzero(np.asarray(slates[p].items) == slates[j].video_id)[0])
        cols["comment_read_s"][start[p] + k] += read_s[j]
    item = np.concatenate([np.asarray(s.items, np.int64) for s in slates]) if slates else np.zeros(0, np.int64)
    return pa.table({"request_id": pa.array(np.repeat(rid, lengths), pa.int64()), "item_id": pa.array(item, pa.int64()),
                     **{name: pa.array(v, pa.float64()) for name, v in cols.items()}})


def _items(world: World, comments: CommentStore) -> pa.Table:
    V, C = world.n_videos, len(comments.ids)
    return pa.table({
        "item_id": pa.array(np.concatenate([np.arange(V), comments.ids]).astype(np.int64), pa.int64()),
        "surface": pa.array(["feed"] * V + ["comments"] * C, pa.string()),
        "text": pa.array(list(world.titles) + list(comments.text), pa.string()),
        "video_id": pa.array(np.concatenate([np.full(V, -1), comments.video]).astype(np.int64), pa.int64(),
                             mask=np.arange(V + C) < V),
        "duration_s": pa.array(np.concatenate([world.duration_s, np.full(C, np.nan)]), pa.float64(),
                               mask=np.arange(V + C) >= V),
    })


def _sessions(arrays: dict[str, np.ndarray]) -> pa.Table:
    sid, ts, e = arrays["session_id"], arrays["ts"], arrays["event"]
    order = np.lexsort((np.arange(len(sid)), sid))
    sid, ts, e, user = sid[order], ts[order], e[order], arrays["user_id"][order]
    first = np.r_[True, sid[1:] != sid[:-1]] if len(sid) else np.zeros(0, bool)
    bounds = np.flatnonzero(first)
    end = np.maximum.reduceat(ts, bounds) if len(bounds) else np.zeros(0)
    group = np.cumsum(first) - 1
    ended = np.bincount(group, weights=e == Event.session_end, minlength=len(bounds)) > 0
    return pa.table({"session_id": pa.array(sid[first], pa.int64()), "user_id": pa.array(user[first], pa.int64()),
                     "start_ts": pa.array(ts[first], pa.float64()), "end_ts": pa.array(end, pa.float64()),
                     "ended": pa.array(ended, pa.bool_())})
