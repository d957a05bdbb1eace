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

from typing import NamedTuple

import numpy as np
import torch

METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@5", "mrr@10")
IPS_METRICS = ("recall@1", "recall@5", "recall@10", "dcg@5", "dcg@10")  # additive over relevant items


def _ranking(scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor | None):
    """(order [N, C]: candidate indices in ranked order, rel [N, C] masked by ``valid``)."""
    rel = relevant.bool()
    if valid is not None:
        rel = rel & valid.bool()
        scores = scores.masked_fill(~valid.bool(), float("-inf"))
    order = torch.argsort(rel.to(torch.int8), dim=1, stable=True)  # negatives first
    order = order.gather(1, torch.argsort(scores.gather(1, order), dim=1, descending=True, stable=True))
    if valid is not None:
        order = order.gather(1, torch.argsort((~valid.bool()).gather(1, order).to(torch.int8), dim=1, stable=True))
    return order, rel


def sorted_relevance(scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """[N, C] relevance in ranked order (valid first, score descending, negatives first on ties)."""
    order, rel = _ranking(scores, relevant, valid)
    return rel.gather(1, order)


def candidate_ranks(scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """[N, C] 1-based rank of every candidate in the ranking ``sorted_relevance`` uses (same ties)."""
    order, _ = _ranking(scores, relevant, valid)
    return torch.argsort(order, dim=1) + 1


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


# ------------------------------------------------------------------------------------------
# inverse-propensity-weighted metrics on logged slates (lsvcr evaluate --protocol ips)
# ------------------------------------------------------------------------------------------
class RatioEstimate(NamedTuple):
    value: float
    se: float  # delta method, clustered by unit


def item_gain(name: str, rank: np.ndarray) -> np.ndarray:
    """c(rank) of one relevant item: recall@k 1[rank <= k]; dcg@k 1[rank <= k] / log2(rank + 1)."""
    kind, k = name.split("@")
    hit = (rank <= int(k)).astype(np.float64)
    if kind == "recall":
        return hit
    if kind == "dcg":
        return hit / np.log2(rank + 1.0)
    raise ValueError(f"unknown item-additive metric {name!r}")


def ratio_estimate(num: np.ndarray, den: np.ndarray) -> RatioEstimate:
    """sum(num) / sum(den) over independent units, with its delta-method standard error."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    n, total = len(num), float(den.sum())
    if n == 0 or total <= 0:
        return RatioEstimate(float("nan"), float("nan"))
    r = float(num.sum()) / total
    se = float(np.sqrt(n / (n - 1) * np.sum((num - r * den) ** 2)) / total) if n > 1 else float("nan")
    return RatioEstimate(r, se)


def ips_metrics(rank: np.ndarray, propensity: np.ndarray, unit: np.ndarray, names=IPS_METRICS) -> dict[str, float]:
    """Self-normalised IPS estimate of each item-additive metric, ``{name, name_se, ess}``.

    One entry per logged positive: the target ranking's ``rank`` (1-based) of that item among the
    request's candidates, the logging policy's ``propensity`` P_log(item at the position where it was
    shown and interacted with), and the ``unit`` it belongs to (standard errors cluster by unit).
    Estimate = sum_p c(rank_p) / propensity_p / sum_p 1 / propensity_p (see lsvcr/evaluate.py for what
    it estimates and when). ``propensity`` all ones gives the naive (exposure-biased) average.
    """
    rank, w = np.asarray(rank, np.float64), 1.0 / np.asarray(propensity, np.float64)
    _, u = np.unique(np.asarray(unit), return_inverse=True)
    den = np.bincount(u, weights=w)
    out = {}
    for name in names:
        est = ratio_estimate(np.bincount(u, weights=w * item_gain(name, rank), minlength=len(den)), den)
        out[name], out[name + "_se"] = est.value, est.se
    out["ess"] = float(w.sum() ** 2 / np.sum(w ** 2)) if len(w) else 0.0
    return out


def ips_difference(rank: np.ndarray, base_rank: np.ndarray, propensity: np.ndarray, unit: np.ndarray,
                   names=IPS_METRICS) -> dict[str, float]:
    """Paired: ips_metrics(rank) − ips_metrics(base_rank) on the same positives, ``{name, name_se}``.

    Both estimates share their weights, hence their denominator, so the difference is one ratio with a
    standard error that keeps the pairing (far smaller than the two separate ones combined).
    """
    rank, base = np.asarray(rank, np.float64), np.asarray(base_rank, np.float64)
    w = 1.0 / np.asarray(propensity, np.float64)
    _, u = np.unique(np.asarray(unit), return_inverse=True)
    den = np.bincount(u, weights=w)
    out = {}
    for name in names:
        d = w * (item_gain(name, rank) - item_gain(name, base))
        est = ratio_estimate(np.bincount(u, weights=d, minlength=len(den)), den)
        out[name], out[name + "_se"] = est.value, est.se
    return out
