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


def in_batch_negatives(n: int, k: int, generator: torch.Generator | None = None,
                       device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per anchor row of ``n``, two sets of ``k`` other rows (never itself), from one random ranking
    of the others per row: the first ``k`` and the next ``k`` (disjoint when ``n - 1 >= 2k``; with
    fewer rows ``k`` shrinks to ``n - 1`` and the second set is the ranking's last ``k``).
    Returns ([n, k], [n, k]) row indices."""
    k = min(k, n - 1)
    keys = torch.rand(n, n, generator=generator, device=device)
    keys.fill_diagonal_(-1.0)  # never the anchor itself: ranked last
    order = keys.argsort(dim=1, descending=True)[:, : n - 1]  # [n, n-1] the other rows, shuffled
    start = min(k, n - 1 - k)
    return order[:, :k], order[:, start: start + k]


def id_text_contrast(ids: torch.Tensor, texts: torch.Tensor, negatives: int, tau: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between the ID embedding and the text embedding of each history position
    (stage 2's ID–text contrast, as the official code computes it).

    ids, texts [N, d]: row i is one non-pad history position (its video's ID embedding, its merged
    title+comment text). The negatives of row i are other positions of the batch: ``negatives``
    texts for ID->text and ``negatives`` IDs for text->ID (``in_batch_negatives``). The two
    directions are averaged. Fewer than two rows: 0."""
    n = ids.shape[0]
    if n < 2:
        return ids.sum() * 0.0
    x, y = F.normalize(ids, dim=-1), F.normalize(texts, dim=-1)
    neg_x, neg_y = in_batch_negatives(n, negatives, generator, ids.device)  # [N, K] each
    pos = (x * y).sum(-1, keepdim=True)  # [N, 1]
    x2y = torch.cat([pos, torch.einsum("nd,nkd->nk", x, y[neg_y])], 1) / tau  # [N, 1+K]
    y2x = torch.cat([pos, torch.einsum("nd,nkd->nk", y, x[neg_x])], 1) / tau
    return 0.5 * (first_is_positive_ce(x2y) + first_is_positive_ce(y2x))
