"""Stage-1 losses against hand computations (numpy / math), and the view augmentations."""
import math

import numpy as np
import pytest
import torch

from lsvcr.contrastive import (
    Stage1Weights,
    comment_record_views,
    info_nce,
    l_rec,
    l_ssc,
    l_vcc,
    lm_loss,
    popular_comment_views,
    random_position_ids,
    stage1_loss,
)

TAU = 0.07
Q = np.array([[1.0, 0.0, 0.5], [0.2, 1.0, 0.0], [0.0, 0.3, 1.0]])
K = np.array([[0.9, 0.1, 0.4], [0.0, 1.0, 0.2], [0.5, 0.0, 1.0]])
C = np.array([[0.8, 0.3, 0.6], [0.3, 1.0, 0.1], [0.1, 0.5, 1.0]])


def unit(v):
    return v / math.sqrt(sum(x * x for x in v))


def cos(a, b):
    return sum(x * y for x, y in zip(unit(a), unit(b)))


def np_info_nce(q, k, tau=TAU):
    total = 0.0
    for i in range(len(q)):
        s = [cos(q[i], k[j]) / tau for j in range(len(k))]
        total += -s[i] + math.log(sum(math.exp(x) for x in s))
    return total / len(q)


def np_vcc(llm, match, cross, tau=TAU):
    total = 0.0
    for i in range(len(llm)):
        a, b = cos(llm[i], match[i]) / tau, cos(llm[i], cross[i]) / tau
        total += -a + math.log(math.exp(a) + math.exp(b))
    return total / len(llm)


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_info_nce_and_l_rec_match_hand_computation():
    expected = np_info_nce(Q, K)
    assert info_nce(t(Q), t(K)).item() == pytest.approx(expected, rel=1e-5)
    assert l_rec(t(Q), t(K)).item() == pytest.approx(expected, rel=1e-5)
    assert info_nce(t(Q).float(), t(K).bfloat16()).item() == pytest.approx(expected, rel=2e-2)
    # scale invariance: inputs are L2-normalised inside
    assert info_nce(t(Q) * 7.0, t(K) * 0.1).item() == pytest.approx(expected, rel=1e-5)


def test_l_vcc_matches_hand_computation():
    assert 0.2 < np_vcc(Q, K, C) < 2.0  # a non-degenerate example
    assert l_vcc(t(Q), t(K), t(C)).item() == pytest.approx(np_vcc(Q, K, C), rel=1e-5)


def test_l_ssc_is_the_symmetric_mean():
    expected = 0.5 * np_info_nce(K, Q) + 0.5 * np_info_nce(Q, K)
    assert l_ssc(t(K), t(Q)).item() == pytest.approx(expected, rel=1e-5)


def test_stage1_total_uses_the_weights():
    sr, cross, llm, target = t(K), t(C), t(Q), t(Q[::-1].copy())
    lm = torch.tensor(1.7)
    rec, vcc = np_info_nce(K, Q[::-1]), np_vcc(Q, K, C)
    ssc = 0.5 * np_info_nce(K, Q) + 0.5 * np_info_nce(Q, K)
    out = stage1_loss(sr, cross, llm, target, lm)
    assert out.total.item() == pytest.approx(1.7 + rec + 0.5 * (vcc + ssc), rel=1e-5)
    assert (out.rec.item(), out.vcc.item(), out.ssc.item()) == pytest.approx((rec, vcc, ssc), rel=1e-5)
    weighted = stage1_loss(sr, cross, llm, target, lm, Stage1Weights(lm=0.5, rec=2.0, contrast=0.25))
    assert weighted.total.item() == pytest.approx(0.85 + 2 * rec + 0.25 * (vcc + ssc), rel=1e-5)
    encoder = stage1_loss(sr, cross, llm, target)  # no LM loss for encoder backbones
    assert encoder.lm is None and encoder.total.item() == pytest.approx(rec + 0.5 * (vcc + ssc), rel=1e-5)
    with pytest.raises(ValueError):
        Stage1Weights(temperature=0.0)


def np_lm_loss(logits, labels):
    losses = []
    for b in range(logits.shape[0]):
        for pos in range(logits.shape[1] - 1):
            y = labels[b, pos + 1]
            if y == -100:
                continue
            row = logits[b, pos]
            losses.append(-row[y] + math.log(sum(math.exp(v) for v in row)))
    return sum(losses) / len(losses)


