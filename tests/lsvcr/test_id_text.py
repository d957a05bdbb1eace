"""Stage 2's ID–text contrast as the official code computes it: each history position's ID against
its merged title+comment text, negatives from the batch's other positions, video and record
histories summed."""
import torch
import torch.nn.functional as F

from lsvcr.config import FinetuneConfig, LSVCRConfig
from lsvcr.finetune import history_id_text_loss
from lsvcr.losses import id_text_contrast, in_batch_negatives
from lsvcr.sr import Histories, LSVCRBackbone


def test_in_batch_negatives_are_other_rows_and_disjoint():
    nx, ny = in_batch_negatives(250, 99, torch.Generator().manual_seed(0))
    assert nx.shape == ny.shape == (250, 99)
    rows = torch.arange(250)[:, None]
    assert not (nx == rows).any() and not (ny == rows).any()
    for i in range(250):
        assert len(set(nx[i].tolist()) | set(ny[i].tolist())) == 198  # distinct, and the two sets disjoint
    nx, ny = in_batch_negatives(5, 99, torch.Generator().manual_seed(0))  # fewer rows than 2k
    assert nx.shape == (5, 4) and not (nx == torch.arange(5)[:, None]).any() and not (ny == torch.arange(5)[:, None]).any()


def _reference(ids, texts, nx, ny, tau):
    """The official equations, row by row."""
    x, y = F.normalize(ids, dim=-1), F.normalize(texts, dim=-1)
    total = 0.0
    for i in range(len(x)):
        pos = x[i] @ y[i]
        l_x2y = torch.cat([pos[None], y[ny[i]] @ x[i]]) / tau
        l_y2x = torch.cat([pos[None], x[nx[i]] @ y[i]]) / tau
        total = total + 0.5 * (-torch.log_softmax(l_x2y, 0)[0] - torch.log_softmax(l_y2x, 0)[0])
    return total / len(x)


def test_id_text_contrast_matches_the_official_equations():
    g = torch.Generator().manual_seed(1)
    ids, texts = torch.randn(230, 8, generator=g, dtype=torch.float64), torch.randn(230, 8, generator=g, dtype=torch.float64)
    got = id_text_contrast(ids, texts, 99, 0.07, torch.Generator().manual_seed(7))
    nx, ny = in_batch_negatives(230, 99, torch.Generator().manual_seed(7))
    ref = _reference(ids, texts, nx, ny, 0.07)
    assert abs(float(got) - float(ref)) < 1e-9
    assert float(id_text_contrast(ids[:1], texts[:1], 99, 0.07)) == 0.0


def test_history_loss_pairs_ids_with_merged_text_per_history_and_sums():
    torch.manual_seed(0)
    bb = LSVCRBackbone(LSVCRConfig(text_dim=16), n_videos=30)
    g = torch.Generator().manual_seed(2)
    vids = torch.tensor([[3, 5, 7, 0], [2, 9, 0, 0]])
    rids = torch.tensor([[4, 0, 0], [6, 8, 1]])
    h = Histories(video_title=torch.randn(2, 4, 16, generator=g), video_comment=torch.randn(2, 4, 16, generator=g),
                  video_ids=vids, video_mask=vids > 0,
                  record_title=torch.randn(2, 3, 16, generator=g), record_comment=torch.randn(2, 3, 16, generator=g),
                  record_ids=rids, record_mask=rids > 0)
    cfg = FinetuneConfig(id_text_negatives=99)
    got = history_id_text_loss(bb, h, cfg, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    want = 0.0
    with torch.no_grad():
        for t, c, i in ((h.video_title, h.video_comment, vids), (h.record_title, h.record_comment, rids)):
            m = i > 0
            text = bb.merge(torch.cat([bb.adapter(t[m]), bb.adapter(c[m])], -1))  # merged title+comment
            nx, ny = in_batch_negatives(int(m.sum()), 99, gen)
            want = want + _reference(bb.video_id.weight[i[m]], text, nx, ny, cfg.id_text_tau)
    assert abs(float(got.detach()) - float(want)) < 1e-5
    got.backward()
    assert bb.video_id.weight.grad[[3, 5, 7, 2, 9, 4, 6, 8, 1]].abs().sum(1).gt(0).all()
    assert bb.merge.weight.grad.abs().sum() > 0  # the merged text (title and comment) is in the loss
