"""Build an LSVCR dataset from a simulation's event log (`lsvcr data build`).

Definitions (every threshold is a ``BuildConfig`` field):

* A **positive video engagement** is a *long play* (watch seconds >= ``long_play_fraction`` x the
  video's duration); only the first one per (user, video) counts. The **video history** is these
  videos in time order. This is the paper's "liked (positively engaged) videos" and what the
  official code keeps (liked or long plays; the simulator has no video like): reading or liking a
  video's comments after a short play does not make the video a positive (it makes a comment
  record, below).
* A **comment interaction** is a comment like, a comment read of at least ``long_read_s`` seconds,
  or a comment the user posted. A **comment record** is ``(video, [comments interacted with])`` per
  (user, video), timed by its first interaction. Posted comments stay in the history records but
  are never targets (a user is not recommended their own comment).
* **Video task** targets: each positive video after the first; **comment task** targets: each
  record with at least one non-posted comment. Histories hold what happened strictly before the
  target (at most ``history_len`` most recent entries).
* **Leave-last-out** per user and task: the last target is the test target, the second last the
  validation target (users with >= 3 targets; others train only). Training histories of a user
  never contain that user's validation/test targets of either task (those videos are removed).
* ``comment_list`` of each video: its comments by like count (desc), then age.

* **Logged comment slates** (runs logged by a stochastic policy, i.e. with a ``feedback/`` log): for
  each val/test comment example, every comment request of that (user, video) with at least one
  positive (a like or a read of >= ``long_read_s``; requests without one add nothing to an IPS
  estimate): the shown comments in order, their exact marginal propensities P_log(comment at
  position j), the positives, and the candidates the logger ranked, as logged. Written as
  ``comm_slates.{val,test}.json`` (see layout.py) for ``lsvcr evaluate --protocol ips``.

Only the observable files are read: ``videos.parquet``, ``comments.parquet``, ``events.parquet``
(or ``events/``), ``feedback/`` where present; never ``truth/``.
"""
from __future__ import annotations

import glob
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import numpy as np

import atomic
from lsvcr.data.layout import Dataset, Examples, LoggedSlates, write_dataset
from lsvcr.errors import InputError



@dataclass(frozen=True)
class BuildConfig:
    long_play_fraction: float = 0.8
    long_read_s: float = 2.5
    history_len: int = 50
    min_targets_for_eval: int = 3

    def __post_init__(self):
        if not 0 < self.long_play_fraction <= 1:
            raise InputError(f"long_play_fraction must be in (0, 1], got {self.long_play_fraction}")
        if self.history_len < 1:
            raise InputError(f"history_len must be >= 1, got {self.history_len}")
        if self.min_targets_for_eval < 3:
            raise InputError("min_targets_for_eval must be >= 3 (one train, one val, one test target)")


def _literal(path: Path, pattern: str = "") -> str:
    """``path`` as a DuckDB string literal naming that path only (DuckDB expands ``*?[`` in names)."""
    text = glob.escape(str(path)) + (f"/{pattern}" if pattern else "")
    return text.replace("'", "''")


def _events_source(run: Path) -> str:
    if (run / "events.parquet").is_file():
        return _literal(run / "events.parquet")
    if (run / "events").is_dir():
        return _literal(run / "events", "**/*.parquet")
    raise InputError(f"missing event log {run / 'events.parquet'} (or {run / 'events'}/)")


def _require(run: Path, name: str) -> str:
    p = run / name
    if not p.is_file():
        raise InputError(f"missing simulation file {p}")
    return _literal(p)


def _read_run(run: Path, cfg: BuildConfig):
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    ev, vids, coms = _events_source(run), _require(run, "videos.parquet"), _require(run, "comments.parquet")
    try:
        videos = con.execute(f"SELECT video_id, title FROM read_parquet('{vids}') ORDER BY video_id").fetchnumpy()
        comments = con.execute(
            f"SELECT comment_id, video_id, text FROM read_parquet('{coms}') "
            "ORDER BY video_id, like_count DESC, created_ts, comment_id").fetchnumpy()
        base = f"(SELECT ts, user_id, CAST(event AS VARCHAR) AS event, video_id, comment_id, value FROM read_parquet('{ev}'))"
        plays = con.execute(
            f"SELECT e.user_id, e.video_id, min(e.ts) AS ts FROM {base} e JOIN read_parquet('{vids}') v "
            f"ON e.video_id = v.video_id WHERE e.event = 'play' AND e.value >= {cfg.long_play_fraction} * v.duration_s "
            "GROUP BY 1, 2 ORDER BY 1, 2").fetchnumpy()  # ordered: a parallel GROUP BY's row order varies
        inter = con.execute(
            f"SELECT e.user_id, c.video_id, e.comment_id, min(e.ts) AS ts, bool_or(e.event = 'comment_post') AS posted "
            f"FROM {base} e JOIN read_parquet('{coms}') c ON e.comment_id = c.comment_id "
            f"WHERE e.event IN ('comment_like', 'comment_post') OR (e.event = 'comment_read' AND e.value >= {cfg.long_read_s}) "
            "GROUP BY 1, 2, 3 ORDER BY 1, 4, 3").fetchnumpy()
    except duckdb.Error as e:
        raise InputError(f"{run}: cannot read the simulation files ({str(e).splitlines()[0]})") from None
    return videos, comments, plays, inter