def test_lm_loss_is_shifted_cross_entropy_on_the_response_only():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 5))
    labels = np.array([[-100, -100, -100, 3, 1, -100], [-100, -100, 2, 4, 0, 1]])  # row 0: right-padded
    got = lm_loss(t(logits), torch.tensor(labels))
    assert got.item() == pytest.approx(np_lm_loss(logits, labels), rel=1e-6)
    # whatever sits at prompt positions (logits predicting prompt tokens) changes nothing
    changed = logits.copy()
    changed[0, :2] = rng.normal(size=(2, 5)) * 10
    changed[1, :1] = rng.normal(size=(1, 5)) * 10
    changed[0, 5] = 99.0  # the last position predicts nothing
    assert lm_loss(t(changed), torch.tensor(labels)).item() == pytest.approx(got.item(), rel=1e-12)
    assert lm_loss(t(logits), torch.full((2, 6), -100)).item() == 0.0


def test_lm_loss_gradients_reach_response_positions_only():
    logits = torch.randn(1, 5, 4, requires_grad=True, generator=torch.Generator().manual_seed(0))
    lm_loss(logits, torch.tensor([[-100, -100, -100, 2, 1]])).backward()
    assert logits.grad[0, :2].abs().sum() == 0 and logits.grad[0, 4].abs().sum() == 0
    assert logits.grad[0, 2:4].abs().sum() > 0


def test_popular_comment_views():
    popular = [["a", "b", "c", "d"], ["e"], [], ["f", "g"]]
    same_l, same_s = popular_comment_views(popular, np.random.default_rng(1), p_sample=0.0)
    assert same_l == same_s and same_l[2] is None and same_l[1] == "e" and same_l[0] in "abc"
    llm, sr = popular_comment_views(popular, np.random.default_rng(1), p_sample=1.0, p_interaction=1.0)
    assert llm[0] != sr[0] and {llm[0], sr[0]} <= {"a", "b", "c"}  # two different top-3 comments
    assert llm[1] == sr[1] == "e" and llm[2] is sr[2] is None and llm[3] != sr[3]
    again = popular_comment_views(popular, np.random.default_rng(1), p_sample=1.0, p_interaction=1.0)
    assert again == (llm, sr)
    # about p_sample * p_interaction of the interactions differ
    rng = np.random.default_rng(2)
    diff = sum(a != b for _ in range(2000) for a, b in zip(*popular_comment_views([["x", "y"]], rng)))
    assert 0.11 < diff / 2000 < 0.19


def test_comment_record_views_mix_and_split_alternately():
    records = [(["u1", "u2", "u3", "u4"], ["u1", "p1", "p2", "u2"]), (["u5"], ["u5"]), (["u6"], ["p9"])]
    llm, sr = comment_record_views(records, np.random.default_rng(0), p_sample=0.0)
    assert llm == sr and len(llm[0]) == 3 and set(llm[0]) <= {"u1", "u2", "u3", "u4"} and llm[1] == ["u5"]
    llm, sr = comment_record_views(records, np.random.default_rng(0), p_sample=1.0, p_record=1.0, fallback_pool=["g1", "g2"])
    own0 = set(llm[0] + sr[0]) & {"u1", "u2", "u3", "u4"}
    assert len(llm[0]) == len(sr[0]) == 3 and len(own0) == 3  # 3 own + 3 mixed-in, dealt alternately
    assert set(llm[0] + sr[0]) - own0 <= {"p1", "p2"}  # mixed only with non-interacted popular comments
    assert sorted(llm[1] + sr[1]) in (["g1", "u5"], ["g2", "u5"])  # no other popular comment: fallback pool
    assert sorted(llm[2] + sr[2]) == ["p9", "u6"] and len(llm[2]) == 1
    llm, sr = comment_record_views([(["u5"], ["u5"])], np.random.default_rng(0), p_sample=1.0, p_record=1.0)
    assert llm == sr == [["u5"]]  # nothing to mix with


def test_random_position_ids_are_sorted_distinct_and_seeded():
    pos = random_position_ids(64, 20, 50, torch.Generator().manual_seed(3))
    assert pos.shape == (64, 20) and pos.dtype == torch.long
    assert (pos.diff(dim=1) > 0).all() and pos.min() >= 0 and pos.max() < 50
    assert torch.equal(pos, random_position_ids(64, 20, 50, torch.Generator().manual_seed(3)))
    assert torch.equal(random_position_ids(2, 50, 50), torch.arange(50).expand(2, 50))
    with pytest.raises(ValueError):
        random_position_ids(1, 51, 50)
