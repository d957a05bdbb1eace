"""The official LSVCR dataset layout: read, validate, write.

A dataset directory holds

* ``photo.json``   ``{video_id: {"title": str, "comment_list": [comment_id, ...]}}`` (popular first)
* ``comment.json`` ``{comment_id: {"content": str}}``
* ``rec.{train,val,test}.json``  JSON lines ``{"user_id", "target_photo", "photo_inter_his": [...],
  "comment_inter_his": [[video_id, ...], [[comment_id, ...], ...]]}``
* ``comm_rank.{train,val,test}.json``  the same plus ``"pos_comments": [comment_id, ...]``
* id lists whose index 0 is ``[PAD]``: ``all_photos.json``/``all_comments.json`` (ours), or the
  original code's ``all_photos.pkl``/``all_comments.pkl`` (read only with ``allow_pickle``)
* ``meta.json`` (ours; optional when reading)
* ``comm_slates.{val,test}.json`` (ours; only in datasets built from a run logged by a stochastic
  policy, ``lsvcr simulate --temperature T`` or ``--explore EPS``): JSON lines, one per logged comment
  request of that split's comment examples, ``{"example": line index in comm_rank.{split}.json,
  "user_id", "target_photo", "request_id", "candidates": [comment ids the logger ranked],
  "shown": [comment ids in logged order], "propensities": [P_log(shown[j] at position j)],
  "positives": [0/1 per shown position]}``; read by ``lsvcr evaluate --protocol ips``

In memory every id becomes its index in the id list (0 = padding); ids are compared as strings.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import atomic
from lsvcr.errors import InputError
from lsvcr.files import json_lines, read_json

SPLITS = ("train", "val", "test")
TASK_FILES = {"video": "rec", "comment": "comm_rank"}
SLATES_FILE = "comm_slates"
PAD = "[PAD]"


@dataclass
class Examples:
    """One split of one task, column-wise. Indices refer to the dataset's id lists."""

    users: list[str]
    target: np.ndarray  # [N] video index (the next video, or the video whose comments are ranked)
    video_hist: list[np.ndarray]  # N x [Lv] video indices, oldest first
    record_videos: list[np.ndarray]  # N x [Lc] video index of each comment-history record
    record_comments: list[list[np.ndarray]]  # N x Lc x [k] comment indices of each record
    pos_comments: list[np.ndarray] | None = None  # N x [p] (comment task only)

    def __len__(self) -> int:
        return len(self.users)

    @staticmethod
    def empty(with_pos: bool) -> "Examples":
        return Examples([], np.zeros(0, np.int64), [], [], [], [] if with_pos else None)


@dataclass
class LoggedSlates:
    """Logged comment requests of one split, column-wise (``comm_slates.{split}.json``)."""

    example: np.ndarray  # [R] index of the comment example (same user, same target video)
    request_id: np.ndarray  # [R] the simulator's request id
    candidates: list[np.ndarray]  # R x [n] comment indices the logging policy ranked
    shown: list[np.ndarray]  # R x [k] comment indices in logged order (a subset of candidates)
    propensity: list[np.ndarray]  # R x [k] P_log(shown[j] at position j), exact
    positive: list[np.ndarray]  # R x [k] bool: a positive comment interaction at position j

    def __len__(self) -> int:
        return len(self.example)