def _logged_comment_slates(run: Path, cfg: BuildConfig, wanted: dict[tuple[int, int], tuple[str, int]],
                           cidx: dict[int, int]) -> dict[str, LoggedSlates]:
    """split -> the logged comment requests of ``wanted`` {(user, video id): (split, example index)}, read
    from the run's feedback log (``feedback/``, the format of abtest.offline.feedback): each section's
    logged candidates, shown comments with their propensities, and which positions were positive (a
    like, or a read of at least ``long_read_s``)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = run / "feedback"
    if not (folder / "requests.parquet").is_file() or not wanted:
        return {}
    try:
        req = pq.read_table(folder / "requests.parquet", columns=["request_id", "user_id", "surface", "video_id", "candidates"])
        imp = pq.read_table(folder / "impressions.parquet", columns=["request_id", "position", "item_id", "propensity"])
        out = pq.read_table(folder / "outcomes.parquet", columns=["request_id", "item_id", "likes", "read_s"])
    except (OSError, ValueError, KeyError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{folder}: cannot read the logged comment sections ({str(e).splitlines()[0]})") from None
    req = req.filter(pc.equal(req.column("surface"), "comments"))
    rid, user, video = (req.column(c).to_numpy() for c in ("request_id", "user_id", "video_id"))
    order = np.argsort(rid, kind="stable")
    keep = [i for i in order if (int(user[i]), int(video[i])) in wanted]
    if not keep:
        return {}
    positive_pairs = out.filter(pc.or_(pc.greater(out.column("likes"), 0), pc.greater_equal(out.column("read_s"), cfg.long_read_s)))
    positive = set(zip(positive_pairs.column("request_id").to_pylist(), positive_pairs.column("item_id").to_pylist()))
    imp = imp.take(np.lexsort((imp.column("position").to_numpy(), imp.column("request_id").to_numpy())))
    i_rid = imp.column("request_id").to_numpy()
    i_item, i_prop = imp.column("item_id").to_numpy(), imp.column("propensity").to_numpy()
    cands = req.column("candidates").to_pylist()
    cols: dict[str, dict[str, list]] = {}
    for i in keep:
        r = int(rid[i])
        lo, hi = np.searchsorted(i_rid, r, "left"), np.searchsorted(i_rid, r, "right")
        shown_ids = i_item[lo:hi].tolist()
        hits = [(r, c) in positive for c in shown_ids]
        if not any(hits):
            continue
        split, n = wanted[(int(user[i]), int(video[i]))]
        shown = np.array([cidx[int(x)] for x in shown_ids], np.int64)
        cand = np.array(sorted({cidx[int(c)] for c in cands[i]} | set(shown.tolist())), np.int64)
        col = cols.setdefault(split, {k: [] for k in ("example", "request_id", "candidates", "shown", "propensity", "positive")})
        for k, x in zip(col, (n, r, cand, shown, i_prop[lo:hi].astype(np.float64), np.array(hits, bool))):
            col[k].append(x)
    return {split: LoggedSlates(np.array(col["example"], np.int64), np.array(col["request_id"], np.int64),
                                col["candidates"], col["shown"], col["propensity"], col["positive"])
            for split, col in cols.items()}


def _user_timelines(plays, inter):
    """user -> (videos [(ts, v)], records [(ts, v, [comments], [positive comments])])."""
    first: dict[tuple[int, int], float] = {}
    for u, v, t in zip(plays["user_id"], plays["video_id"], plays["ts"]):
        first[(int(u), int(v))] = float(t)
    records: dict[tuple[int, int], list] = {}
    for u, v, c, t, posted in zip(inter["user_id"], inter["video_id"], inter["comment_id"], inter["ts"], inter["posted"]):
        key = (int(u), int(v))
        rec = records.setdefault(key, [float(t), int(v), [], []])
        rec[2].append(int(c))
        if not posted:
            rec[3].append(int(c))
    users: dict[int, tuple[list, list]] = {}
    for (u, v), t in first.items():
        users.setdefault(u, ([], []))[0].append((t, v))
    for (u, _), rec in records.items():
        users.setdefault(u, ([], []))[1].append(tuple(rec))
    for vs, rs in users.values():
        vs.sort()
        rs.sort(key=lambda r: (r[0], r[1]))
    return users


def _split_targets(n: int, min_eval: int) -> list[str]:
    if n < min_eval:
        return ["train"] * n
    return ["train"] * (n - 2) + ["val", "test"]


def build_dataset(run_dir: str | Path, cfg: BuildConfig = BuildConfig()) -> Dataset:
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"simulation directory {run} does not exist")
    videos, comments, plays, inter = _read_run(run, cfg)
    if not len(videos["video_id"]):
        raise InputError(f"{run / 'videos.parquet'}: no videos")
    video_ids = ["[PAD]"] + [str(int(v)) for v in videos["video_id"]]
    vidx = {int(v): i + 1 for i, v in enumerate(videos["video_id"])}
    titles = [""] + [str(t) for t in videos["title"]]
    comment_ids = ["[PAD]"] + [str(int(c)) for c in comments["comment_id"]]
    cidx = {int(c): i + 1 for i, c in enumerate(comments["comment_id"])}
    texts = [""] + [str(t) for t in comments["text"]]
    lists: list[list[int]] = [[] for _ in video_ids]
    for i, v in enumerate(comments["video_id"]):  # already in popularity order within each video
        if int(v) not in vidx:
            raise InputError(f"{run / 'comments.parquet'}: comment {int(comments['comment_id'][i])} has unknown video_id {int(v)}")
        lists[vidx[int(v)]].append(i + 1)
    for v in np.concatenate([plays["video_id"], inter["video_id"]]):
        if int(v) not in vidx:
            raise InputError(f"{run / 'events.parquet'}: unknown video_id {int(v)}")

    L = cfg.history_len
    out = {task: {s: Examples.empty(task == "comment") for s in ("train", "val", "test")} for task in ("video", "comment")}
    for task in out.values():
        for ex in task.values():
            ex.target = []  # appended to below, an array again at the end
    n_pos_videos = n_comment_inter = 0
    for u in sorted(_user_timelines(plays, inter).items()):
        user, (vs, rs) = u
        n_pos_videos += len(vs)
        n_comment_inter += sum(len(r[2]) for r in rs)
        vt = [t for t, _ in vs]
        vv = [vidx[v] for _, v in vs]
        rt = [r[0] for r in rs]
        rv = [vidx[r[1]] for r in rs]
        rc = [np.array([cidx[c] for c in r[2]], np.int64) for r in rs]
        rec_splits = _split_targets(len(vs) - 1, cfg.min_targets_for_eval)
        targets = [j for j, r in enumerate(rs) if r[3]]
        com_splits = _split_targets(len(targets), cfg.min_targets_for_eval)
        held_videos = {vv[j + 1] for j, s in enumerate(rec_splits) if s != "train"}
        held_records = {rv[targets[j]] for j, s in enumerate(com_splits) if s != "train"}

        def histories(t: float, train: bool):
            vh = [v for ts, v in zip(vt, vv) if ts < t and not (train and v in held_videos)][-L:]
            ks = [k for k, ts in enumerate(rt) if ts < t and not (train and rv[k] in held_records)][-L:]
            return np.array(vh, np.int64), np.array([rv[k] for k in ks], np.int64), [rc[k] for k in ks]

        for j, split in enumerate(rec_splits):
            t = vt[j + 1]
            vh, rvh, rch = histories(t, split == "train")
            if not len(vh) and not len(rvh):
                continue
            ex = out["video"][split]
            ex.users.append(str(user)); ex.video_hist.append(vh); ex.record_videos.append(rvh)
            ex.record_comments.append(rch); ex.target.append(vv[j + 1])
        for j, split in zip(targets, com_splits):
            vh, rvh, rch = histories(rt[j], split == "train")
            if not len(vh) and not len(rvh):
                continue
            ex = out["comment"][split]
            ex.users.append(str(user)); ex.video_hist.append(vh); ex.record_videos.append(rvh)
            ex.record_comments.append(rch); ex.target.append(rv[j])
            ex.pos_comments.append(np.array([cidx[c] for c in rs[j][3]], np.int64))
    for task in out.values():
        for ex in task.values():
            ex.target = np.array(ex.target, np.int64)
    if not len(out["video"]["train"]):
        raise InputError(f"{run}: no user has two positively engaged videos; nothing to train on")
    video_id_of = {i: v for v, i in vidx.items()}
    wanted = {(int(ex.users[n]), video_id_of[int(ex.target[n])]): (split, n)
              for split in ("val", "test") for ex in [out["comment"][split]] for n in range(len(ex))}
    logged = _logged_comment_slates(run, cfg, wanted, cidx)
    meta = {"source": "simulation", "run_dir": str(run), "build": asdict(cfg),
            "interactions": {"positive_videos": n_pos_videos, "comment_interactions": n_comment_inter},
            "logged_comment_slates": {split: len(lg) for split, lg in logged.items()}}
    return Dataset(video_ids, comment_ids, titles, texts, [np.array(x, np.int64) for x in lists], out, meta, logged)


def build_and_write(run_dir: str | Path, out: str | Path, cfg: BuildConfig = BuildConfig(),
                    overwrite: bool = False) -> Dataset:
    """`lsvcr data build`: the dataset of ``run_dir`` written (atomically) into ``out``; returned for its
    stats. An existing ``out`` is replaced only with ``overwrite``, and never when it holds ``run_dir``."""
    atomic.check_output(out, inputs=[run_dir], overwrite=overwrite)
    ds = build_dataset(run_dir, cfg)
    write_dataset(ds, out, replace=overwrite)
    return ds
