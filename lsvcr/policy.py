"""A trained model directory served as a simulator policy (deployment: the SR model only).

* ``sasrec:DIR`` — the control arm, "SR without comments or LLM": SASRec ranks videos from the
  video-id history; comments are ranked by likes.
* ``lsvcr:DIR`` — the treatment arm: the LSVCR model ranks videos (video task) and comments (comment
  task) from both histories, for every task it was trained on (``lsvcr train --task both``); likes
  rank comments for a video-only model.

The LLM of stage 1 is never loaded: titles and comments the model saw in training keep their frozen
text embeddings; comments that first appear on the platform (posted during the run) are encoded
once by the frozen text encoder when a request first shows them.

Histories follow the dataset's definitions (``lsvcr.data.build``): the video history is the first
long play of each video (watch fraction >= the build's ``long_play_fraction``) or a video whose
comments the user engaged with; comment records are (video, comments read, liked or replied to)
merged per video. (The platform's history does not carry read seconds, so every read counts,
where the dataset keeps reads of at least ``long_read_s``.)

Requests are served in batches (``rank_videos_batch`` / ``rank_comments_batch``); users without any
usable history get the popularity ranking.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lsvcr import text
from lsvcr.checkpoint import IDS_FILE, load_model
from lsvcr.config import TextConfig
from lsvcr.data.build import BuildConfig
from lsvcr.data.loader import Batch
from lsvcr.errors import InputError
from lsvcr.recommender import LSVCRRecommender
from simulator.policy import CommentRequest, PopularityPolicy, Slate, VideoRequest
from simulator.schema import POSTED_COMMENT_BASE

MAX_HISTORY = 50


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
        ids = json.loads(ids_path.read_text())
        torch.set_num_threads(threads)
        self.model, self.kind, self.tasks = model.eval(), kind, tuple(cfg["tasks"])
        if isinstance(model, LSVCRRecommender):
            model.serve()  # project every known text once
        self.name = f"{kind}:{model_dir.name}"
        build = ids.get("build") or {}
        self.long_play = float(build.get("long_play_fraction", BuildConfig().long_play_fraction))
        self.max_record_comments = int(cfg.get("finetune", {}).get("max_record_comments", 8))
        video_ids = np.array([int(v) for v in ids["video_ids"][1:]], dtype=np.int64)
        self.video_index = np.zeros(int(video_ids.max()) + 1 if len(video_ids) else 1, dtype=np.int64)
        self.video_index[video_ids] = np.arange(1, len(video_ids) + 1)
        self.comment_index = {int(c): i for i, c in enumerate(ids["comment_ids"][1:], start=1)
                              if int(c) < POSTED_COMMENT_BASE}
        self.new_comments: dict[int, int] = {}  # comments first seen while serving -> rows
        self.popularity = PopularityPolicy()
        self.serves_comments = "comment" in self.tasks and isinstance(self.model, LSVCRRecommender)
        self._text_world, self._text_lookup = None, None

    # ---- id mapping ------------------------------------------------------------------------
    def _videos(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        known = ids < len(self.video_index)
        out = np.zeros(len(ids), dtype=np.int64)
        out[known] = self.video_index[ids[known]]
        return out

    def _comments(self, ids: list[int], texts) -> list[int]:
        """Model rows of comment ids; comments never seen are embedded now (``texts(id) -> str``)."""
        missing = [c for c in dict.fromkeys(ids) if c not in self.comment_index and c not in self.new_comments]
        if missing and isinstance(self.model, LSVCRRecommender):
            emb = text.encode_texts([texts(c) for c in missing], TextConfig())
            start = self.model.comment_text.shape[0]
            self.model.comment_text = torch.cat([self.model.comment_text, emb.to(self.model.comment_text)])
            self.new_comments.update({c: start + i for i, c in enumerate(missing)})
            self.model.serve()
        return [self.comment_index.get(c) or self.new_comments.get(c, 0) for c in ids]

    # ---- histories ---------------------------------------------------------------------------
    def _histories(self, requests, world_text) -> tuple[Batch, np.ndarray]:
        """The batch of histories, and which requests have any usable history."""
        vids, recs = [], []
        for r in requests:
            h = r.history
            engaged = {v for v, _ in h.comment_records}
            seen, vh = set(), []
            for v, f in zip(h.video_ids, h.watch_fraction):
                if (f >= self.long_play or v in engaged) and v not in seen:
                    seen.add(v)
                    vh.append(v)
            merged: dict[int, list[int]] = {}
            for v, cs in h.comment_records:
                merged.setdefault(v, []).extend(cs)
            vids.append(self._videos(vh[-MAX_HISTORY:]))
            recs.append(list(merged.items())[-MAX_HISTORY:])
        B = len(requests)
        lv = max(1, max(len(v) for v in vids))
        lc = max(1, max(len(r) for r in recs))
        k = max(1, min(self.max_record_comments, max((len(cs) for r in recs for _, cs in r), default=1)))
        video_hist = torch.zeros(B, lv, dtype=torch.long)
        record_videos = torch.zeros(B, lc, dtype=torch.long)
        record_comments = torch.zeros(B, lc, k, dtype=torch.long)
        for i, (v, r) in enumerate(zip(vids, recs)):
            video_hist[i, : len(v)] = torch.from_numpy(v)
            if r:
                record_videos[i, : len(r)] = torch.from_numpy(self._videos([rv for rv, _ in r]))
                if isinstance(self.model, LSVCRRecommender):  # SASRec reads video ids only
                    for j, (_, cs) in enumerate(r):
                        rows = self._comments(cs[-k:], world_text)
                        record_comments[i, j, : len(rows)] = torch.tensor(rows)
        usable = (video_hist > 0).any(1).numpy()
        if isinstance(self.model, LSVCRRecommender):
            usable |= (record_videos > 0).any(1).numpy()
        target = torch.zeros(B, dtype=torch.long)
        return Batch(video_hist, record_videos, record_comments, target, None, np.arange(B)), usable

    # ---- ranking ---------------------------------------------------------------------------------
    @torch.no_grad()
    def rank_videos_batch(self, requests: list[VideoRequest]) -> list[Slate]:
        batch, usable = self._histories(requests, self._texts(requests[0].world))
        cands = [self._videos(r.candidates) for r in requests]
        width = max(len(c) for c in cands)
        cand = torch.zeros(len(requests), width, dtype=torch.long)
        for i, c in enumerate(cands):
            cand[i, : len(c)] = torch.from_numpy(c)
        if isinstance(self.model, LSVCRRecommender):
            user = self.model.user_repr(batch, "video")
        else:
            user = self.model.user_repr(batch.video_hist)
        scores = self.model.video_scores(user, cand).float().numpy()
        out = []
        for i, r in enumerate(requests):
            if not usable[i]:
                out.append(self.popularity.rank_videos(r))
                continue
            s = np.where(cands[i] > 0, scores[i, : len(cands[i])], -np.inf)
            out.append(Slate.deterministic(r.candidates[np.argsort(-s, kind="stable")[: r.k]]))
        return out

    @torch.no_grad()
    def rank_comments_batch(self, requests: list[CommentRequest]) -> list[Slate]:
        if not self.serves_comments:
            return [self.popularity.rank_comments(r) for r in requests]
        texts = self._texts(requests[0].world)
        batch, usable = self._histories(requests, texts)
        batch.target = torch.from_numpy(self._videos([r.video_id for r in requests]))
        rows = [self._comments(r.world.comment_ids[r.candidates].tolist(), texts) for r in requests]
        width = max(len(c) for c in rows)
        cand = torch.zeros(len(requests), width, dtype=torch.long)
        for i, c in enumerate(rows):
            cand[i, : len(c)] = torch.tensor(c)
        scores = self.model.comment_scores(self.model.user_repr(batch, "comment"), cand).float().numpy()
        out = []
        for i, r in enumerate(requests):
            if not usable[i]:
                out.append(self.popularity.rank_comments(r))
                continue
            s = scores[i, : len(rows[i])]
            out.append(Slate.deterministic(r.candidates[np.argsort(-s, kind="stable")[: r.k]]))
        return out

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
