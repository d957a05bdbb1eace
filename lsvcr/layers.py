"""Transformer building blocks shared by the LSVCR backbone and SASRec (post-LayerNorm, GELU, as
in SASRec/RecBole), with fused ``scaled_dot_product_attention``.

Sequences are **right-padded**: real items sit at positions 0..len-1. With a causal mask real
positions never see padding, so padding cannot change their outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def init_weights(module: nn.Module, std: float) -> None:
    """N(0, std) for Linear/Embedding weights, zero biases, unit LayerNorms (SASRec's init)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def key_padding_mask(key_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, Lk] True=real -> an SDPA mask [B, 1, 1, Lk] and [B, 1, 1] 'has any key'.

    Rows without any real key attend to everything (finite garbage) and are zeroed by the caller,
    instead of producing NaN."""
    has_key = key_mask.any(-1)  # [B]
    mask = key_mask | ~has_key[:, None]
    return mask[:, None, None, :], has_key[:, None, None]


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, kv: torch.Tensor, causal: bool = False,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, Lq, D = x.shape
        Lk, H = kv.shape[1], self.heads
        q = self.q(x).view(B, Lq, H, D // H).transpose(1, 2)  # [B, H, Lq, D/H]
        k = self.k(kv).view(B, Lk, H, D // H).transpose(1, 2)  # [B, H, Lk, D/H]
        v = self.v(kv).view(B, Lk, H, D // H).transpose(1, 2)
        mask, has_key = (None, None) if key_mask is None else key_padding_mask(key_mask)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        y = y.transpose(1, 2).reshape(B, Lq, D)  # [B, Lq, D]
        if has_key is not None:
            y = y * has_key.to(y.dtype)  # [B, 1, 1]
        return self.o(y)


class TransformerLayer(nn.Module):
    """Post-LN attention + FFN block. Self-attention when ``kv`` is None, else cross-attention."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        self.attn = Attention(d, heads, dropout)
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, kv=None, causal=False, key_mask=None):
        x = self.ln1(x + self.drop(self.attn(x, x if kv is None else kv, causal, key_mask)))
        return self.ln2(x + self.drop(self.fc2(F.gelu(self.fc1(x)))))