@dataclass
class Dataset:
    video_ids: list[str]  # [V+1], index 0 is PAD
    comment_ids: list[str]  # [C+1], index 0 is PAD
    titles: list[str]  # [V+1]
    comment_texts: list[str]  # [C+1]
    comment_lists: list[np.ndarray]  # [V+1] comment indices per video, most popular first
    splits: dict[str, dict[str, Examples]]  # task -> split -> examples
    meta: dict = field(default_factory=dict)
    logged: dict[str, LoggedSlates] = field(default_factory=dict)  # split -> logged comment slates (optional)

    @property
    def n_videos(self) -> int:  # including PAD
        return len(self.video_ids)

    @property
    def n_comments(self) -> int:  # including PAD
        return len(self.comment_ids)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASK_FILES if len(self.splits[t]["train"]) > 0)

    def fingerprint(self) -> str:
        """A short hash of the id lists: a model trained here fits a dataset with the same ids."""
        h = hashlib.sha256()
        for ids in (self.video_ids, self.comment_ids):
            h.update(str(len(ids)).encode())
            h.update("\x00".join(ids).encode())
        return h.hexdigest()[:16]

    def comment_video(self) -> np.ndarray:
        """[C+1] the video index each comment belongs to (0 for PAD or unlisted comments)."""
        out = np.zeros(self.n_comments, np.int64)
        for v, cl in enumerate(self.comment_lists):
            out[cl] = v
        return out

    def stats(self) -> dict:
        out = {"users": len({u for t in self.splits.values() for s in t.values() for u in s.users}),
               "videos": self.n_videos - 1, "comments": self.n_comments - 1}
        for task, name in TASK_FILES.items():
            for split in SPLITS:
                ex = self.splits[task][split]
                out[f"{name}.{split}"] = len(ex)
            tr = self.splits[task]["test"]
            if len(tr):
                out[f"{name}.test.video_hist_mean"] = round(float(np.mean([len(h) for h in tr.video_hist])), 2)
                out[f"{name}.test.comment_hist_mean"] = round(float(np.mean([len(h) for h in tr.record_videos])), 2)
        return out


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------
def _load_json(path: Path, kind: type = dict):
    data = read_json(path, "dataset file")
    if not isinstance(data, kind):
        raise InputError(f"{path}: expected a JSON {'object' if kind is dict else 'list'}, got {type(data).__name__}")
    return data


def _load_id_list(root: Path, stem: str, allow_pickle: bool) -> list[str]:
    js, pk = root / f"{stem}.json", root / f"{stem}.pkl"
    if js.is_file():
        ids = _load_json(js, list)
    elif pk.is_file():
        if not allow_pickle:
            raise InputError(f"{pk} is a pickle (pickle can run code); pass --allow-pickle if you trust it")
        with open(pk, "rb") as f:
            ids = pickle.load(f)  # noqa: S301 - explicit opt-in above
        if isinstance(ids, dict):  # {id: index}
            ids = [k for k, _ in sorted(ids.items(), key=lambda kv: kv[1])]
    else:
        raise InputError(f"missing dataset file {js} (or the original {pk.name})")
    ids = [str(x) for x in list(ids)]
    if not ids or ids[0] != PAD:
        raise InputError(f"{root / stem}: index 0 of the id list must be {PAD!r}, got {ids[:1]!r}")
    if len(set(ids)) != len(ids):
        raise InputError(f"{root / stem}: duplicate ids in the id list")
    return ids


class _Indexer:
    def __init__(self, ids: list[str], kind: str):
        self.index = {x: i for i, x in enumerate(ids)}
        self.kind = kind

    def __call__(self, x, where: str) -> int:
        i = self.index.get(str(x))
        if i is None or i == 0:
            raise InputError(f"{where}: unknown {self.kind} id {str(x)!r}")
        return i

    def many(self, xs, where: str) -> np.ndarray:
        if not isinstance(xs, list):
            raise InputError(f"{where}: expected a list of {self.kind} ids, got {type(xs).__name__}")
        return np.array([self(x, where) for x in xs], np.int64)


