"""The LSVCR sequential-recommendation backbone (the part kept in deployment).

It reads item *text embeddings* (256-d) per history position — precomputed and frozen in stage 2,
computed per batch by the LLM in stage 1 — plus, when ``use_id``, learned video-ID embeddings:

1. item input: ``merge([adapter(title), adapter(comment)]) (+ gate * ID) + position`` -> LN -> dropout
   (separate position tables and LayerNorms for the two histories)
2. two causal Transformer stacks: videos and comment records
3. mix layers: video states attend to comment states and vice versa (padding mask only);
   ``Ĥ = Linear(2d -> d)([H, H_mix])``
4. F_v: additive attention pooling; F_c: attention with the target video as the query
5. candidates: video = normalize(gate * ID + adapter(title)), comment = normalize(adapter(comment));
   scores = cosine / tau

Stage 1 uses ``task_repr``/``cross_repr`` (the L_VCC pairs F_v(Ĥ^v) vs F_v(Ĥ^c), F_c(Ĥ^c) vs F_c(Ĥ^v)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lsvcr.config import LSVCRConfig
from lsvcr.layers import Attention, TransformerLayer, init_weights


@dataclass
class Histories:
    """A batch of both histories as text embeddings (right-padded; masks True at real entries)."""

    video_title: torch.Tensor  # [B, Lv, T] title embedding of each history video
    video_comment: torch.Tensor  # [B, Lv, T] one popular comment of that video (zeros if none)
    video_ids: torch.Tensor  # [B, Lv] video indices (0 = pad)
    video_mask: torch.Tensor  # [B, Lv] bool
    record_title: torch.Tensor  # [B, Lc, T] title of each record's video
    record_comment: torch.Tensor  # [B, Lc, T] mean embedding of the record's comments
    record_ids: torch.Tensor  # [B, Lc] the record's video index
    record_mask: torch.Tensor  # [B, Lc] bool
    video_pos: torch.Tensor | None = None  # [B, Lv] position ids (default 0..L-1)
    record_pos: torch.Tensor | None = None  # [B, Lc]


@dataclass
class Encoded:
    video: torch.Tensor  # [B, Lv, d] Ĥ^v
    record: torch.Tensor  # [B, Lc, d] Ĥ^c
    video_mask: torch.Tensor  # [B, Lv]
    record_mask: torch.Tensor  # [B, Lc]


class AdditivePool(nn.Module):
    """F_v: Linear(d->2d) -> Dropout -> LayerNorm -> GELU -> Linear(2d->1), masked softmax, weighted sum."""

    def __init__(self, d: int, dropout: float, eps: float = 1e-8):
        super().__init__()
        self.fc1, self.drop, self.ln, self.fc2 = nn.Linear(d, 2 * d), nn.Dropout(dropout), nn.LayerNorm(2 * d, eps=eps), nn.Linear(2 * d, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.fc2(F.gelu(self.ln(self.drop(self.fc1(h))))).squeeze(-1)  # [B, L]
        a = a.masked_fill(~mask, float("-inf"))
        w = torch.softmax(a, -1).nan_to_num(0.0)  # rows without entries pool to zero
        return torch.einsum("bl,bld->bd", w, h)  # [B, d]


class QueryPool(nn.Module):
    """F_c: multi-head attention with one query per sample, residual + LayerNorm."""

    def __init__(self, d: int, heads: int, dropout: float, eps: float = 1e-8):
        super().__init__()
        self.attn, self.drop, self.ln = Attention(d, heads, dropout), nn.Dropout(dropout), nn.LayerNorm(d, eps=eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        q = query[:, None, :]  # [B, 1, d]
        return self.ln(q + self.drop(self.attn(q, h, key_mask=mask))).squeeze(1)  # [B, d]


class LSVCRBackbone(nn.Module):
    def __init__(self, cfg: LSVCRConfig, n_videos: int):
        super().__init__()
        self.cfg, self.n_videos = cfg, n_videos
        d = cfg.hidden
        self.adapter = nn.Linear(cfg.text_dim, d, bias=False)
        self.merge = nn.Linear(2 * d, d)
        if cfg.use_id:
            self.video_id = nn.Embedding(n_videos, d, padding_idx=0)
            self.gate = nn.Parameter(torch.tensor(0.0))
        self.pos_video, self.pos_record = nn.Embedding(cfg.max_len, d), nn.Embedding(cfg.max_len, d)
        eps = cfg.layer_norm_eps
        self.ln_video, self.ln_record = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.drop = nn.Dropout(cfg.dropout)
        layer = lambda: TransformerLayer(d, cfg.heads, cfg.ffn, cfg.dropout, eps)
        self.video_encoder = nn.ModuleList(layer() for _ in range(cfg.layers))
        self.record_encoder = nn.ModuleList(layer() for _ in range(cfg.layers))
        self.video_mix = nn.ModuleList(layer() for _ in range(cfg.mix_layers))  # videos attend to records
        self.record_mix = nn.ModuleList(layer() for _ in range(cfg.mix_layers))  # records attend to videos
        self.video_fuse, self.record_fuse = nn.Linear(2 * d, d), nn.Linear(2 * d, d)
        self.f_v = AdditivePool(d, cfg.dropout, eps)
        self.f_c = QueryPool(d, cfg.heads, cfg.dropout, eps)
        init_weights(self, cfg.init_std)
        if cfg.use_id:
            with torch.no_grad():
                self.gate.fill_(cfg.gate_init)
                self.video_id.weight[0].zero_()

    # ---- item inputs ------------------------------------------------------------------------
    def video_item(self, title: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """A video as a target/query: gate * ID + adapter(title). [..., T] -> [..., d]"""
        x = self.adapter(title)
        if self.cfg.use_id:
            x = x + self.gate * self.video_id(ids)
        return x

    def history_text(self, title: torch.Tensor, comment: torch.Tensor) -> torch.Tensor:
        """A history entry's text: merge([adapter(title), adapter(comment)]). [..., T] x 2 -> [..., d]"""
        return self.merge(torch.cat([self.adapter(title), self.adapter(comment)], -1))

    def _history_input(self, title, comment, ids, mask, pos, pos_table, ln) -> torch.Tensor:
        x = self.history_text(title, comment)  # [B, L, d]
        if self.cfg.use_id:
            x = x + self.gate * self.video_id(ids)
        if pos is None:
            pos = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        x = self.drop(ln(x + pos_table(pos)))
        return x * mask[..., None].to(x.dtype)

    # ---- encoders -----------------------------------------------------------------------------
    def encode(self, h: Histories) -> Encoded:
        hv = self._history_input(h.video_title, h.video_comment, h.video_ids, h.video_mask, h.video_pos,
                                 self.pos_video, self.ln_video)  # [B, Lv, d]
        hc = self._history_input(h.record_title, h.record_comment, h.record_ids, h.record_mask, h.record_pos,
                                 self.pos_record, self.ln_record)  # [B, Lc, d]
        for layer in self.video_encoder:
            hv = layer(hv, causal=True)
        for layer in self.record_encoder:
            hc = layer(hc, causal=True)
        mv, mc = hv, hc
        for vm, rm in zip(self.video_mix, self.record_mix):
            mv, mc = vm(mv, kv=mc, key_mask=h.record_mask), rm(mc, kv=mv, key_mask=h.video_mask)
        video = self.video_fuse(torch.cat([hv, mv], -1))  # [B, Lv, d]
        record = self.record_fuse(torch.cat([hc, mc], -1))  # [B, Lc, d]
        return Encoded(video, record, h.video_mask, h.record_mask)

    # ---- task representations (unnormalised; scores normalise) ----------------------------------
    def task_repr(self, enc: Encoded, task: str, query: torch.Tensor | None = None) -> torch.Tensor:
        """Video task: F_v(Ĥ^v); comment task: F_c(Ĥ^c) with the target video ``query`` [B, d]."""
        if task == "video":
            return self.f_v(enc.video, enc.video_mask)
        return self.f_c(enc.record, enc.record_mask, query)

    def cross_repr(self, enc: Encoded, task: str, query: torch.Tensor | None = None) -> torch.Tensor:
        """The L_VCC counterpart: video task F_v(Ĥ^c); comment task F_c(Ĥ^v)."""
        if task == "video":
            return self.f_v(enc.record, enc.record_mask)
        return self.f_c(enc.video, enc.video_mask, query)

    # ---- candidates and scores ------------------------------------------------------------------
    def video_candidates(self, title: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(self.video_item(title, ids), dim=-1)

    def comment_candidates(self, comment: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.adapter(comment), dim=-1)

    def scores(self, user: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """cosine / tau. user [B, d]; candidates [N, d] (shared) or [B, N, d] -> [B, N]."""
        u = F.normalize(user, dim=-1)
        s = u @ candidates.T if candidates.dim() == 2 else torch.einsum("bd,bnd->bn", u, candidates)
        return s / self.cfg.tau
