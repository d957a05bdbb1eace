"""A trained model directory served as a simulator policy (deployment: the SR model only).

* ``sasrec:DIR`` — the control arm, "SR without comments or LLM": SASRec ranks videos from the
  video-id history; comments are ranked by likes.
* ``lsvcr:DIR`` — the treatment arm: the LSVCR model ranks videos (video task) and comments (comment
  task) from both histories, for every task it was trained on (``lsvcr train --task both``); likes
  rank comments for a video-only model.

The LLM of stage 1 is never loaded for ranking: titles and comments the model saw in training keep
their frozen text embeddings; comments that first appear on the platform are encoded once, in one
batch per request batch, by the frozen text encoder the model was trained on (the aligned LLM kept
in ``DIR/text_encoder/`` after stage 1, else the packaged MiniLM).

Histories follow the dataset's definitions (``lsvcr.data.build``): the video history is the first
long play of each video (watch fraction >= the build's ``long_play_fraction``) or a video whose
comments the user engaged with; comment records are (video, comments read, liked or replied to)
merged per video. (The platform's history does not carry read seconds, so every read counts,
where the dataset keeps reads of at least ``long_read_s``.) Each user's histories are kept up to
date incrementally from the platform's append-only history.

Serving (one user-tower pass per feed page): a video request encodes the user's two histories
once; the comment requests of the videos played from that page reuse the encoded histories with
their own video as the query. The comment ranking therefore sees the user as of the page request
— as on a platform that requests a video's comment list when it starts playing, before the play's
watch time exists — and the encoder runs once per page instead of once per played video (the
serving cost, see bench/abtest_run.py). ``simulator.counterfactual`` serves logged requests the same way.

Requests are served in batches (``rank_videos_batch`` / ``rank_comments_batch``); users without any
usable history get the popularity ranking.
"""
from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch

from lsvcr import text
from lsvcr.checkpoint import IDS_FILE, TEXT_ENCODER_DIR, load_model
from lsvcr.data.build import BuildConfig
from lsvcr.data.loader import Batch
from lsvcr.errors import InputError
from lsvcr.files import read_json
from lsvcr.recommender import LSVCRRecommender
from lsvcr.sr import Encoded
from simulator.policy import CommentRequest, History, PopularityPolicy, Slate, VideoRequest
from simulator.schema import POSTED_COMMENT_BASE

MAX_HISTORY = 50
MIN_CHUNK, SHRINK = 8, 0.6  # encoder sub-batches by history length (ModelPolicy._chunks)


class _User:
    """One user's model-side histories, synced incrementally from the platform's ``History``."""

    __slots__ = ("history", "plays", "records", "first", "where", "order", "merged", "pages")

    def __init__(self, history: History):
        self.history = history
        self.plays = self.records = 0  # entries of ``history`` consumed
        self.first: dict[int, int] = {}  # video -> index of its first play
        self.where: dict[int, int] = {}  # video in the video history -> the play index it enters at
        self.order: list[tuple[int, int]] = []  # the video history: sorted (play index, video)
        self.merged: dict[int, list[int]] = {}  # video -> its records' comment rows (first-record order)
        self.pages: dict[int, tuple[torch.Tensor, torch.Tensor] | None] = {}  # plays at a feed request ->
        # that page's encoded comment records and mask (None: no usable history then)


