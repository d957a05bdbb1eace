"""Ranking metrics against hand-computed values."""
import math

import pytest
import torch

from lsvcr.metrics import mean_metrics, per_row_metrics

L2 = lambda r: 1.0 / math.log2(r + 1)  # gain of rank r (1-based)


def one(scores, rel, valid=None, **kw):
    m = per_row_metrics(torch.tensor([scores]), torch.tensor([rel], dtype=torch.bool),
                        None if valid is None else torch.tensor([valid]), **kw)
    return {k: float(v[0]) for k, v in m.items()}


def test_several_positives_and_k_beyond_the_list():
    m = one([0.9, 0.8, 0.7, 0.6], [0, 1, 0, 1])  # positives at ranks 2 and 4; 4 candidates < k=5,10
    assert m["recall@1"] == 0.0
    assert m["recall@5"] == m["recall@10"] == 1.0
    assert m["ndcg@5"] == pytest.approx((L2(2) + L2(4)) / (L2(1) + L2(2)))
    assert m["ndcg@10"] == pytest.approx(m["ndcg@5"])
    assert m["mrr@5"] == m["mrr@10"] == 0.5


def test_idcg_counts_at_most_k_positives():
    m = one([3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0], [1, 1, 1, 1, 1, 1, 0], names=("recall@1", "ndcg@5", "recall@5"))
    assert m["recall@1"] == pytest.approx(1 / 6)
    assert m["ndcg@5"] == pytest.approx(1.0)  # top 5 all relevant, IDCG over min(6, 5)
    assert m["recall@5"] == pytest.approx(5 / 6)


def test_ties_are_pessimistic():
    m = one([0.5, 0.5, 0.5], [1, 0, 0])  # the positive ranks after both tied negatives
    assert m["recall@1"] == 0.0
    assert m["ndcg@5"] == pytest.approx(L2(3))
    assert m["mrr@5"] == pytest.approx(1 / 3)
    m = one([1.0, 1.0, 0.0], [1, 1, 0])  # ties among positives do not matter
    assert m["ndcg@5"] == pytest.approx(1.0) and m["recall@1"] == 0.5
    m = one([0.2, 0.7, 0.7, 0.1], [0, 1, 0, 1])  # one tie crossing a negative: ranks 2 and 4
    assert m["ndcg@10"] == pytest.approx((L2(2) + L2(4)) / (L2(1) + L2(2)))


def test_invalid_candidates_rank_last_and_never_count():
    m = one([0.2, 5.0, 0.9], [1, 1, 0], valid=[True, False, True])  # the invalid one is not a positive
    assert m["recall@1"] == 0.0 and m["recall@5"] == 1.0
    assert m["ndcg@5"] == pytest.approx(L2(2))
    assert m["mrr@10"] == 0.5


def test_mrr_outside_k_is_zero_and_mean_over_rows():
    scores = torch.arange(20, 0, -1, dtype=torch.float32)[None].repeat(2, 1)  # rank = column + 1
    rel = torch.zeros(2, 20, dtype=torch.bool)
    rel[0, 0] = True
    rel[1, 7] = True  # rank 8
    m = per_row_metrics(scores, rel)
    assert m["mrr@5"].tolist() == [1.0, 0.0]
    assert m["mrr@10"].tolist() == pytest.approx([1.0, 1 / 8])
    assert mean_metrics([m])["recall@10"] == 1.0
    with pytest.raises(ValueError):
        per_row_metrics(scores, torch.zeros_like(rel))
