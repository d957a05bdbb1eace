"""Training losses as pure functions of scores/embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_ce(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax CE over all items; column 0 (padding) is excluded. scores [N, V], target [N]."""
    scores = scores.clone()
    scores[:, 0] = float("-inf")
    return F.cross_entropy(scores, target)


def first_is_positive_ce(scores: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """CE where column 0 is the positive and the rest negatives. scores [B, 1+K]; valid [B, 1+K]."""
    if valid is not None:
        scores = scores.masked_fill(~valid, float("-inf"))
    return F.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))


def sampled_softmax_ce(hidden: torch.Tensor, item_emb: torch.Tensor, target: torch.Tensor,
                       negatives: torch.Tensor) -> torch.Tensor:
    """Softmax CE of the target against uniformly sampled ``negatives`` shared by the batch.

    hidden [N, d], item_emb [V, d], target [N], negatives [S]; a negative equal to the target is masked.
    """
    pos = (hidden * item_emb[target]).sum(-1, keepdim=True)  # [N, 1]
    neg = hidden @ item_emb[negatives].T  # [N, S]
    neg = neg.masked_fill(negatives[None, :] == target[:, None], float("-inf"))
    return first_is_positive_ce(torch.cat([pos, neg], 1))


def id_text_contrast(id_emb: torch.Tensor, text_emb: torch.Tensor, items: torch.Tensor,
                     negatives: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE between each item's ID embedding and its text embedding.

    id_emb, text_emb [V, d] (rows per video); items [M] the history positions' videos;
    negatives [S] random videos shared by the batch (collisions with the positive masked).
    """
    ids = F.normalize(id_emb, dim=-1)
    txt = F.normalize(text_emb, dim=-1)
    clash = negatives[None, :] == items[:, None]  # [M, S]

    def one_way(a, b):  # anchors a[items] against b[items] (positive) and b[negatives]
        pos = (a[items] * b[items]).sum(-1, keepdim=True)  # [M, 1]
        neg = (a[items] @ b[negatives].T).masked_fill(clash, float("-inf"))  # [M, S]
        return first_is_positive_ce(torch.cat([pos, neg], 1) / tau)

    return 0.5 * (one_way(ids, txt) + one_way(txt, ids))
