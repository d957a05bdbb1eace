"""Stage 2 as the official code trains it: on the aligned 256-d text embeddings, frozen, with only
the SR side learning; the --no-align ablation trains its text MLP."""
import numpy as np
import pytest
import torch

from lsvcr.config import FinetuneConfig, LSVCRConfig, TextConfig
from lsvcr.data.layout import read_dataset
from lsvcr.errors import InputError
from lsvcr.finetune import train_lsvcr
from lsvcr.recommender import LSVCRRecommender, top_comments

CFG = FinetuneConfig(model="lsvcr", task="both", epochs=2, batch_size=64, patience=5)


def _features(ds, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(ds.n_videos, 384, generator=g), torch.randn(ds.n_comments, 384, generator=g)


def _aligned_state(ds):
    """A stand-in for ``align.stage2_state``: stage-1-like weights (another seed), no ID table or gate."""
    torch.manual_seed(123)
    m = LSVCRRecommender(LSVCRConfig(), TextConfig(), ds.n_videos, ds.n_comments, top_comments(ds.comment_lists))
    return {k: v.clone() for k, v in m.state_dict().items()
            if k not in ("backbone.video_id.weight", "backbone.gate", "popular")}


def test_stage2_keeps_the_stage1_text_embeddings_and_trains_the_sr_side(synthetic_data):
    ds = read_dataset(synthetic_data)
    titles, comments = _features(ds)
    init = _aligned_state(ds)
    model, _ = train_lsvcr(ds, CFG, titles, comments, init_state=init)
    state = model.state_dict()
    for k in ("project.0.weight", "project.0.bias", "project.2.weight", "project.2.bias"):
        assert torch.equal(state[k], init[k]), k
    # the 256-d text embeddings the SR model reads are exactly stage 1's MLP outputs
    mlp = torch.nn.Sequential(torch.nn.Linear(384, 96), torch.nn.GELU(), torch.nn.Linear(96, 256))
    mlp.load_state_dict({k[len("project."):]: v for k, v in init.items() if k.startswith("project.")})
    with torch.no_grad():
        ids = torch.arange(1, ds.n_videos)
        assert torch.equal(model.title(ids), mlp(titles[ids]))
        cids = torch.arange(1, ds.n_comments)
        assert torch.equal(model.comment(cids), mlp(comments[cids]))
    assert not any(p.requires_grad for p in model.project.parameters())
    # ... while the SR side did train
    for k in ("backbone.adapter.weight", "backbone.merge.weight", "backbone.video_encoder.0.fc1.weight"):
        assert (state[k] - init[k]).abs().max() > 1e-4, k


def test_no_align_ablation_trains_the_text_mlp(synthetic_data):
    ds = read_dataset(synthetic_data)
    titles, comments = _features(ds)
    torch.manual_seed(CFG.seed)  # the fresh model's init equals train_lsvcr's (seeded with CFG.seed)
    fresh = LSVCRRecommender(LSVCRConfig(), TextConfig(), ds.n_videos, ds.n_comments, top_comments(ds.comment_lists))
    model, _ = train_lsvcr(ds, CFG, titles, comments)
    assert all(p.requires_grad for p in model.project.parameters())
    assert (model.state_dict()["project.2.weight"] - fresh.state_dict()["project.2.weight"]).abs().max() > 1e-4


def test_stage2_diagnostics_take_the_aligned_start_apart(synthetic_data):
    """bench/stage2_parts.py's arms: the text MLP trained on from stage 1's weights (freeze_text=False),
    and the SR side started exactly where the ablation starts (a text-only init_state)."""
    ds = read_dataset(synthetic_data)
    titles, comments = _features(ds)
    init = _aligned_state(ds)
    cfg = FinetuneConfig(model="lsvcr", task="video", epochs=1, batch_size=64)
    trained, _ = train_lsvcr(ds, cfg, titles, comments, init_state=init, freeze_text=False)
    assert all(p.requires_grad for p in trained.project.parameters())
    assert (trained.state_dict()["project.2.weight"] - init["project.2.weight"]).abs().max() > 1e-4

    # a text-only init_state starts the SR side exactly where the ablation starts: given the ablation's
    # own fresh MLP, trained on, it *is* the ablation, bit for bit (same init, same random stream)
    torch.manual_seed(cfg.seed)  # train_lsvcr's fresh init (seeded with cfg.seed)
    fresh = LSVCRRecommender(LSVCRConfig(), TextConfig(), ds.n_videos, ds.n_comments, top_comments(ds.comment_lists))
    fresh_mlp = {k: v.clone() for k, v in fresh.state_dict().items() if k.startswith("project.")}
    as_ablation, _ = train_lsvcr(ds, cfg, titles, comments, init_state=fresh_mlp, freeze_text=False)
    ablation, _ = train_lsvcr(ds, cfg, titles, comments)
    a, b = as_ablation.state_dict(), ablation.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # with stage 1's MLP, frozen (bench/stage2_parts.py's sr-fresh arm)
    sr_fresh, _ = train_lsvcr(ds, cfg, titles, comments, init_state={k: v for k, v in init.items() if k.startswith("project.")})
    assert all(torch.equal(sr_fresh.state_dict()[k], init[k]) for k in init if k.startswith("project."))
    assert not any(p.requires_grad for p in sr_fresh.project.parameters())
    with pytest.raises(InputError, match="do not fit"):
        train_lsvcr(ds, cfg, titles, comments, init_state={k: v for k, v in init.items() if k != "backbone.adapter.weight"})


def test_task_both_selects_each_task_at_its_own_best_epoch(synthetic_data, tmp_path):
    from lsvcr.checkpoint import describe, load_model, save_model_dir
    from lsvcr.evaluate import EvalConfig, ModelScorer, Popularity, evaluate

    ds = read_dataset(synthetic_data)
    titles, comments = _features(ds)
    seen = []  # (task, epoch row, weights after that epoch)
    cfg = FinetuneConfig(model="lsvcr", task="both", epochs=4, patience=10, batch_size=64)
    assert cfg.selection == "per_task"
    model, report = train_lsvcr(ds, cfg, titles, comments, on_epoch=lambda m, row: seen.append(
        ("video" if "val_video" in row else "comment", row, {k: v.clone() for k, v in m.state_dict().items()})))
    assert [t for t, _, _ in seen] == ["video"] * 4 + ["comment"] * 4  # two trainings, one task each
    state = model.state_dict()
    for task, prefix in (("video", ""), ("comment", "comment_model.")):
        runs = [(row, w) for t, row, w in seen if t == task]
        scores = [row[f"val_{task}"]["ndcg@5"] for row, _ in runs]
        best = int(np.argmax(scores))  # the first maximum, as the trainer keeps strict gains
        assert report.tasks[task]["best_epoch"] == best + 1
        assert report.tasks[task]["best_val_ndcg5"] == scores[best]
        kept = {k[len(prefix):]: v for k, v in state.items()
                if k.startswith(prefix) and (prefix or not k.startswith("comment_model."))}
        assert kept.keys() == runs[best][1].keys()
        assert all(torch.equal(kept[k], runs[best][1][k]) for k in kept), task
    # the one model answers each task with that task's own model, also after a save and load
    e = EvalConfig(protocol="full", split="val")
    both = evaluate(ModelScorer(model, ("video", "comment"), Popularity(ds)), ds, e, ("video", "comment"))["tasks"]
    for task in ("video", "comment"):
        runs = [(row, w) for t, row, w in seen if t == task]
        best = int(np.argmax([row[f"val_{task}"]["ndcg@5"] for row, _ in runs]))
        alone = LSVCRRecommender(LSVCRConfig(), TextConfig(), ds.n_videos, ds.n_comments, top_comments(ds.comment_lists))
        alone.load_state_dict(runs[best][1])
        alone.set_text(titles, comments)
        solo = evaluate(ModelScorer(alone.eval(), (task,), Popularity(ds)), ds, e, (task,))["tasks"][task]
        assert solo == both[task], task
    save_model_dir(tmp_path / "m", model, describe(model, ds, cfg, cfg.tasks), None, ds)
    again, _ = load_model(tmp_path / "m", ds)
    assert evaluate(ModelScorer(again, ("video", "comment"), Popularity(ds)), ds, e, ("video", "comment"))["tasks"] == both
