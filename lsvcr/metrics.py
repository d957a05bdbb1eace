"""Top-k ranking metrics with binary relevance and possibly several positives per list.

* Recall@k = hits in the top k / #positives
* NDCG@k   = DCG@k / IDCG@k, gains 1/log2(rank + 1), IDCG over min(#positives, k) positives
* MRR@k    = 1 / rank of the first positive if it is within the top k, else 0

**Ties are broken pessimistically**: a positive that scores the same as a negative ranks below it
(a constant scorer gets no credit). Invalid candidates (``valid`` False, e.g. padding of a short
comment list) rank below every valid one and are never relevant. ``k`` larger than the list just
takes the whole list.
"""
from __future__ import annotations

import torch

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@5", "mrr@10")


def sorted_relevance(scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """[N, C] relevance in ranked order (valid first, score descending, negatives first on ties)."""
    rel = relevant.bool()
    if valid is not None:
        rel = rel & valid.bool()
        scores = scores.masked_fill(~valid.bool(), float("-inf"))
    order = torch.argsort(rel.to(torch.int8), dim=1, stable=True)  # negatives first
    order = order.gather(1, torch.argsort(scores.gather(1, order), dim=1, descending=True, stable=True))
    if valid is not None:
        order = order.gather(1, torch.argsort((~valid.bool()).gather(1, order).to(torch.int8), dim=1, stable=True))
    return rel.gather(1, order)


def per_row_metrics(scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor | None = None,
                    names=METRICS) -> dict[str, torch.Tensor]:
    """Each metric per row: ``{name: [N]}`` (float64). Every row needs at least one positive."""
    rel = sorted_relevance(scores.float(), relevant, valid).double()  # [N, C]
    n_pos = rel.sum(1)
    if bool((n_pos == 0).any()):
        raise ValueError("every ranked list needs at least one valid positive")
    C = rel.shape[1]
    discount = 1.0 / torch.log2(torch.arange(C, dtype=torch.float64) + 2.0)  # [C]
    first = torch.where(rel.any(1), rel.argmax(1), C)  # index of the first positive
    out = {}
    for name in names:
        kind, k = name.split("@")
        k = int(k)
        top = rel[:, :k]
        if kind == "recall":
            out[name] = top.sum(1) / n_pos
        elif kind == "ndcg":
            dcg = (top * discount[: top.shape[1]]).sum(1)
            ideal = torch.cumsum(discount, 0)
            idcg = ideal[(torch.clamp(n_pos, max=min(k, C)) - 1).long()]
            out[name] = dcg / idcg
        elif kind == "mrr":
            out[name] = torch.where(first < k, 1.0 / (first.double() + 1.0), torch.zeros_like(n_pos))
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out


def mean_metrics(rows: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Average per-row metrics collected over batches."""
    if not rows:
        return {}
    return {k: float(torch.cat([r[k] for r in rows]).mean()) for k in rows[0]}
