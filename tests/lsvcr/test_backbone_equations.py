"""Our SR backbone against the official model's equations, re-derived here as plain tensor algebra
(zhengbw0324/LSVCR model/modeling_reccom.py, RecCom in stage "finetune"), on a tiny config in
float64, to 1e-6:

    e_t   = LN_h(gate·ID + merge([A·title, A·comment]) + P_h[t])            (eps 1e-8; dropout off)
    H     = 2 × post-LN block: LN(x + O·MHA(x, x; causal+padding)), LN(x + W2·gelu(W1·x))
    M     = 1 × post-LN block with queries H^v and keys/values H^c (padding mask only), and vice versa
    Ĥ     = Linear([H, M])
    F_v   = Σ_t softmax_t(w2·gelu(LN(W·Ĥ_t))) Ĥ_t
    F_c   = LN(q + O·MHA(q, Ĥ^c; padding)),  q = gate·ID(target) + A·title(target)
    score = cos(user, candidate) / τ,  video candidate = gate·ID + A·title, comment = A·comment
"""
import math

import torch
import torch.nn.functional as F

from lsvcr.config import LSVCRConfig
from lsvcr.sr import Histories, LSVCRBackbone

EPS = 1e-8  # every LayerNorm of the official RecCom


def ln(x, mod):
    return F.layer_norm(x, x.shape[-1:], mod.weight, mod.bias, EPS)


def lin(x, mod):
    return x @ mod.weight.T + (mod.bias if mod.bias is not None else 0.0)


def mha(q_in, kv_in, att, heads, additive_mask):
    """The official MultiHeadAttention before its residual: out_linear(softmax(QK^T/sqrt(dh) + mask) V)."""
    B, Lq, D = q_in.shape
    dh = D // heads
    q = lin(q_in, att.q).view(B, Lq, heads, dh).permute(0, 2, 1, 3)
    k = lin(kv_in, att.k).view(B, -1, heads, dh).permute(0, 2, 3, 1)
    v = lin(kv_in, att.v).view(B, -1, heads, dh).permute(0, 2, 1, 3)
    probs = torch.softmax(q @ k / math.sqrt(dh) + additive_mask, -1)
    ctx = (probs @ v).permute(0, 2, 1, 3).reshape(B, Lq, D)
    return lin(ctx, att.o)


def block(x, kv, layer, heads, mask):
    x = ln(x + mha(x, kv, layer.attn, heads, mask), layer.ln1)
    return ln(x + lin(F.gelu(lin(x, layer.fc1)), layer.fc2), layer.ln2)


def attention_mask(ids, causal):
    """The official get_attention_mask: 0 where attended, -1e6 elsewhere; [B, 1, Lq|1, Lk]."""
    m = (ids != 0)[:, None, None, :]
    if causal:
        m = torch.tril(m.expand(-1, -1, ids.shape[1], -1))
    return torch.where(m, 0.0, -1000000.0).to(torch.float64)


def reference(bb, h, target_title, target_id):
    cfg, heads = bb.cfg, bb.cfg.heads
    A = lambda x: x @ bb.adapter.weight.T
    g = bb.gate

    def inputs(title, comment, ids, pos_table, norm):
        text = lin(torch.cat([A(title), A(comment)], -1), bb.merge)
        pos = pos_table.weight[torch.arange(ids.shape[1])][None]
        return ln(g * bb.video_id.weight[ids] + text + pos, norm)

    hv = inputs(h.video_title, h.video_comment, h.video_ids, bb.pos_video, bb.ln_video)
    hc = inputs(h.record_title, h.record_comment, h.record_ids, bb.pos_record, bb.ln_record)
    cv, cc = attention_mask(h.video_ids, True), attention_mask(h.record_ids, True)
    for layer in bb.video_encoder:
        hv = block(hv, hv, layer, heads, cv)
    for layer in bb.record_encoder:
        hc = block(hc, hc, layer, heads, cc)
    pv, pc = attention_mask(h.video_ids, False), attention_mask(h.record_ids, False)
    mv = block(hv, hc, bb.video_mix[0], heads, pc)  # videos attend to records
    mc = block(hc, hv, bb.record_mix[0], heads, pv)
    video = lin(torch.cat([hv, mv], -1), bb.video_fuse)
    record = lin(torch.cat([hc, mc], -1), bb.record_fuse)
    f = bb.f_v
    w = lin(F.gelu(ln(lin(video, f.fc1), f.ln)), f.fc2).squeeze(-1) + pv[:, 0, 0]
    f_v = torch.einsum("bl,bld->bd", torch.softmax(w, -1), video)
    q = (g * bb.video_id.weight[target_id] + A(target_title))[:, None]  # [B, 1, d]
    f_c = ln(q + mha(q, record, bb.f_c.attn, heads, pc), bb.f_c.ln)[:, 0]
    return f_v, f_c


def test_backbone_forward_matches_the_official_equations():
    torch.manual_seed(0)
    cfg = LSVCRConfig(text_dim=12, hidden=8, ffn=16, heads=2, layers=2, mix_layers=1, max_len=6)
    bb = LSVCRBackbone(cfg, n_videos=20).double().eval()
    with torch.no_grad():
        for p in bb.parameters():  # away from the N(0, 0.02) init so every term matters
            p.add_(0.3 * torch.randn_like(p))
        bb.gate.fill_(0.7)
        bb.video_id.weight[0].zero_()
    vids = torch.tensor([[3, 5, 7, 2, 0, 0], [9, 4, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    rids = torch.tensor([[4, 8, 0], [6, 0, 0], [11, 12, 13]])
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    h = Histories(video_title=r(3, 6, 12), video_comment=r(3, 6, 12), video_ids=vids, video_mask=vids > 0,
                  record_title=r(3, 3, 12), record_comment=r(3, 3, 12), record_ids=rids, record_mask=rids > 0)
    target_title, target_id = r(3, 12), torch.tensor([10, 14, 15])
    with torch.no_grad():
        enc = bb.encode(h)
        f_v = bb.task_repr(enc, "video")
        f_c = bb.task_repr(enc, "comment", bb.video_item(target_title, target_id))
        ref_v, ref_c = reference(bb, h, target_title, target_id)
        assert (f_v - ref_v).abs().max() < 1e-6
        assert (f_c - ref_c).abs().max() < 1e-6
        assert ref_v.abs().max() > 0.1 and ref_c.abs().max() > 0.1
        # scores: cosine / tau against gate·ID + A·title (videos) and A·comment (comments)
        cand_title, cand_ids, cand_comment = r(5, 12), torch.tensor([1, 2, 3, 16, 19]), r(4, 12)
        sv = bb.scores(f_v, bb.video_candidates(cand_title, cand_ids))
        ref_sv = F.cosine_similarity(ref_v[:, None], (0.7 * bb.video_id.weight[cand_ids] + cand_title @ bb.adapter.weight.T)[None], -1) / cfg.tau
        sc = bb.scores(f_c, bb.comment_candidates(cand_comment))
        ref_sc = F.cosine_similarity(ref_c[:, None], (cand_comment @ bb.adapter.weight.T)[None], -1) / cfg.tau
        assert (sv - ref_sv).abs().max() < 1e-6 and (sc - ref_sc).abs().max() < 1e-6
