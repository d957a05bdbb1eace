"""Logged feedback: the one input of the offline comparison, in a documented Parquet format any team's
logs can be written in (the simulator is one producer, ``lsvcr data import-obd`` another).

A feedback directory holds

``requests.parquet``  one row per logged request
    ``request_id`` int64 (unique) · ``ts`` float64 seconds · ``surface`` string: ``feed`` (a page of the
    video feed) or ``comments`` (a video's comment section) · ``candidates`` list<int64>: the items the
    logging policy ranked · optional: ``user_id`` int64 (without it the unit is the request),
    ``video_id`` int64 (the section's video; required on ``comments``), ``session_id`` int64, and any
    list<float64> column aligned with ``candidates`` as a candidate feature (``popularity``: the
    platform's public count for each candidate at the time, which the ``popularity`` policy ranks by)
``impressions.parquet``  one row per shown position
    ``request_id`` · ``position`` int64 (numbered as in the logs, from 0) · ``item_id`` int64 (one of the
    request's candidates) · ``propensity`` float64 in (0, 1]: the logging policy's probability of this
    item at this position (the marginal) · optional: ``prefix_propensity`` float64 (the probability of
    the whole shown prefix through this position, where the logger knows it; null elsewhere) and ``ts``
    float64 (when the item was shown; model policies rebuild histories from it)
``outcomes.parquet``  per shown item, its named outcomes
    ``request_id`` · ``item_id`` · one float64 column per reward (``click``; ``impressions``, ``plays``,
    ``watch_s``, ``comment_read_s`` on the feed; ``reads``, ``read_s``, ``likes`` on comments; ...);
    an item with no row has zeros
``items.parquet`` (optional)  ``item_id`` · ``surface`` · ``text`` (a title or a comment) · optional
    ``video_id`` (a comment's video) and ``duration_s`` (a video's); a policy that reads text needs it
``sessions.parquet`` (optional)  ``session_id`` · ``user_id`` · ``start_ts`` · ``end_ts`` · ``ended``
    (bool: the user left; False: cut by the log's end or a cap); the session model needs it
``meta.json``  ``{"format": "lsvcr-feedback", "version": 1}`` and optionally ``logging_policy``, ``units``
    (how many users the population has, those with no request included), ``start_ts`` (the log's day 0,
    default: the first request's day) and ``days`` (its length), ``slate_sizes`` (per surface, the
    positions a slate can have; default: the longest logged), ``comment_preview`` (how many comments a
    closed section previews), ``session`` (``{"cap": impressions per session, "min_gap_s": ...}``) and
    ``seed`` (of stochastic target policies' own draws; default 0)

``read_feedback`` checks all of it and returns one ``Feedback``, built once per log; every bad input is
an ``InputError`` of one line naming the file, column and value.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import atomic

from ..errors import InputError

FORMAT = "lsvcr-feedback"
VERSION = 1
SURFACES = ("feed", "comments")
DAY_S = 86400.0
REQUESTS, IMPRESSIONS, OUTCOMES, ITEMS, SESSIONS, META = (
    "requests.parquet", "impressions.parquet", "outcomes.parquet", "items.parquet", "sessions.parquet", "meta.json")
REQUEST_COLUMNS = ("request_id", "ts", "surface", "candidates")
IMPRESSION_COLUMNS = ("request_id", "position", "item_id", "propensity")


@dataclass(frozen=True)
class Surface:
    """One surface's logged requests, in log order (user, then time): [n] per request, [n, K] per
    position (K: the longest slate; −1 items and zero rewards past a slate's end)."""

    name: str
    request_id: np.ndarray  # [n]
    user: np.ndarray  # [n] the user (−1: none)
    ts: np.ndarray  # [n]
    day: np.ndarray  # [n] the day the request counts in (a section: its feed page's)
    video: np.ndarray  # [n] the section's video (−1 on the feed)
    session: np.ndarray  # [n] (−1: none)
    cand_off: np.ndarray  # [n + 1] offsets into cand_flat
    cand_flat: np.ndarray  # item ids of every request's candidates
    features: dict  # name -> [len(cand_flat)] float64, aligned with cand_flat
    items: np.ndarray  # [n, K] shown item ids
    marginal: np.ndarray  # [n, K] logging P(item at its position) (1 past the end)
    prefix: np.ndarray  # [n, K] logging P(shown prefix through the position) (NaN where unknown)
    shown_ts: np.ndarray  # [n, K] when each item was shown (NaN where unknown)
    rewards: dict  # name -> [n, K]

    def __len__(self) -> int:
        return len(self.request_id)

    @property
    def length(self) -> np.ndarray:
        return (self.items >= 0).sum(axis=1)

    def candidates(self, i: int) -> np.ndarray:
        return self.cand_flat[self.cand_off[i]: self.cand_off[i + 1]]

    def candidate_feature(self, name: str, items: np.ndarray) -> np.ndarray:
        """[n, K] the feature ``name`` of each request's ``items`` (its candidates; 0 past the end)."""
        values = self.features[name]
        n, K = items.shape
        out = np.zeros((n, K))
        for i in range(n):
            cands = self.cand_flat[self.cand_off[i]: self.cand_off[i + 1]]
            row = items[i]
            ok = row >= 0
            if ok.any():
                order = np.argsort(cands, kind="stable")
                at = order[np.searchsorted(cands, row[ok], sorter=order)]
                out[i, ok] = values[self.cand_off[i] + at]
        return out


@dataclass(frozen=True)
class Items:
    """``items.parquet`` of one surface: dense rows in file order."""

    ids: np.ndarray  # [R]
    text: list  # [R]
    video: np.ndarray  # [R] a comment's video (−1 for videos or unknown)
    duration_s: np.ndarray  # [R] a video's duration (NaN unknown)
    index: dict = field(repr=False)  # item id -> row

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of item ids (any shape; −1 stays −1; an unknown id raises InputError)."""
        ids = np.asarray(ids, np.int64)
        order = np.argsort(self.ids, kind="stable")
        at = order[np.minimum(np.searchsorted(self.ids, ids, sorter=order), max(len(order) - 1, 0))] if len(order) \
            else np.zeros(ids.shape, np.int64)
        known = (self.ids[at] == ids) if len(order) else np.zeros(ids.shape, bool)
        bad = (ids >= 0) & ~known
        if bad.any():
            raise InputError(f"{ITEMS}: item {ids[bad].ravel()[0]} is in the logs but not listed")
        return np.where(ids >= 0, at, -1)


@dataclass(frozen=True)
class Sessions:
    """``sessions.parquet``: one row per session."""

    session_id: np.ndarray
    user: np.ndarray
    start: np.ndarray
    end: np.ndarray
    ended: np.ndarray


@dataclass(frozen=True)
class Feedback:
    """A feedback directory, read and checked once (``read_feedback``)."""

    path: Path
    meta: dict
    surfaces: dict  # name -> Surface
    items: dict  # surface -> Items (only those listed in items.parquet)
    sessions: Sessions | None
    n_users: int  # units' users (the population; 0 when the log has no users)
    n_days: int

    @property
    def has_users(self) -> bool:
        return self.n_users > 0

    @property
    def n_units(self) -> int:
        """user-days with users, else requests."""
        return self.n_users * self.n_days if self.has_users else sum(len(s) for s in self.surfaces.values())

    @property
    def unit(self) -> str:
        return "user-day" if self.has_users else "request"

    @property
    def logging_policy(self):
        return self.meta.get("logging_policy")

    def rewards(self, surface: str) -> tuple[str, ...]:
        return tuple(self.surfaces[surface].rewards) if surface in self.surfaces else ()


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def write_feedback(out: Path, requests: pa.Table, impressions: pa.Table, outcomes: pa.Table, meta: dict,
                   items: pa.Table | None = None, sessions: pa.Table | None = None, *, replace: bool = False) -> Path:
    """Write a feedback directory (published atomically; an existing ``out`` is replaced only with
    ``replace``). The tables are written as given: ``read_feedback`` checks them."""
    out = Path(out)
    with atomic.publishing_dir(out, replace=replace, parents=True) as tmp:
        write_feedback_into(tmp, requests, impressions, outcomes, meta, items, sessions)
    return out


def write_feedback_into(folder: Path, requests: pa.Table, impressions: pa.Table, outcomes: pa.Table, meta: dict,
                        items: pa.Table | None = None, sessions: pa.Table | None = None) -> None:
    """The files of a feedback directory into an existing empty ``folder`` (a run directory's own
    ``feedback/`` while the run is assembled)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in ((REQUESTS, requests), (IMPRESSIONS, impressions), (OUTCOMES, outcomes), (ITEMS, items),
                        (SESSIONS, sessions)):
        if table is not None:
            pq.write_table(table, folder / name)
    (folder / META).write_text(json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=1, sort_keys=True))


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def locate(path) -> Path:
    """The feedback directory of ``path``: itself, or a simulation run's ``feedback/``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if (path / META).is_file():
        return path
    if (path / "feedback" / META).is_file():
        return path / "feedback"
    if (path / "manifest.json").is_file():
        raise InputError(f"{path}: this run logged no feedback (run lsvcr simulate with --temperature T or "
                         f"--explore EPS to log propensities)")
    raise InputError(f"{path}: not a feedback directory (no {META}; see README 'Bringing your own logs')")


def _table(folder: Path, name: str, required: bool = True) -> pa.Table | None:
    path = folder / name  # a file, or a folder of Parquet files (a sharded simulation's)
    if not path.exists():
        if required:
            raise InputError(f"{path}: missing (a feedback directory needs {REQUESTS}, {IMPRESSIONS} and {OUTCOMES})")
        return None
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as e:
        raise InputError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None


def _require(table: pa.Table, name: str, columns) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"{name}: no column {missing[0]!r} (columns: {', '.join(table.column_names)})")


def _ints(table: pa.Table, name: str, column: str, nullable: bool = False) -> np.ndarray:
    col = table.column(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
        raise InputError(f"{name}: column {column!r} must hold integers, not {col.type}")
    if col.null_count and not nullable:
        raise InputError(f"{name}: column {column!r} has {col.null_count} empty (null) values")
    return pc.fill_null(col, -1).to_numpy().astype(np.int64) if col.null_count else col.to_numpy().astype(np.int64)


def _floats(table: pa.Table, name: str, column: str, nullable: bool = False, finite: bool = True) -> np.ndarray:
    col = table.column(column)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
        raise InputError(f"{name}: column {column!r} must hold numbers, not {col.type}")
    if col.null_count and not nullable:
        raise InputError(f"{name}: column {column!r} has {col.null_count} empty (null) values")
    x = pc.fill_null(pc.cast(col, pa.float64()), math.nan).to_numpy(zero_copy_only=False)
    if finite:
        bad = ~np.isfinite(x) if not nullable else (np.isinf(x) | (np.isnan(x) & ~np.asarray(col.is_null())))
        if bad.any():
            raise InputError(f"{name}: column {column!r} is not finite ({x[bad][0]!r}) in row {int(np.flatnonzero(bad)[0])}")
    return x


def _meta(folder: Path) -> dict:
    path = folder / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path}: not a feedback log (its \"format\" must be {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise InputError(f"{path}: feedback format version {meta.get('version')!r}; this toolkit reads version {VERSION}")
    for key in ("units", "days", "comment_preview"):
        v = meta.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InputError(f"{path}: {key!r} must be a positive integer, got {v!r}")
    return meta


def read_feedback(path) -> Feedback:
    """Read and check a feedback directory (or a simulation run holding one)."""
    folder = locate(path)
    meta = _meta(folder)
    req, imp, out = (_table(folder, n) for n in (REQUESTS, IMPRESSIONS, OUTCOMES))
    _require(req, REQUESTS, REQUEST_COLUMNS)
    _require(imp, IMPRESSIONS, IMPRESSION_COLUMNS)
    _require(out, OUTCOMES, ("request_id", "item_id"))

    rid = _ints(req, REQUESTS, "request_id")
    if len(np.unique(rid)) != len(rid):
        dup = rid[np.flatnonzero(np.diff(np.sort(rid)) == 0)[0]]
        raise InputError(f"{REQUESTS}: request_id {dup} appears more than once")
    ts = _floats(req, REQUESTS, "ts")
    surface = np.asarray(pc.cast(req.column("surface"), pa.string()).to_pylist(), dtype=object)
    unknown = sorted({str(s) for s in surface} - set(SURFACES))
    if unknown:
        raise InputError(f"{REQUESTS}: surface {unknown[0]!r} is neither 'feed' nor 'comments'")
    has_users = "user_id" in req.column_names
    user = _ints(req, REQUESTS, "user_id", nullable=True) if has_users else np.full(len(rid), -1, np.int64)
    if has_users and (user < 0).any():
        raise InputError(f"{REQUESTS}: user_id is empty or negative in row {int(np.flatnonzero(user < 0)[0])}")
    video = _ints(req, REQUESTS, "video_id", nullable=True) if "video_id" in req.column_names else np.full(len(rid), -1)
    if ((surface == "comments") & (video < 0)).any():
        raise InputError(f"{REQUESTS}: a comments request needs its video_id (row {int(np.flatnonzero((surface == 'comments') & (video < 0))[0])})")
    session = _ints(req, REQUESTS, "session_id", nullable=True) if "session_id" in req.column_names else np.full(len(rid), -1)
    cands = req.column("candidates").combine_chunks()
    if not (pa.types.is_list(cands.type) or pa.types.is_large_list(cands.type)) or not pa.types.is_integer(cands.type.value_type):
        raise InputError(f"{REQUESTS}: column 'candidates' must be a list of item ids (integers), not {cands.type}")
    if cands.null_count or cands.flatten().null_count:
        raise InputError(f"{REQUESTS}: column 'candidates' has empty (null) entries")
    cand_off = cands.offsets.to_numpy().astype(np.int64)
    cand_flat = cands.flatten().to_numpy().astype(np.int64)
    features = {}
    for name in req.column_names:
        col = req.column(name)
        if name in ("candidates",) or not pa.types.is_list(col.type):
            continue
        arr = col.combine_chunks()
        if not np.array_equal(arr.offsets.to_numpy(), cand_off) or not (
                pa.types.is_floating(arr.type.value_type) or pa.types.is_integer(arr.type.value_type)):
            raise InputError(f"{REQUESTS}: feature column {name!r} must be a list of numbers aligned with 'candidates'")
        features[name] = pc.cast(arr.flatten(), pa.float64()).to_numpy(zero_copy_only=False)

    # impressions: one row per shown position
    i_rid = _ints(imp, IMPRESSIONS, "request_id")
    pos = _ints(imp, IMPRESSIONS, "position")
    item = _ints(imp, IMPRESSIONS, "item_id")
    prop = _floats(imp, IMPRESSIONS, "propensity", nullable=True, finite=False)
    bad = ~np.isfinite(prop)
    if bad.any():
        raise InputError(f"{IMPRESSIONS}: propensity is missing or not finite for request {i_rid[bad][0]} position {pos[bad][0]}")
    bad = ~((prop > 0) & (prop <= 1))
    if bad.any():
        raise InputError(f"{IMPRESSIONS}: propensity {prop[bad][0]!r} of request {i_rid[bad][0]} position "
                         f"{pos[bad][0]} is outside (0, 1]")
    prefix = (_floats(imp, IMPRESSIONS, "prefix_propensity", nullable=True, finite=False)
              if "prefix_propensity" in imp.column_names else np.full(len(i_rid), math.nan))
    bad = np.isfinite(prefix) & ~((prefix > 0) & (prefix <= 1)) | np.isinf(prefix)
    if bad.any():
        raise InputError(f"{IMPRESSIONS}: prefix_propensity {prefix[bad][0]!r} of request {i_rid[bad][0]} is outside (0, 1]")
    shown_ts = _floats(imp, IMPRESSIONS, "ts", nullable=True) if "ts" in imp.column_names else np.full(len(i_rid), math.nan)
    if (pos < 0).any():
        raise InputError(f"{IMPRESSIONS}: position {pos[pos < 0][0]} is negative (number positions from 0)")
    order = np.argsort(rid, kind="stable")
    at = order[np.minimum(np.searchsorted(rid, i_rid, sorter=order), max(len(rid) - 1, 0))] if len(rid) else np.zeros(len(i_rid), np.int64)
    unknown = (rid[at] != i_rid) if len(rid) else np.ones(len(i_rid), bool)
    if unknown.any():
        raise InputError(f"{IMPRESSIONS}: request {i_rid[unknown][0]} is not in {REQUESTS}")
    key = at * (int(pos.max()) + 1 if len(pos) else 1) + pos
    if len(np.unique(key)) != len(key):
        k = np.sort(key)
        dup = k[np.flatnonzero(np.diff(k) == 0)[0]]
        j = int(np.flatnonzero(key == dup)[0])
        raise InputError(f"{IMPRESSIONS}: request {i_rid[j]} position {pos[j]} is logged more than once "
                         f"(its marginals would sum past 1)")
    codes = _Codes(np.concatenate([cand_flat, item]))
    shown_key = at * codes.size + codes(item)  # (request row, item): one int64 key
    if len(np.unique(shown_key)) != len(shown_key):
        k = np.sort(shown_key)
        j = int(np.flatnonzero(shown_key == k[np.flatnonzero(np.diff(k) == 0)[0]])[0])
        raise InputError(f"{IMPRESSIONS}: request {i_rid[j]} shows item {item[j]} twice")
    cand_row = np.repeat(np.arange(len(rid)), np.diff(cand_off))
    bad = ~np.isin(shown_key, cand_row * codes.size + codes(cand_flat))
    if bad.any():  # shown items must be candidates
        j = int(np.flatnonzero(bad)[0])
        raise InputError(f"{IMPRESSIONS}: request {i_rid[j]} shows item {item[j]}, which is not among its candidates")

    # outcomes: joined on (request, item) of the shown items
    o_rid, o_item = _ints(out, OUTCOMES, "request_id"), _ints(out, OUTCOMES, "item_id")
    rewards_cols = [c for c in out.column_names if c not in ("request_id", "item_id")]
    o_row = order[np.minimum(np.searchsorted(rid, o_rid, sorter=order), max(len(rid) - 1, 0))] if len(rid) else o_rid
    known = codes.known(o_item) & (rid[o_row] == o_rid) if len(rid) else np.zeros(len(o_rid), bool)
    s_order = np.argsort(shown_key, kind="stable")
    o_key = np.where(known, o_row * codes.size + codes(np.where(known, o_item, item[0] if len(item) else 0)), -1)
    o_at = s_order[np.minimum(np.searchsorted(shown_key, o_key, sorter=s_order), max(len(shown_key) - 1, 0))] \
        if len(shown_key) else np.zeros(len(o_key), np.int64)
    bad = ~known | (shown_key[o_at] != o_key) if len(shown_key) else np.ones(len(o_key), bool)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{OUTCOMES}: an outcome for item {o_item[k]} of request {o_rid[k]}, which that request "
                         f"did not show")
    if len(np.unique(o_at)) != len(o_at):
        k = np.sort(o_at)
        j = k[np.flatnonzero(np.diff(k) == 0)[0]]
        raise InputError(f"{OUTCOMES}: request {i_rid[j]} item {item[j]} has more than one outcome row")
    reward_values = {c: _floats(out, OUTCOMES, c) for c in rewards_cols}

    origin = meta.get("start_ts")
    if origin is None:
        origin = math.floor(ts.min() / DAY_S) * DAY_S if len(ts) else 0.0
    elif isinstance(origin, bool) or not isinstance(origin, (int, float)) or not math.isfinite(origin):
        raise InputError(f"{META}: start_ts must be a number of seconds, got {origin!r}")
    surfaces = {}
    for name in SURFACES:
        rows = np.flatnonzero(surface == name)
        if not len(rows):
            continue
        rows = rows[np.lexsort((rid[rows], ts[rows], user[rows]))]  # log order: user, then time
        sel = np.isin(at, rows)
        local = np.full(len(rid), -1, np.int64)
        local[rows] = np.arange(len(rows))
        K = max(int(pos[sel].max()) + 1 if sel.any() else 1, int((meta.get("slate_sizes") or {}).get(name, 1)))
        n = len(rows)
        shape = (n, K)
        items_ = np.full(shape, -1, np.int64)
        marg, pre, sts = np.ones(shape), np.full(shape, math.nan), np.full(shape, math.nan)
        ii, jj = local[at[sel]], pos[sel]
        items_[ii, jj], marg[ii, jj], pre[ii, jj], sts[ii, jj] = item[sel], prop[sel], prefix[sel], shown_ts[sel]
        rew = {}
        o_sel = np.isin(at[o_at], rows)
        for c, values in reward_values.items():
            r_ = np.zeros(shape)
            j = o_at[o_sel]
            r_[local[at[j]], pos[j]] = values[o_sel]
            rew[c] = r_
        offs = np.concatenate([[0], np.cumsum(cand_off[rows + 1] - cand_off[rows])])
        flat_idx = np.concatenate([np.arange(cand_off[r], cand_off[r + 1]) for r in rows]) if n else np.zeros(0, np.int64)
        surfaces[name] = Surface(
            name=name, request_id=rid[rows], user=user[rows], ts=ts[rows], day=np.zeros(n, np.int64), video=video[rows],
            session=session[rows], cand_off=offs.astype(np.int64), cand_flat=cand_flat[flat_idx],
            features={k: v[flat_idx] for k, v in features.items()}, items=items_, marginal=marg, prefix=pre,
            shown_ts=sts, rewards=rew)
    surfaces = _with_days(surfaces, has_users, float(origin))

    items = _items(folder)
    sessions = _sessions(folder)
    if has_users:
        n_users = meta.get("units") or int(user.max()) + 1 if len(user) else 0
        if len(user) and user.max() >= n_users:
            raise InputError(f"{META}: units is {n_users}, but the logs name user {int(user.max())}")
    else:
        n_users = 0
    days = np.concatenate([s.day for s in surfaces.values()]) if surfaces else np.zeros(0, np.int64)
    n_days = meta.get("days") or (int(days.max()) + 1 if len(days) else 1)
    if len(days) and (days.max() >= n_days or days.min() < 0):
        raise InputError(f"{META}: the log covers days 0..{n_days - 1} from start_ts {origin:g}, but a request "
                         f"falls on day {int(days.max() if days.max() >= n_days else days.min())}")
    return Feedback(folder, meta, surfaces, items, sessions, n_users, n_days)


class _Codes:
    """Dense codes of int64 ids (for joining on (row, id) keys)."""

    def __init__(self, ids: np.ndarray):
        self.values = np.unique(ids)
        self.size = max(len(self.values), 1)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.values, ids)

    def known(self, ids: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(self.values, ids), max(len(self.values) - 1, 0))
        return self.values[at] == ids if len(self.values) else np.zeros(len(ids), bool)


def _with_days(surfaces: dict, has_users: bool, origin: float) -> dict:
    """Each request's day since ``origin``; a comment section counts in its feed page's day (the user's
    latest feed request at or before it), as the platform counts what a page led to."""
    out = dict(surfaces)
    feed = surfaces.get("feed")
    if feed is not None:
        out["feed"] = _replace(feed, day=np.floor((feed.ts - origin) / DAY_S).astype(np.int64))
    com = surfaces.get("comments")
    if com is not None:
        day = np.floor((com.ts - origin) / DAY_S).astype(np.int64)
        if feed is not None and has_users:
            f_order = np.lexsort((feed.ts, feed.user))
            fu, ft, fd = feed.user[f_order], feed.ts[f_order], out["feed"].day[f_order]
            for i in range(len(com)):
                lo, hi = np.searchsorted(fu, com.user[i], "left"), np.searchsorted(fu, com.user[i], "right")
                j = lo + np.searchsorted(ft[lo:hi], com.ts[i], "right") - 1
                if j >= lo:
                    day[i] = fd[j]
        out["comments"] = _replace(com, day=day)
    return out


def _replace(s: Surface, **kw) -> Surface:
    from dataclasses import replace

    return replace(s, **kw)


def _items(folder: Path) -> dict:
    table = _table(folder, ITEMS, required=False)
    if table is None:
        return {}
    _require(table, ITEMS, ("item_id", "surface"))
    ids = _ints(table, ITEMS, "item_id")
    surface = np.asarray(pc.cast(table.column("surface"), pa.string()).to_pylist(), dtype=object)
    text = (pc.cast(table.column("text"), pa.string()).to_pylist() if "text" in table.column_names
            else [None] * len(ids))
    video = _ints(table, ITEMS, "video_id", nullable=True) if "video_id" in table.column_names else np.full(len(ids), -1)
    duration = (_floats(table, ITEMS, "duration_s", nullable=True) if "duration_s" in table.column_names
                else np.full(len(ids), math.nan))
    out = {}
    for name in SURFACES:
        rows = np.flatnonzero(surface == name)
        if not len(rows):
            continue
        sid = ids[rows]
        if len(np.unique(sid)) != len(sid):
            raise InputError(f"{ITEMS}: a {name} item_id is listed more than once")
        out[name] = Items(sid, ["" if text[r] is None else text[r] for r in rows], video[rows], duration[rows],
                          {int(i): k for k, i in enumerate(sid.tolist())})
    return out


def _sessions(folder: Path) -> Sessions | None:
    table = _table(folder, SESSIONS, required=False)
    if table is None:
        return None
    _require(table, SESSIONS, ("session_id", "user_id", "start_ts", "end_ts", "ended"))
    ended = table.column("ended")
    if not pa.types.is_boolean(ended.type) or ended.null_count:
        raise InputError(f"{SESSIONS}: column 'ended' must hold true/false")
    return Sessions(_ints(table, SESSIONS, "session_id"), _ints(table, SESSIONS, "user_id"),
                    _floats(table, SESSIONS, "start_ts"), _floats(table, SESSIONS, "end_ts"),
                    ended.to_numpy(zero_copy_only=False).astype(bool))
