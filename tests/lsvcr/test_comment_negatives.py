"""Comment-task negatives and comment records as the official code builds them: a video's own
non-positive comments, repeated in fresh permutations until 19 are filled, the global pool only
for a video without them; a record's comment embedding is the mean over all its comments."""
from collections import Counter

import numpy as np
import torch

from lsvcr.config import FinetuneConfig, LSVCRConfig, TextConfig
from lsvcr.data.layout import Dataset, Examples
from lsvcr.data.loader import TaskTensors
from lsvcr.finetune import CommentNegatives
from lsvcr.recommender import LSVCRRecommender, top_comments


def _dataset():
    # video 1: comments 1..5 (positives 1, 2); video 2: comments 6..35; video 3: only comment 36 (a positive)
    lists = [np.array([], np.int64), np.arange(1, 6), np.arange(6, 36), np.array([36])]
    n_comments = 37
    return Dataset(["[PAD]", "a", "b", "c"], ["[PAD]"] + [f"c{i}" for i in range(1, n_comments)],
                   ["", "t1", "t2", "t3"], [""] + [f"text {i}" for i in range(1, n_comments)], lists, {}, {})


def _batch(targets, positives):
    ex = Examples(users=[str(i) for i in range(len(targets))], video_hist=[np.array([1])] * len(targets),
                  record_videos=[np.array([1])] * len(targets), record_comments=[[[1]]] * len(targets),
                  target=np.array(targets), pos_comments=[np.array(p) for p in positives])
    return TaskTensors(ex, 50, 256).batch(np.arange(len(targets)))


def test_negatives_repeat_the_videos_own_comments_then_the_global_pool():
    neg = CommentNegatives(_dataset(), 19)
    out = neg(_batch([1, 2, 3], [[1, 2], [6], [36]]), np.random.default_rng(0)).numpy()
    assert out.shape == (3, 20)
    # video 1: positives 1 or 2 first; negatives only its own non-positives 3, 4, 5, each 6 or 7 times
    assert out[0, 0] in (1, 2)
    counts = Counter(out[0, 1:].tolist())
    assert set(counts) == {3, 4, 5} and sorted(counts.values()) == [6, 6, 7]
    for s in range(1, 19, 3):  # every pass of 3 is a permutation of the three
        assert sorted(out[0, s: s + 3]) == [3, 4, 5]
    # video 2 has 29 non-positives: 19 distinct of them
    assert out[1, 0] == 6 and len(set(out[1, 1:])) == 19 and set(out[1, 1:]) <= set(range(7, 36))
    # video 3 has none: 19 distinct comments from the whole dataset, never the positive
    assert out[2, 0] == 36 and len(set(out[2, 1:])) == 19 and 36 not in out[2, 1:] and 0 not in out[2, 1:]


def test_a_record_is_the_mean_of_all_its_comments():
    ds = _dataset()
    comments = list(range(6, 18))  # twelve comments under one video (the former cap kept eight)
    ex = Examples(users=["u"], video_hist=[np.array([1])], record_videos=[np.array([2])],
                  record_comments=[[comments]], target=np.array([3]), pos_comments=None)
    b = TaskTensors(ex, 50, FinetuneConfig().max_record_comments).batch(np.array([0]))
    assert sorted(b.record_comments[0, 0].tolist()) == comments
    torch.manual_seed(0)
    m = LSVCRRecommender(LSVCRConfig(), TextConfig(), ds.n_videos, ds.n_comments, top_comments(ds.comment_lists))
    g = torch.Generator().manual_seed(1)
    m.set_text(torch.randn(ds.n_videos, 384, generator=g), torch.randn(ds.n_comments, 384, generator=g))
    with torch.no_grad():
        got = m.record_comments(b.record_comments)[0, 0]
        want = m.project(m.comment_text[comments]).mean(0)
    assert torch.allclose(got, want, atol=1e-6)
