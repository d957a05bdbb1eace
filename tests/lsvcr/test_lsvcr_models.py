"""Model invariants: padding never changes outputs; the backbone's stage-1 interface."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lsvcr.config import LSVCRConfig, SASRecConfig, TextConfig
from lsvcr.data.layout import read_dataset
from lsvcr.data.loader import Batch, TaskTensors, sequence_windows, user_sequences
from lsvcr.recommender import LSVCRRecommender, top_comments
from lsvcr.sasrec import SASRec
from lsvcr.sr import Histories, LSVCRBackbone


@pytest.fixture(scope="module")
def ds(synthetic_data):
    return read_dataset(synthetic_data)


def lsvcr_model(ds):
    g = torch.Generator().manual_seed(0)
    m = LSVCRRecommender(LSVCRConfig(), TextConfig(), ds.n_videos, ds.n_comments, top_comments(ds.comment_lists))
    m.set_text(torch.randn(ds.n_videos, 384, generator=g), torch.randn(ds.n_comments, 384, generator=g))
    return m.eval()


def pad_more(b: Batch, extra: int) -> Batch:
    """The same batch with ``extra`` more padding columns on every history axis."""
    p = lambda x, *pads: F.pad(x, pads)
    return Batch(p(b.video_hist, 0, extra), p(b.record_videos, 0, extra), p(b.record_comments, 0, extra, 0, extra),
                 b.target, b.pos_comments, b.rows)


@pytest.mark.parametrize("task", ["video", "comment"])
def test_lsvcr_padding_never_changes_outputs(ds, task):
    m = lsvcr_model(ds)
    tt = TaskTensors(ds.splits[task]["train"], 50, 8)
    rows = np.random.default_rng(0).choice(len(tt), 16, replace=False)
    b = tt.batch(rows)
    assert (b.video_hist == 0).any()  # histories of different lengths: some rows are padded
    with torch.no_grad():
        ref = m.user_repr(b, task)
        alone = torch.cat([m.user_repr(tt.batch(rows[i:i + 1]), task) for i in range(len(rows))])
        padded = m.user_repr(pad_more(b, 7), task)
    torch.testing.assert_close(alone, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(padded, ref, rtol=0, atol=1e-5)


def test_sasrec_padding_never_changes_outputs(ds):
    m = SASRec(SASRecConfig(), ds.n_videos).eval()
    seqs = [s[:-1] for s in user_sequences(ds.splits["video"]["test"])][:12]
    width = max(map(len, seqs))
    batch = torch.zeros(len(seqs), width + 9, dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = torch.from_numpy(s)
    with torch.no_grad():
        ref = m.user_repr(batch)
        alone = torch.cat([m.user_repr(torch.from_numpy(s)[None]) for s in seqs])
    torch.testing.assert_close(alone, ref, rtol=0, atol=1e-5)


def test_sequence_windows_predict_every_item_once():
    inputs, targets = sequence_windows([np.arange(1, 13)], max_len=5)  # 12 items
    got = sorted(t for t in targets.ravel().tolist() if t)
    assert got == list(range(2, 13))
    for x, y in zip(inputs, targets):  # the target at t is the input at t + 1
        n = int((y > 0).sum())
        assert (x[1:n] == y[: n - 1]).all()


def test_sequence_windows_with_a_stride_give_every_target_its_context():
    seq = np.arange(1, 31)  # 30 items
    inputs, targets = sequence_windows([seq], max_len=8, stride=3)
    got = sorted(t for t in targets.ravel().tolist() if t)
    assert got == list(range(2, 31))  # every item after the first, once
    for x, y in zip(inputs, targets):
        for j in np.flatnonzero(y):
            context = x[: j + 1][x[: j + 1] > 0]
            assert y[j] == context[-1] + 1  # the target follows its inputs
            assert len(context) >= min(8 - 3 + 1, y[j] - 1)  # max_len - stride items before it, or all
    with pytest.raises(ValueError, match="stride"):
        sequence_windows([seq], max_len=8, stride=9)


def test_backbone_stage1_interface():
    """Stage 1: no ID table, per-batch text embeddings, position augmentation, the four L_VCC reprs."""
    cfg = LSVCRConfig(use_id=False)
    bb = LSVCRBackbone(cfg, n_videos=10).eval()
    assert not hasattr(bb, "video_id")
    n_params = sum(p.numel() for p in bb.parameters())
    assert 360_000 < n_params < 380_000  # "about 0.37 M parameters besides the ID table"
    g = torch.Generator().manual_seed(1)
    B, Lv, Lc = 3, 5, 4
    r = lambda *s: torch.randn(*s, generator=g)
    vm = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    rm = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)  # one empty comment history
    pos = torch.sort(torch.stack([torch.randperm(50, generator=g)[:Lv] for _ in range(B)]), dim=1).values
    h = Histories(r(B, Lv, 256), r(B, Lv, 256), torch.zeros(B, Lv, dtype=torch.long), vm,
                  r(B, Lc, 256), r(B, Lc, 256), torch.zeros(B, Lc, dtype=torch.long), rm, video_pos=pos)
    enc = bb.encode(h)
    query = bb.video_item(r(B, 256))  # adapter(title) of the target video
    reps = [bb.task_repr(enc, "video"), bb.cross_repr(enc, "video"),
            bb.task_repr(enc, "comment", query), bb.cross_repr(enc, "comment", query)]
    for x in reps:
        assert x.shape == (B, cfg.hidden) and torch.isfinite(x).all()
    assert torch.equal(bb.cross_repr(enc, "video")[1], torch.zeros(cfg.hidden))  # empty history pools to 0
    s = bb.scores(reps[0], bb.video_candidates(r(7, 256)))
    assert s.shape == (B, 7) and s.abs().max() <= 1 / cfg.tau + 1e-4
    # gradients reach the per-batch text embeddings (stage 1 trains the LLM through them)
    t = r(B, Lv, 256).requires_grad_()
    h.video_title = t
    bb.task_repr(bb.encode(h), "video").sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0


def test_sasrec_sampled_softmax_above_the_catalogue_limit():
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(1, 50, (4, 10), generator=g)
    full = SASRec(SASRecConfig(dropout=0.0), 50)
    sampled = SASRec(SASRecConfig(dropout=0.0, full_softmax_max_items=10, sampled_negatives=49), 50)
    sampled.load_state_dict(full.state_dict())
    lf = full.loss(seq[:, :-1], seq[:, 1:])
    ls = sampled.loss(seq[:, :-1], seq[:, 1:], torch.Generator().manual_seed(1))
    ls.backward()
    assert torch.isfinite(ls.detach()) and sampled.item.weight.grad.abs().sum() > 0
    assert abs(ls.item() - lf.item()) < 0.5  # 49 uniform negatives of 49 items: close to the full softmax


def test_minilm_item_texts_are_meaningful_and_padding_is_zero():
    from lsvcr.text import encode_items

    titles, comments = encode_items(["", "my kitten purrs", "football penalty goal"], ["", "cute cat video"])
    assert titles.shape == (3, 384) and comments.shape == (2, 384)
    assert torch.equal(titles[0], torch.zeros(384)) and torch.equal(comments[0], torch.zeros(384))
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=0))
    assert cos(comments[1], titles[1]) > cos(comments[1], titles[2]) + 0.1