def _read_examples(path: Path, vid: _Indexer, cid: _Indexer, with_pos: bool) -> Examples:
    if not path.is_file():
        raise InputError(f"missing dataset file {path}")
    ex = Examples.empty(with_pos)
    targets = []
    for where, row in json_lines(path):
        try:
            user, target = row["user_id"], row["target_photo"]
            vh = row["photo_inter_his"]
            ch = row.get("comment_inter_his") or [[], []]
        except (KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{where}: missing field {e}") from None
        if not (isinstance(ch, list) and len(ch) == 2 and len(ch[0]) == len(ch[1])):
            raise InputError(f"{where}: comment_inter_his must be [[video ids], [[comment ids], ...]] of equal lengths")
        targets.append(vid(target, where + " target_photo"))
        ex.users.append(str(user))
        ex.video_hist.append(vid.many(vh, where + " photo_inter_his"))
        ex.record_videos.append(vid.many(ch[0], where + " comment_inter_his"))
        ex.record_comments.append([cid.many(c, where + " comment_inter_his") for c in ch[1]])
        if not len(ex.video_hist[-1]) and not len(ex.record_videos[-1]):
            raise InputError(f"{where}: empty history (no photo_inter_his and no comment_inter_his)")
        if with_pos:
            if "pos_comments" not in row:
                raise InputError(f"{where}: missing field 'pos_comments'")
            pos = cid.many(row["pos_comments"], where + " pos_comments")
            if not len(pos):
                raise InputError(f"{where}: empty pos_comments")
            ex.pos_comments.append(pos)
    ex.target = np.array(targets, np.int64)
    return ex


def read_dataset(root: str | Path, allow_pickle: bool = False) -> Dataset:
    """Read and validate a dataset directory in the official layout."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset directory {root} does not exist")
    video_ids = _load_id_list(root, "all_photos", allow_pickle)
    comment_ids = _load_id_list(root, "all_comments", allow_pickle)
    vid, cid = _Indexer(video_ids, "video"), _Indexer(comment_ids, "comment")
    photos, comments = _load_json(root / "photo.json"), _load_json(root / "comment.json")
    titles = [""] * len(video_ids)
    comment_lists = [np.zeros(0, np.int64) for _ in video_ids]
    for k, rec in photos.items():
        i = vid(k, "photo.json")
        try:
            titles[i] = str(rec["title"])
            comment_lists[i] = cid.many(rec.get("comment_list", []), f"photo.json video {k} comment_list")
        except (KeyError, TypeError, AttributeError):
            raise InputError(f"photo.json video {k}: needs an object with a 'title'") from None
    texts = [""] * len(comment_ids)
    for k, rec in comments.items():
        try:
            texts[cid(k, "comment.json")] = str(rec["content"])
        except (KeyError, TypeError, AttributeError):
            raise InputError(f"comment.json comment {k}: needs an object with a 'content'") from None
    splits = {}
    for task, stem in TASK_FILES.items():
        splits[task] = {}
        for split in SPLITS:
            path = root / f"{stem}.{split}.json"
            if task == "comment" and not path.is_file() and not (root / f"{stem}.train.json").is_file():
                splits[task][split] = Examples.empty(True)  # a video-only dataset
                continue
            splits[task][split] = _read_examples(path, vid, cid, with_pos=task == "comment")
    if not len(splits["video"]["train"]):
        raise InputError(f"{root / 'rec.train.json'}: no training examples")
    meta = _load_json(root / "meta.json") if (root / "meta.json").is_file() else {}
    logged = {split: _read_logged(root / f"{SLATES_FILE}.{split}.json", splits["comment"][split], vid, cid)
              for split in SPLITS if (root / f"{SLATES_FILE}.{split}.json").is_file()}
    return Dataset(video_ids, comment_ids, titles, texts, comment_lists, splits, meta, logged)


def _read_logged(path: Path, ex: Examples, vid: _Indexer, cid: _Indexer) -> LoggedSlates:
    cols = {"example": [], "request_id": [], "candidates": [], "shown": [], "propensity": [], "positive": []}
    for where, row in json_lines(path):
        try:
            n, rid = int(row["example"]), int(row["request_id"])
            cand, shown = cid.many(row["candidates"], where + " candidates"), cid.many(row["shown"], where + " shown")
            prop, pos = np.asarray(row["propensities"], np.float64), np.asarray(row["positives"], bool)
            user, target = str(row["user_id"]), row["target_photo"]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"{where}: missing or malformed field ({e})") from None
        if not 0 <= n < len(ex) or ex.users[n] != user or ex.target[n] != vid(target, where + " target_photo"):
            raise InputError(f"{where}: example {n} is not user {user!r}'s comment example for video {target!r}")
        if not (len(shown) == len(prop) == len(pos)) or not np.all((prop > 0) & (prop <= 1)):
            raise InputError(f"{where}: shown, propensities (in (0, 1]) and positives must be equally long")
        if not np.isin(shown, cand).all():
            raise InputError(f"{where}: a shown comment is not among the candidates")
        for k, v in zip(cols, (n, rid, cand, shown, prop, pos)):
            cols[k].append(v)
    return LoggedSlates(np.array(cols["example"], np.int64), np.array(cols["request_id"], np.int64),
                        cols["candidates"], cols["shown"], cols["propensity"], cols["positive"])


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------
def _example_rows(ds: Dataset, ex: Examples):
    V, C = ds.video_ids, ds.comment_ids
    for n in range(len(ex)):
        row = {
            "user_id": ex.users[n],
            "target_photo": V[ex.target[n]],
            "photo_inter_his": [V[i] for i in ex.video_hist[n]],
            "comment_inter_his": [[V[i] for i in ex.record_videos[n]],
                                  [[C[c] for c in cs] for cs in ex.record_comments[n]]],
        }
        if ex.pos_comments is not None:
            row["pos_comments"] = [C[c] for c in ex.pos_comments[n]]
        yield row


def write_dataset(ds: Dataset, out: str | Path, replace: bool = False) -> Path:
    """Write ``ds`` into ``out`` (a temp sibling renamed into place once complete); an existing
    non-empty ``out`` is replaced only with ``replace`` (else ``atomic.OutputError``)."""
    out = Path(out)
    with atomic.publishing_dir(out, replace=replace, parents=True) as tmp:
        _write_files(ds, tmp, out)
    return out


def _write_files(ds: Dataset, tmp: Path, out: Path) -> None:
    """Every file of the dataset into ``tmp``; ``out``: where it will live (meta.json's run_dir is relative to it)."""

    def dump(name, obj):
        with open(tmp / name, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)

    dump("all_photos.json", ds.video_ids)
    dump("all_comments.json", ds.comment_ids)
    dump("photo.json", {ds.video_ids[i]: {"title": ds.titles[i],
                                           "comment_list": [ds.comment_ids[c] for c in ds.comment_lists[i]]}
                        for i in range(1, ds.n_videos)})
    dump("comment.json", {ds.comment_ids[i]: {"content": ds.comment_texts[i]} for i in range(1, ds.n_comments)})
    for task, stem in TASK_FILES.items():
        for split in SPLITS:
            with open(tmp / f"{stem}.{split}.json", "w", encoding="utf-8") as f:
                for row in _example_rows(ds, ds.splits[task][split]):
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    for split, lg in ds.logged.items():
        ex = ds.splits["comment"][split]
        with open(tmp / f"{SLATES_FILE}.{split}.json", "w", encoding="utf-8") as f:
            for r in range(len(lg)):
                n = int(lg.example[r])
                f.write(json.dumps({
                    "example": n, "user_id": ex.users[n], "target_photo": ds.video_ids[ex.target[n]],
                    "request_id": int(lg.request_id[r]),
                    "candidates": [ds.comment_ids[c] for c in lg.candidates[r]],
                    "shown": [ds.comment_ids[c] for c in lg.shown[r]],
                    "propensities": [float(p) for p in lg.propensity[r]],
                    "positives": [int(p) for p in lg.positive[r]]}) + "\n")
    meta = dict(ds.meta)
    if meta.get("run_dir"):  # relative to the dataset dir: the same bytes wherever the runs live
        meta["run_dir"] = os.path.relpath(Path(meta["run_dir"]).resolve(), out.resolve())
    dump("meta.json", {**meta, "fingerprint": ds.fingerprint(), "stats": ds.stats()})
