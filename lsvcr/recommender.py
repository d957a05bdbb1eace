"""The stage-2 LSVCR recommender: the SR backbone on frozen item texts.

Frozen 384-d text embeddings (``titles`` [V, 384], ``comments`` [C, 384]) go through the
projection MLP ``384 -> 96 -> GELU -> 256`` (the method's ``hidden -> hidden/4 -> GELU -> 256`` on
the LLM output; here on MiniLM, see lsvcr/text.py), then into the backbone's adapter. After stage 1
the MLP is the aligned one and frozen (the 256-d text embeddings are stage 1's); with ``--no-align``
it trains.

* A history video is its title plus one popular comment: random among its top-3 in training,
  the top-1 at evaluation (zeros for a video without comments).
* A comment-history record is its video's title plus the mean of its comments' embeddings.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lsvcr.config import LSVCRConfig, TextConfig
from lsvcr.data.loader import Batch
from lsvcr.sr import Encoded, Histories, LSVCRBackbone


class Serving(NamedTuple):
    """Inference tables (``LSVCRRecommender.serve``): projected texts and normalised candidates."""

    title: torch.Tensor  # [V, 256]
    comment: torch.Tensor  # [C, 256]
    video_cand: torch.Tensor  # [V, d]
    comment_cand: torch.Tensor  # [C, d]


def top_comments(comment_lists: list[np.ndarray], k: int = 3) -> torch.Tensor:
    """[V, k] the k most popular comments of each video (0 = none)."""
    out = torch.zeros(len(comment_lists), k, dtype=torch.long)
    for v, cl in enumerate(comment_lists):
        cl = torch.as_tensor(cl[:k], dtype=torch.long)
        out[v, : len(cl)] = cl
    return out


class LSVCRRecommender(nn.Module):
    def __init__(self, cfg: LSVCRConfig, text_cfg: TextConfig, n_videos: int, n_comments: int,
                 popular: torch.Tensor):
        super().__init__()
        self.cfg, self.text_cfg = cfg, text_cfg
        self.n_videos, self.n_comments = n_videos, n_comments
        hid = text_cfg.input_dim
        self.project = nn.Sequential(nn.Linear(hid, hid // 4), nn.GELU(), nn.Linear(hid // 4, text_cfg.output_dim))
        self.backbone = LSVCRBackbone(cfg, n_videos)
        nn.init.normal_(self.project[0].weight, 0.0, cfg.init_std)
        nn.init.normal_(self.project[2].weight, 0.0, cfg.init_std)
        nn.init.zeros_(self.project[0].bias)
        nn.init.zeros_(self.project[2].bias)
        self.register_buffer("popular", popular.long(), persistent=True)  # [V, 3]
        self.register_buffer("title_text", torch.zeros(n_videos, hid), persistent=False)  # [V, 384]
        self.register_buffer("comment_text", torch.zeros(n_comments, hid), persistent=False)  # [C, 384]
        self._serving: Serving | None = None  # projected texts and candidate vectors (serve())
        self.comment_model: LSVCRRecommender | None = None  # per-task selection: serves the comment task

    def attach_comment_model(self, other: "LSVCRRecommender") -> "LSVCRRecommender":
        """Per-task models in one: this model keeps the video task, ``other`` (trained and selected on
        the comment task alone, as the official code trains each task) answers the comment task.
        ``encode`` then returns this model's video states and ``other``'s record states."""
        self.comment_model = other
        return self

    def set_text(self, titles: torch.Tensor, comments: torch.Tensor) -> None:
        self.title_text = titles.to(self.popular.device, torch.float32)
        self.comment_text = comments.to(self.popular.device, torch.float32)
        self._serving = None
        if self.comment_model is not None:
            self.comment_model.set_text(titles, comments)

    # ---- text --------------------------------------------------------------------------------
    def _text(self, table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Projected 256-d text of ``idx`` (any shape), zeros at padding; the MLP runs once per unique id."""
        if self._serving is not None and not self.training:
            return self._project_unique(table, idx)  # a lookup in the serving tables, any shape
        uniq, inv = torch.unique(idx, return_inverse=True)
        return self._project_unique(table, uniq)[inv]  # [..., 256]

    def _project_unique(self, table: torch.Tensor, uniq: torch.Tensor) -> torch.Tensor:
        if self._serving is not None and not self.training:
            return (self._serving.title if table is self.title_text else self._serving.comment)[uniq]
        out = self.project(table[uniq])  # [U, 256]
        return out * (uniq > 0).unsqueeze(-1).to(out.dtype)  # the padding id projects to zeros

    @torch.no_grad()
    def serve(self) -> "LSVCRRecommender":
        """Eval mode with every text projected, and every candidate vector computed, once."""
        self.eval()
        self._serving = None
        title = self._project_unique(self.title_text, torch.arange(self.n_videos, device=self.popular.device))
        comment = self._project_unique(self.comment_text, torch.arange(len(self.comment_text), device=self.popular.device))
        ids = torch.arange(self.n_videos, device=self.popular.device)
        self._serving = Serving(title, comment, self.backbone.video_candidates(title, ids),
                                self.backbone.comment_candidates(comment))
        if self.comment_model is not None:
            self.comment_model.serve()
        return self

    @torch.no_grad()
    def add_comments(self, features: torch.Tensor) -> int:
        """Append frozen text features [N, hidden] of comments first seen while serving; return the
        row of the first. Only the new rows are projected."""
        if self.comment_model is not None:
            self.comment_model.add_comments(features)
        start = len(self.comment_text)
        features = features.to(self.comment_text)
        self.comment_text = torch.cat([self.comment_text, features])
        if self._serving is not None:
            new = self.project(features)
            s = self._serving
            self._serving = Serving(s.title, torch.cat([s.comment, new]), s.video_cand,
                                    torch.cat([s.comment_cand, self.backbone.comment_candidates(new)]))
        return start

    def record_comments(self, comments: torch.Tensor) -> torch.Tensor:
        """[B, Lc, K] comment indices -> [B, Lc, 256] mean projected embedding of each record's comments."""
        B, L, K = comments.shape
        w = (comments > 0).to(self.comment_text.dtype)
        w = w / w.sum(-1, keepdim=True).clamp(min=1.0)  # [B, Lc, K] mean weights, 0 at padding
        if self._serving is not None and not self.training:
            idx, table = comments, self._serving.comment
        else:
            uniq, idx = torch.unique(comments, return_inverse=True)
            table = self._project_unique(self.comment_text, uniq)
        bags = F.embedding_bag(idx.reshape(B * L, K), table, per_sample_weights=w.view(B * L, K), mode="sum")
        return bags.view(B, L, -1)

    def title(self, videos: torch.Tensor) -> torch.Tensor:
        return self._text(self.title_text, videos)

    def comment(self, comments: torch.Tensor) -> torch.Tensor:
        return self._text(self.comment_text, comments)

    # ---- histories -------------------------------------------------------------------------------
    def histories(self, b: Batch, generator: torch.Generator | None = None) -> Histories:
        vh, rv, rc = b.video_hist, b.record_videos, b.record_comments
        top = self.popular[vh]  # [B, Lv, 3]
        if self.training:
            n = (top > 0).sum(-1).clamp(min=1)  # [B, Lv]
            r = torch.rand(vh.shape, generator=generator, device=vh.device)
            pick = top.gather(-1, (r * n).long().clamp(max=top.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
        else:
            pick = top[..., 0]
        record_comment = self.record_comments(rc)  # [B, Lc, 256]
        return Histories(
            video_title=self.title(vh), video_comment=self.comment(pick), video_ids=vh, video_mask=vh > 0,
            record_title=self.title(rv), record_comment=record_comment, record_ids=rv, record_mask=rv > 0,
        )

    # ---- tasks -----------------------------------------------------------------------------------
    def all_video_candidates(self) -> torch.Tensor:
        """[V, d] every video, normalised (row 0 is the padding id)."""
        ids = torch.arange(self.n_videos, device=self.popular.device)
        return self.backbone.video_candidates(self.project(self.title_text), ids)

    def user_repr(self, b: Batch, task: str, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.task_repr(self.encode(b, generator), task, b.target)  # [B, d]

    def encode(self, b: Batch, generator: torch.Generator | None = None) -> Encoded:
        """Both histories through the backbone's encoders (shared by the two tasks; with a comment
        model, the record states are its own)."""
        enc = self.backbone.encode(self.histories(b, generator))
        if self.comment_model is None:
            return enc
        other = self.comment_model.encode(b, generator)
        return Encoded(enc.video, other.record, enc.video_mask, other.record_mask)

    def task_repr(self, enc: Encoded, task: str, target: torch.Tensor | None = None) -> torch.Tensor:
        """[B, d] the user for ``task``; the comment task's query is the ``target`` video [B]."""
        if task == "comment" and self.comment_model is not None:
            return self.comment_model.task_repr(enc, task, target)
        query = None
        if task == "comment":
            query = self.backbone.video_item(self.title(target), target)  # [B, d]
        return self.backbone.task_repr(enc, task, query)

    def video_scores(self, user: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """[B, V] over all videos, or [B, N] over ``candidates`` [B, N] video indices."""
        if candidates is None:
            return self.backbone.scores(user, self.all_video_candidates())
        if self._serving is not None and not self.training:
            return self.backbone.scores(user, self._serving.video_cand[candidates])
        c = self.backbone.video_candidates(self.title(candidates), candidates)  # [B, N, d]
        return self.backbone.scores(user, c)

    def comment_scores(self, user: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """[B, N] for candidate comment indices [B, N]."""
        if self.comment_model is not None:
            return self.comment_model.comment_scores(user, candidates)
        if self._serving is not None and not self.training:
            return self.backbone.scores(user, self._serving.comment_cand[candidates])
        return self.backbone.scores(user, self.backbone.comment_candidates(self.comment(candidates)))

    def comment_scores_flat(self, user: torch.Tensor, candidates: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """[T] scores of candidate comment indices [T] for the users ``owner`` [T] (rows of ``user``
        [B, d]): ``comment_scores`` without padding ragged candidate lists."""
        if self.comment_model is not None:
            return self.comment_model.comment_scores_flat(user, candidates, owner)
        if self._serving is not None and not self.training:
            c = self._serving.comment_cand[candidates]
        else:
            c = self.backbone.comment_candidates(self.comment(candidates))
        return (F.normalize(user, dim=-1)[owner] * c).sum(-1) / self.cfg.tau