class ModelPolicy:
    needs_truth = False

    def __init__(self, kind: str, model_dir: Path, threads: int = 1):
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise InputError(f"{kind}:{model_dir}: no such model directory")
        model, cfg = load_model(model_dir)
        if cfg["model"] != kind:
            raise InputError(f"{kind}:{model_dir}: that directory holds a {cfg['model']} model")
        ids_path = model_dir / IDS_FILE
        if not ids_path.is_file():
            raise InputError(f"{ids_path} is missing: retrain the model with this version to serve it")
        ids = read_json(ids_path)
        torch.set_num_threads(threads)
        self.model, self.kind, self.tasks = model.eval(), kind, tuple(cfg["tasks"])
        self.lsvcr = isinstance(model, LSVCRRecommender)
        if self.lsvcr:
            model.serve()  # project every known text and candidate once
        self.name = f"{kind}:{model_dir.name}"
        build = ids.get("build") or {}
        self.long_play = float(build.get("long_play_fraction", BuildConfig().long_play_fraction))
        self.max_record_comments = int(cfg.get("finetune", {}).get("max_record_comments", 8))
        video_ids = np.array([int(v) for v in ids["video_ids"][1:]], dtype=np.int64)
        self.video_index = np.zeros(int(video_ids.max()) + 1 if len(video_ids) else 1, dtype=np.int64)
        self.video_index[video_ids] = np.arange(1, len(video_ids) + 1)
        self.comment_index = {int(c): i for i, c in enumerate(ids["comment_ids"][1:], start=1)
                              if int(c) < POSTED_COMMENT_BASE}
        encoder_dir = model_dir / TEXT_ENCODER_DIR
        self._encoder_dir = encoder_dir if encoder_dir.is_dir() else None
        self._encoder = None  # loaded when the first unseen comment appears
        self.popularity = PopularityPolicy()
        self.serves_comments = "comment" in self.tasks and self.lsvcr
        self.users: dict[int, _User] = {}
        self._text_world, self._text_lookup = None, None
        self._map_world, self._row_map = None, None  # world comment row -> model row (-1: not yet)

    # ---- id mapping ------------------------------------------------------------------------
    def _videos(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        known = ids < len(self.video_index)
        out = np.zeros(len(ids), dtype=np.int64)
        out[known] = self.video_index[ids[known]]
        return out

    def _ensure_comments(self, ids, world) -> None:
        """Give every comment id in ``ids`` a model row, embedding the unseen ones in one batch."""
        missing = [c for c in dict.fromkeys(ids) if c not in self.comment_index]
        if not missing or not self.lsvcr:
            return
        if self._encoder is None:
            self._encoder = text.serving_encoder(self._encoder_dir)
        texts = self._texts(world)
        emb = text.encode_texts([texts(c) for c in missing], self.model.text_cfg, llm=self._encoder)
        start = self.model.add_comments(emb)
        self.comment_index.update({c: start + i for i, c in enumerate(missing)})

    # ---- histories ---------------------------------------------------------------------------
    def _user(self, user: int, h: History) -> _User:
        """The user's state synced with ``h`` (rebuilt when ``h`` is not the history it follows)."""
        u = self.users.get(user)
        if u is None or u.history is not h or u.plays > len(h.video_ids) or u.records > len(h.comment_records):
            pages = u.pages if u is not None else {}
            u = self.users[user] = _User(h)
            u.pages = pages
        for i in range(u.plays, len(h.video_ids)):
            v = h.video_ids[i]
            u.first.setdefault(v, i)
            if h.watch_fraction[i] >= self.long_play or v in u.merged:
                self._include(u, v, i)
        u.plays = len(h.video_ids)
        for v, cs in h.comment_records[u.records:]:
            if v in u.first:
                self._include(u, v, u.first[v])
            rows = u.merged.setdefault(v, [])
            if self.lsvcr:  # SASRec reads video ids only
                rows.extend(self.comment_index[c] for c in cs)
        u.records = len(h.comment_records)
        return u

    @staticmethod
    def _include(u: _User, v: int, i: int) -> None:
        j = u.where.get(v)
        if j is not None and j <= i:
            return
        if j is not None:
            u.order.remove((j, v))
        u.where[v] = i
        bisect.insort(u.order, (i, v))

    def _batch(self, users: list[_User]) -> tuple[Batch, np.ndarray]:
        """The padded batch of histories, and which users have any usable history."""
        vids = [self._videos([v for _, v in u.order[-MAX_HISTORY:]]) for u in users]
        recs = [list(u.merged.items())[-MAX_HISTORY:] for u in users] if self.lsvcr else [[] for _ in users]
        B = len(users)
        lv = max(1, max(len(v) for v in vids))
        lc = max(1, max(len(r) for r in recs))
        k = max(1, min(self.max_record_comments, max((len(cs) for r in recs for _, cs in r), default=1)))
        video_hist = np.zeros((B, lv), dtype=np.int64)
        record_videos = np.zeros((B, lc), dtype=np.int64)
        record_comments = np.zeros((B, lc, k), dtype=np.int64)
        for i, (v, r) in enumerate(zip(vids, recs)):
            video_hist[i, : len(v)] = v
            if r:
                record_videos[i, : len(r)] = self._videos([rv for rv, _ in r])
                for j, (_, cs) in enumerate(r):
                    tail = cs[-k:]
                    record_comments[i, j, : len(tail)] = tail
        usable = (video_hist > 0).any(1) | (record_videos > 0).any(1)
        batch = Batch(torch.from_numpy(video_hist), torch.from_numpy(record_videos),
                      torch.from_numpy(record_comments), torch.zeros(B, dtype=torch.long), None, np.arange(B))
        return batch, usable

    def _sync(self, requests) -> list[_User]:
        if self.lsvcr:  # comments in new history records get rows first (one embedding batch)
            new = [c for r in requests for _, cs in r.history.comment_records[self._consumed(r)] for c in cs]
            self._ensure_comments(new, requests[0].world)
        return [self._user(r.user_id, r.history) for r in requests]

    def _consumed(self, r) -> slice:
        u = self.users.get(r.user_id)
        return slice(u.records if u is not None and u.history is r.history else 0, None)

    # ---- ranking ---------------------------------------------------------------------------------
    def _chunks(self, users: list[_User]):
        """Sub-batches of users with similar history lengths: (indices, batch, usable) of each.

        Padding a batch to its longest history wastes most of the encoder's work (two thirds in a
        simulated day); in length order, a new sub-batch starts where a history is shorter than
        ``SHRINK`` times the sub-batch's longest, once it has ``MIN_CHUNK`` requests (each
        sub-batch costs a fixed ~2 ms of dispatch)."""
        lengths = np.array([min(len(u.order), MAX_HISTORY) + min(len(u.merged), MAX_HISTORY) * self.lsvcr
                            for u in users])
        order = np.argsort(-lengths, kind="stable")
        start = 0
        for i in range(1, len(order) + 1):
            if i == len(order) or (i - start >= MIN_CHUNK and lengths[order[i]] < SHRINK * lengths[order[start]]):
                idx = order[start:i]
                yield idx, *self._batch([users[j] for j in idx])
                start = i

    @torch.inference_mode()
    def rank_videos_batch(self, requests: list[VideoRequest]) -> list[Slate]:
        users = self._sync(requests)
        user = torch.zeros(len(requests), self.model.cfg.hidden)
        usable = np.zeros(len(requests), dtype=bool)
        for idx, batch, ok in self._chunks(users):
            if self.lsvcr:
                enc = self.model.encode(batch)
                user[idx] = self.model.task_repr(enc, "video")
                if self.serves_comments:
                    self._keep_pages([requests[i] for i in idx], [users[i] for i in idx], enc, ok)
            else:
                user[idx] = self.model.user_repr(batch.video_hist)
            usable[idx] = ok
        cands = [self._videos(r.candidates) for r in requests]
        cand = np.zeros((len(requests), max(len(c) for c in cands)), dtype=np.int64)
        for i, c in enumerate(cands):
            cand[i, : len(c)] = c
        scores = self.model.video_scores(user, torch.from_numpy(cand)).float().numpy()
        out = []
        for i, r in enumerate(requests):
            if not usable[i]:
                out.append(self.popularity.rank_videos(r))
                continue
            s = np.where(cands[i] > 0, scores[i, : len(cands[i])], -np.inf)
            out.append(Slate.deterministic(r.candidates[np.argsort(-s, kind="stable")[: r.k]]))
        return out

    @staticmethod
    def _keep_pages(requests, users: list[_User], enc: Encoded, usable: np.ndarray) -> None:
        lengths = enc.record_mask.sum(1).clamp(min=1).tolist()
        for i, (r, u) in enumerate(zip(requests, users)):
            n = lengths[i]
            u.pages[len(r.history.video_ids)] = (
                (enc.record[i, :n].clone(), enc.record_mask[i, :n].clone()) if usable[i] else None
            )

    def _page(self, r: CommentRequest):
        """The encoded records of the feed page this comment request comes from: the latest page
        requested at or before the request's number of plays (older pages are dropped). Returns
        (records, mask), None (no usable history on that page), or False (no page: encode now)."""
        u = self.users.get(r.user_id)
        plays = len(r.history.video_ids)
        keys = [p for p in u.pages if p <= plays] if u is not None else []
        if not keys:
            return False
        key = max(keys)
        for p in [p for p in u.pages if p < key]:
            del u.pages[p]
        return u.pages[key]

    @torch.inference_mode()
    def rank_comments_batch(self, requests: list[CommentRequest]) -> list[Slate]:
        if not self.serves_comments:
            return [self.popularity.rank_comments(r) for r in requests]
        lengths = np.array([len(r.candidates) for r in requests])
        rows = np.concatenate([self._candidate_rows(r) for r in requests])  # model rows, all requests
        pages = [self._page(r) for r in requests]
        cold = [i for i, p in enumerate(pages) if p is False]
        if cold:  # no feed page seen for these users: encode their current histories
            sub = [requests[i] for i in cold]
            batch, usable = self._batch(self._sync(sub))
            enc = self.model.encode(batch)
            n = enc.record_mask.sum(1).clamp(min=1).tolist()
            for j, i in enumerate(cold):
                pages[i] = (enc.record[j, : n[j]], enc.record_mask[j, : n[j]]) if usable[j] else None
        B, d = len(requests), self.model.cfg.hidden
        lc = max([1] + [len(p[1]) for p in pages if p is not None])
        record = torch.zeros(B, lc, d)
        mask = torch.zeros(B, lc, dtype=torch.bool)
        for i, p in enumerate(pages):
            if p is not None:
                record[i, : len(p[1])], mask[i, : len(p[1])] = p
        target = torch.from_numpy(self._videos([r.video_id for r in requests]))
        user = self.model.task_repr(Encoded(None, record, None, mask), "comment", target)
        # ragged scoring: sections differ wildly in size, so no padding to the largest one
        owner = torch.from_numpy(np.repeat(np.arange(B), lengths))
        scores = self.model.comment_scores_flat(user, torch.from_numpy(rows), owner).float().numpy()
        out = []
        for i, (r, end) in enumerate(zip(requests, np.cumsum(lengths))):
            if pages[i] is None:
                out.append(self.popularity.rank_comments(r))
                continue
            s = scores[end - lengths[i]: end]
            out.append(Slate.deterministic(r.candidates[np.argsort(-s, kind="stable")[: r.k]]))
        return out

    def _candidate_rows(self, r: CommentRequest) -> np.ndarray:
        """Model rows of a request's candidate comments (world rows); unseen comments are embedded."""
        world = r.world
        if world is not self._map_world:  # a new day's snapshot: map its comment rows once
            self._map_world = world
            self._row_map = np.fromiter((self.comment_index.get(c, -1) for c in world.comment_ids.tolist()),
                                        dtype=np.int64, count=len(world.comment_ids))
        rows = self._row_map[r.candidates]
        if (rows < 0).any():
            new = np.unique(r.candidates[rows < 0])
            ids = world.comment_ids[new].tolist()
            self._ensure_comments(ids, world)
            self._row_map[new] = [self.comment_index[c] for c in ids]
            rows = self._row_map[r.candidates]
        return rows

    def _texts(self, world):
        """comment id -> text in this world snapshot (comments never seen are embedded from it)."""
        if world is not self._text_world:
            self._text_world, self._text_lookup = world, None

        def text_of(cid: int) -> str:
            if self._text_lookup is None:
                self._text_lookup = dict(zip(world.comment_ids.tolist(), world.comment_text))
            return self._text_lookup.get(cid, "")

        return text_of

    def rank_videos(self, request: VideoRequest) -> Slate:
        return self.rank_videos_batch([request])[0]

    def rank_comments(self, request: CommentRequest) -> Slate:
        return self.rank_comments_batch([request])[0]


def load_policy(kind: str, model_dir: Path) -> ModelPolicy:
    """The policy of a ``sasrec:DIR`` or ``lsvcr:DIR`` SPEC."""
    if kind not in ("sasrec", "lsvcr"):
        raise InputError(f"unknown model kind {kind!r}: use sasrec or lsvcr")
    return ModelPolicy(kind, model_dir)
