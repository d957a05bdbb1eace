"""The control: SASRec over video ids only (Kang & McAuley, ICDM 2018; RecBole's layout).

Trained on all positions of each user window with softmax CE over every item (sampled softmax
above ``full_softmax_max_items``); item embeddings tied with the output layer; init N(0, 0.02).
"""
from __future__ import annotations

import torch
from torch import nn

from lsvcr.config import SASRecConfig
from lsvcr.layers import TransformerLayer, init_weights
from lsvcr.losses import full_softmax_ce, sampled_softmax_ce


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig, n_items: int):
        super().__init__()
        self.cfg, self.n_items = cfg, n_items
        d = cfg.hidden
        self.item = nn.Embedding(n_items, d, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_len, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(TransformerLayer(d, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.layers))
        init_weights(self, cfg.init_std)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq [B, L] right-padded item indices -> states [B, L, d] (position t has seen 0..t)."""
        pos = torch.arange(seq.shape[1], device=seq.device)
        h = self.drop(self.ln(self.item(seq) + self.pos(pos)))  # [B, L, d]
        for layer in self.layers:
            h = layer(h, causal=True)
        return h

    def loss(self, seq: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Next-item CE at every position with a target (target 0 = none). seq, target [B, L]."""
        h = self(seq)  # [B, L, d]
        keep = target > 0
        h, t = h[keep], target[keep]  # [N, d], [N]
        if self.n_items <= self.cfg.full_softmax_max_items:
            return full_softmax_ce(h @ self.item.weight.T, t)
        neg = torch.randint(1, self.n_items, (self.cfg.sampled_negatives,), generator=generator, device=seq.device)
        return sampled_softmax_ce(h, self.item.weight, t, neg)

    def user_repr(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, d] the state at each sequence's last real item."""
        last = (seq > 0).sum(1).clamp(min=1) - 1  # [B]
        return self(seq)[torch.arange(len(seq), device=seq.device), last]

    def video_scores(self, user: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """[B, V] over all items, or [B, N] over ``candidates`` [B, N]."""
        if candidates is None:
            return user @ self.item.weight.T
        return torch.einsum("bd,bnd->bn", user, self.item(candidates))


__all__ = ["SASRec"]
